"""<run folder>/train.log (ISO time stamps, appended by --resume), the total steps, the time left."""
import logging
import os
import re
import subprocess
import sys
from types import SimpleNamespace

import mxnet as mx
import pytest

from facekd.data.recordio import RecordDataset
from facekd.evaluation.plots import read_training_log
from facekd.training.callbacks import RunLength, SpeedLog, format_duration
from facekd.training.trainer import main

from trainhelpers import link_training_files

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
STAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d (.*)$")


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now

    def time(self):  # as the `time` module MXNet's Speedometer calls
        return self.now


class FixedMetric:
    """What a CompositeEvalMetric hands the speed line: fixed (name, value) pairs."""

    def __init__(self):
        self.resets = 0

    def get_name_value(self):
        return [("acc", 0.25), ("lossvalue", 21.403)]

    def reset_local(self):
        self.resets += 1


def test_format_duration():
    assert format_duration(3723.4) == "1:02:03"
    assert format_duration(59.6) == "0:01:00"
    assert format_duration(90061) == "25:01:01"  # hours are not wrapped into days
    assert format_duration(-5) == "0:00:00"


def test_run_length():
    length = RunLength(max_steps=100, end_epoch=3, batches_per_epoch=40)  # 3 x 40 = 120 > 100
    assert length.steps_left(0, 0, 0) == 100
    assert length.steps_left(90, 2, 10) == 10
    assert RunLength(0, 3, 40).steps_left(50, 1, 10) == 30 + 40  # rest of epoch 1, then epoch 2
    assert RunLength(0, 3, None).steps_left(5, 0, 5) is None  # triplet bags, no --max-steps
    assert RunLength(0, 3, None).steps_left(5, 0, 5, batches_per_epoch=8) == 3 + 2 * 8  # current bag's size
    assert length.describe() == ("total steps: 100 (the smaller of --max-steps 100 and --end-epoch 3 x 40 "
                                 "batches per epoch = 120)")
    assert RunLength(0, 3, 40).describe(50, 1, 10) == ("total steps: 120 (--end-epoch 3 x 40 batches per epoch "
                                                       "= 120; --max-steps 0: no limit); 50 done, 70 to go")
    assert RunLength(0, 3, None).describe().startswith("total steps: not known in advance (--end-epoch 3 triplet "
                                                       "bags, whose batches are known as each is mined; "
                                                       "--max-steps 0: no limit")
    assert RunLength(60, 3, None).describe().startswith("total steps: at most 60 (--max-steps 60;")


def _lines(caplog):
    return [r.getMessage() for r in caplog.records if "Speed: " in r.getMessage()]


def test_speed_line_is_mxnets_plus_the_time_left(caplog, monkeypatch):
    """Same lines as MXNet's own Speedometer (auto_reset) under the same clock, then the time left."""
    caplog.set_level(logging.INFO)
    clock = Clock()
    monkeypatch.setattr(mx.callback, "time", clock)
    reference = mx.callback.Speedometer(4, 2, auto_reset=True)
    ours = SpeedLog(4, 2, RunLength(max_steps=10, end_epoch=100, batches_per_epoch=6),
                    epoch_batches=lambda: 6, clock=clock)
    # one step every 600 s, then 300 s; the epoch has 6 batches (nbatch 0..5), then epoch 1 starts
    times = [600, 1200, 1800, 2400, 3000, 3600, 3900, 4200, 4500, 4800]
    batches = [(0, n) for n in range(6)] + [(1, n) for n in range(4)]
    metric_a, metric_b = FixedMetric(), FixedMetric()
    for now, (epoch, nbatch) in zip(times, batches):
        clock.now = now
        reference(mx.model.BatchEndParam(epoch=epoch, nbatch=nbatch, eval_metric=metric_a, locals=None))
        n = len(caplog.records)
        ours(mx.model.BatchEndParam(epoch=epoch, nbatch=nbatch, eval_metric=metric_b, locals=None))
        new = [r.getMessage() for r in caplog.records[n:]]
        if new:
            mxnet_line = caplog.records[n - 1].getMessage()
            assert new[0].startswith(mxnet_line + "\tTime left: "), (new[0], mxnet_line)
    ours_lines = [line for line in _lines(caplog) if "Time left" in line]
    # logged at nbatch 2, 4 (epoch 0; nbatch 0 only starts the clock) and nbatch 2 (epoch 1)
    assert [line.split("\t")[0] for line in ours_lines] == ["Epoch[0] Batch [0-2]", "Epoch[0] Batch [2-4]",
                                                            "Epoch[1] Batch [0-2]"]
    assert metric_b.resets == metric_a.resets == 3
    # step 3: 2 batches in 1200 s -> 8/1200 samples/s; 7 steps left x 600 s = 4200 s
    assert "\tSpeed: 0.01 samples/sec\t" in ours_lines[0] and ours_lines[0].endswith("\tTime left: 1:10:00")
    # step 5: 5 steps left x 600 s
    assert ours_lines[1].endswith("\tTime left: 0:50:00")
    # step 9: 1 step left (--max-steps 10) x the mean of the intervals logged: (1200 + 1200 + 600) / 6 batches
    assert ours_lines[2].endswith("\tTime left: 0:08:20")


