"""kill -9 at random moments (several inside a checkpoint write): every complete set loads with
MXNet's own loader, --resume finishes the run, and at most one checkpoint interval is lost."""
import glob
import json
import os
import random
import signal
import subprocess
import sys
import time

import mxnet as mx
import pytest

from trainhelpers import link_training_files

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
VERBOSE = 3  # a checkpoint round every 3 steps
TOTAL = 120  # long enough that every kill lands in a running process, on the faster machines too


def _command(data, models, resume):
    return [sys.executable, os.path.join(ROOT, "recognition", "train.py"), "--network", "y1", "--loss", "arcface",
            "--dataset", "synthetic", "--data-dir", str(data), "--models-root", str(models),
            "--per-batch-size", "4", "--frequent", "1", "--seed", "2", "--lr", "0.02", "--verbose", str(VERBOSE),
            "--ckpt", "2", "--max-steps", str(TOTAL)] + (["--resume"] if resume else [])


def _last_logged_step(text, begin):
    """The last global step this process logged: one speed line a step (--frequent 1), except the
    first step of a process, which MXNet's Speedometer only times."""
    lines = text.count("Speed: ")
    return begin + lines + (1 if lines else 0)


def _complete_sets(folder):
    """(stem, step) of every set whose .json is there, after checking each loads with MXNet's loader."""
    sets = []
    for meta_file in sorted(glob.glob(os.path.join(folder, "model-*.json"))):
        stem = meta_file[:-len(".json")]
        if stem.endswith("-symbol"):  # the graph, not a set's meta
            continue
        meta = json.load(open(meta_file))
        for name, _ in meta["files"].items():
            assert os.path.isfile(os.path.join(folder, name)), (meta_file, name)
        tail = stem.rsplit("-", 1)[1]
        if tail.isdigit():
            mx.model.load_checkpoint(stem[:-len(tail) - 1], int(tail))
        else:
            mx.nd.load(stem + ".params")
        sets.append((stem, meta["step"]))
    return sets


@pytest.mark.slow
def test_kill_9_at_random_moments_loses_at_most_one_interval(synthetic_dir, tmp_path):
    data = link_training_files(synthetic_dir, str(tmp_path / "data"))
    models = tmp_path / "models"
    folder = models / "y1-arcface-synthetic"
    rng = random.Random(0)
    rows, begin, resume = [], 0, False
    for kill in range(10):
        log_path = tmp_path / f"run{kill}.log"
        in_write = kill % 3 == 1  # every third kill aims at a checkpoint write
        with open(log_path, "w") as log:
            proc = subprocess.Popen(_command(data, models, resume), stdout=log, stderr=subprocess.STDOUT)
            deadline, start = time.time() + 180, None
            wait = rng.uniform(0.0, 1.5)  # seconds after the first step of this process
            while proc.poll() is None and time.time() < deadline:
                if start is None and "Speed: " in log_path.read_text():
                    start = time.time()
                if in_write and glob.glob(os.path.join(folder, f"*.tmp{proc.pid}")):
                    break  # a file of a save is being written: kill now
                if not in_write and start is not None and time.time() - start > wait:
                    break
                time.sleep(0.005)
            writing = glob.glob(os.path.join(folder, f"*.tmp{proc.pid}"))
            moment = f"inside a save ({os.path.basename(writing[0])})" if writing else \
                f"{time.time() - (start or time.time()):.1f} s after the first step"
            assert proc.poll() is None, (kill, "the run ended before this kill", log_path.read_text()[-2000:])
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        text = log_path.read_text()
        assert "Traceback" not in text, text[-3000:]
        reached = _last_logged_step(text, begin)
        sets = _complete_sets(folder) if folder.is_dir() else []
        saved = max((step for _, step in sets), default=0)
        assert reached - saved <= VERBOSE, (kill, reached, saved)  # at most one interval lost
        rows.append((kill, moment, len(sets), reached, saved))
        begin, resume = saved, bool(sets)
        if saved == 0:  # killed before the first round: start over (nothing to resume)
            for path in glob.glob(os.path.join(folder, "*")):
                os.remove(path)
    # the interrupted run is then finished by --resume
    finish = subprocess.run(_command(data, models, resume), capture_output=True, text=True, timeout=600)
    assert finish.returncode == 0, finish.stdout[-2000:] + finish.stderr[-2000:]
    assert json.load(open(folder / "model-resume.json"))["step"] == TOTAL
    assert not glob.glob(os.path.join(folder, "*.tmp*"))  # killed saves' leftovers are cleared
    print("\nkill | moment | complete sets | last step logged | step resumed from")
    for row in rows:
        print(" | ".join(map(str, row)))