def test_time_left_without_limit_and_for_triplet_bags(caplog):
    caplog.set_level(logging.INFO)
    clock = Clock()
    bag = {"batches": 10}
    log = SpeedLog(3, 1, RunLength(0, 2, None), epoch_batches=lambda: bag["batches"], clock=clock)
    for now, nbatch in ((1, 0), (3, 1)):
        clock.now = now
        log(mx.model.BatchEndParam(epoch=0, nbatch=nbatch, eval_metric=None, locals=None))
    # bag of 10: 8 left in it, then one more bag estimated at 10: 18 steps x 2 s
    assert _lines(caplog)[-1] == "Epoch[0] Batch [0-1]\tSpeed: 1.50 samples/sec\tTime left: 0:00:36"
    unbounded = SpeedLog(3, 1, RunLength(0, 2, None), clock=clock)  # no size known, no --max-steps
    for now, nbatch in ((5, 0), (6, 1)):
        clock.now = now
        unbounded(mx.model.BatchEndParam(epoch=0, nbatch=nbatch, eval_metric=None, locals=None))
    assert _lines(caplog)[-1].endswith("\tTime left: no limit")


def test_time_left_after_a_start_inside_an_interval(caplog):
    """--resume mid-epoch: the clock starts at batch 3, the first line comes at batch 4 (--frequent 4).
    The speed is the Speedometer's (as if 4 batches); the time left counts the one batch timed."""
    caplog.set_level(logging.INFO)
    clock = Clock()
    log = SpeedLog(2, 4, RunLength(20, 100, 50), begin_step=3, clock=clock)
    for now, nbatch in ((0, 3), (10, 4)):
        clock.now = now
        log(mx.model.BatchEndParam(epoch=0, nbatch=nbatch, eval_metric=None, locals=None))
    # step 5: 15 steps left (--max-steps 20) x 10 s
    assert _lines(caplog)[-1] == "Epoch[0] Batch [0-4]\tSpeed: 0.80 samples/sec\tTime left: 0:02:30"


def test_for_run_logs_the_total(caplog):
    caplog.set_level(logging.INFO)
    settings = SimpleNamespace(max_steps=0, end_epoch=2, frequent=5, begin_step=12, begin_epoch=1,
                               get=lambda k: {"resume_position": {"batch": 2}}.get(k))
    SpeedLog.for_run(settings, SimpleNamespace(batches_per_epoch=10), 8)
    assert caplog.records[-1].getMessage() == ("total steps: 20 (--end-epoch 2 x 10 batches per epoch = 20; "
                                               "--max-steps 0: no limit); 12 done, 8 to go")


def _stamped(path):
    lines = open(path, encoding="utf-8").read().splitlines()
    bare = []
    for line in lines:
        m = STAMP.match(line)
        assert m, line  # every line starts with its ISO date and time
        bare.append(m.group(1))
    return bare


@pytest.mark.slow
def test_train_log_beside_the_checkpoints(synthetic_dir, tmp_path, caplog):
    data = link_training_files(synthetic_dir, str(tmp_path / "data"))  # no .bin targets: quick rounds
    models = tmp_path / "models"
    argv = ["--network", "y1", "--loss", "arcface", "--dataset", "synthetic", "--data-dir", data,
            "--models-root", str(models), "--per-batch-size", "4", "--frequent", "1", "--seed", "3",
            "--verbose", "3", "--ckpt", "2"]
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "recognition", "train.py"), *argv, "--max-steps", "3"],
                          capture_output=True, text=True, timeout=300, env={**os.environ, "MXNET_OMP_MAX_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    path = models / "y1-arcface-synthetic" / "train.log"
    first = _stamped(path)
    stderr = proc.stderr.splitlines()
    assert not [line for line in stderr if STAMP.match(line)]  # stderr keeps the bare lines
    assert [line for line in first if line in stderr] == first  # the same lines, in the same order
    batches = RecordDataset(synthetic_dir).num_images // 4
    assert first[0] == f"config: tables from {os.path.join(ROOT, 'recognition', 'config.py')}"
    assert f"total steps: 3 (the smaller of --max-steps 3 and --end-epoch 10000 x {batches} batches per epoch " \
           f"= {10000 * batches})" in first
    speed = [line for line in first if "Speed: " in line]
    assert len(speed) == 2 and all(re.search(r"\tTime left: \d+:\d\d:\d\d$", line) for line in speed)
    assert speed[-1].endswith("\tTime left: 0:00:00")  # logged after the last step

    handlers = list(logging.getLogger().handlers)
    caplog.set_level(logging.INFO)
    main(argv + ["--max-steps", "5", "--resume"])
    assert logging.getLogger().handlers == handlers  # the run's file handler is gone
    both = _stamped(path)
    assert both[:len(first)] == first  # --resume appends
    resumed = both[len(first):]
    assert any(line.startswith("resuming from ") for line in resumed)
    assert f"total steps: 5 (the smaller of --max-steps 5 and --end-epoch 10000 x {batches} batches per epoch " \
           f"= {10000 * batches}); 3 done, 2 to go" in resumed
    assert [r.getMessage() for r in caplog.records if r.getMessage() in resumed] == resumed
    # plot_training.py reads it: speed lines at global batches 1, 2 (first run), 4 (the resumed one
    # starts at batch 3, which only starts the clock)
    log = read_training_log(str(path))
    assert log.batches == [1, 2, 4] and log.epochs == [0, 0, 0]
    assert sorted(log.metrics) == ["acc", "lossvalue"]
    # a new run into the folder is refused before it writes anything: the log stays as it was
    from facekd.errors import FaceKDError

    with pytest.raises(FaceKDError, match="already holds checkpoints"):
        main(argv + ["--max-steps", "2"])
    assert _stamped(path) == both


def test_run_log_holds_lines_until_open_and_ends_with_the_error(tmp_path, caplog):
    from facekd.errors import FaceKDError
    from facekd.training.run_log import RunLog

    caplog.set_level(logging.INFO)
    handlers = list(logging.getLogger().handlers)
    prefix = str(tmp_path / "run" / "model")
    log_file = tmp_path / "run" / "train.log"
    with pytest.raises(FaceKDError):  # refused before the folder is accepted: nothing written
        with RunLog():
            logging.info("called with x")
            raise FaceKDError("refused")
    assert not log_file.exists()
    with pytest.raises(FaceKDError):
        with RunLog() as run_log:
            logging.info("called with y")
            assert run_log.open(prefix) == str(log_file)
            logging.warning("two\nlines")
            raise FaceKDError("step 7: the loss is nan;\n resume with a lower --lr")
    assert _stamped(log_file) == ["called with y", "two", "lines",
                                  "error: step 7: the loss is nan; resume with a lower --lr"]
    with RunLog() as run_log:  # a worker other than the first writes nothing
        logging.info("worker 1")
        run_log.open(prefix, append=True, write=False)
        logging.info("more")
    assert len(_stamped(log_file)) == 4
    with RunLog() as run_log:
        run_log.open(prefix, append=True)
        logging.info("appended")
    assert _stamped(log_file)[-1] == "appended" and len(_stamped(log_file)) == 5
    (tmp_path / "afile").write_text("")
    with pytest.raises(FaceKDError, match=rf"^cannot write the training log {tmp_path}/afile/run/train.log "
                                          r"\(Not a directory\); choose a writable --models-root$"):
        with RunLog() as run_log:
            run_log.open(str(tmp_path / "afile" / "run" / "model"))
    assert logging.getLogger().handlers == handlers
