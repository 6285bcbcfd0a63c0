"""Bad inputs fail with one line and a non-zero exit; a crash mid-way leaves nothing under OUT."""
import os
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest

import facekd.data.soft_dataset as soft_dataset
from facekd.data.recordio import RecordDatasetWriter
from facekd.errors import FaceKDError

from prepare_helpers import ROOT, read_raw, run_script


def fails(name, argv, capsys, *needles):
    code, out, err = run_script(name, argv, capsys)
    assert code == 2, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def copy_dataset(src, dst, skip=()):
    os.makedirs(dst)
    for name in os.listdir(src):
        if name not in skip:
            shutil.copy(os.path.join(src, name), os.path.join(dst, name))
    return dst


def test_teacher_without_fc1(synthetic_dir, headless_teacher, tmp_path, capsys):
    out = tmp_path / "o"
    fails("save_embeddings", ["--model", headless_teacher, "--data-dir", str(synthetic_dir), "--out", str(out)],
          capsys, "fc1_output", "model-symbol.json")
    assert not os.path.exists(out) and not os.path.exists(str(out) + ".partial")


@pytest.mark.parametrize("missing", ["property", "train.idx"])
def test_dataset_missing_file(synthetic_dir, teacher, tmp_path, capsys, missing):
    data = copy_dataset(str(synthetic_dir), str(tmp_path / "in"), skip=(missing,))
    fails("save_embeddings", ["--model", teacher[0], "--data-dir", data, "--out", str(tmp_path / "o")],
          capsys, os.path.join(data, missing))
    fails("bin_get_images", ["--data-dir", data, "--out", str(tmp_path / "w")], capsys, missing)
    assert not os.path.exists(tmp_path / "o") and not os.path.exists(tmp_path / "w")


def test_output_exists(synthetic_dir, teacher, tmp_path, capsys):
    out = tmp_path / "o"
    out.mkdir()
    fails("save_embeddings", ["--model", teacher[0], "--data-dir", str(synthetic_dir), "--out", str(out)],
          capsys, "--out", "--overwrite")
    fails("bin_get_images", ["--data-dir", str(synthetic_dir), "--out", str(out)], capsys, "--overwrite")
    assert os.listdir(out) == []


def test_stepwise_bad_inputs(synthetic_dir, teacher, tmp_path, capsys):
    work = tmp_path / "w"
    fails("save_embeddings", ["--model", teacher[0], "--images", str(work / "images"), "--labels",
                              str(work / "labels")], capsys, "index.tsv", "bin_get_images")
    code, _, err = run_script("bin_get_images", ["--data-dir", str(synthetic_dir), "--out", str(work)], capsys)
    assert code == 0, err
    fails("save_lst", ["--images", str(work / "images"), "--labels", str(work / "labels"),
                       "--out", str(tmp_path / "s" / "train.lst")], capsys, "embeddings.npy", "save_embeddings")
    argv = ["--model", teacher[0], "--images", str(work / "images"), "--labels", str(work / "labels")]
    assert run_script("save_embeddings", argv, capsys)[0] == 0
    fails("save_embeddings", argv, capsys, "embeddings.npy", "--overwrite")
    fails("save_embeddings", argv + ["--data-dir", str(synthetic_dir)], capsys, "not both")
    fails("save_embeddings", ["--model", teacher[0], "--data-dir", str(synthetic_dir)], capsys, "--out")


def test_subprocess_exit_status(synthetic_dir, tmp_path):
    """The real command line: status 2 and one line on stderr."""
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "data_prepare", "save_embeddings.py"),
                           "--model", str(tmp_path / "nothing") + ",1", "--data-dir", str(synthetic_dir),
                           "--out", str(tmp_path / "o")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1 and "nothing-symbol.json" in proc.stderr


class CrashingWriter(RecordDatasetWriter):
    """Raises after a fixed number of images, as a full disk or a kill would interrupt it."""

    limit = 20

    def add(self, label, payload, item=None):
        if self.num_images >= self.limit:
            raise OSError(28, "No space left on device (simulated)")
        super().add(label, payload, item)


def test_crash_leaves_nothing_and_rerun_succeeds(synthetic_dir, teacher, tmp_path, monkeypatch, capsys):
    out = tmp_path / "o"
    argv = ["--model", teacher[0], "--data-dir", str(synthetic_dir), "--out", str(out), "--batch-size", "8"]
    monkeypatch.setattr(soft_dataset, "RecordDatasetWriter", CrashingWriter)
    with pytest.raises(OSError, match="simulated"):
        run_script("save_embeddings", argv, capsys)
    assert os.listdir(tmp_path) == []  # neither OUT nor OUT.partial
    monkeypatch.undo()
    assert run_script("save_embeddings", argv, capsys)[0] == 0
    assert read_raw(str(out))["header"][0] == read_raw(str(synthetic_dir))["header"][0]


def test_teacher_error_mid_run_cleans_up(synthetic_dir, teacher, tmp_path):
    """An error in the inference stage (after some batches were written) stops all stages."""
    class Flaky:
        batch_size, emb_size = 8, 8

        def __init__(self):
            self.calls = 0

        def embed(self, images):
            self.calls += 1
            if self.calls == 3:
                raise FaceKDError("teacher failed (simulated)")
            return images.reshape(len(images), -1)[:, :8].astype("float32")

    with pytest.raises(FaceKDError, match="simulated"):
        soft_dataset.build_soft_dataset(str(synthetic_dir), str(tmp_path / "o"), Flaky(), progress=False)
    assert os.listdir(tmp_path) == []


def test_killed_run_restarts_cleanly(synthetic_dir, teacher, tmp_path, capsys):
    """What a SIGKILL leaves (a half-written OUT.partial) is discarded by the rerun."""
    partial = tmp_path / "o.partial"
    partial.mkdir()
    (partial / ".facekd-output").write_text("save_embeddings.py soft-dataset\n")  # made first by every run
    (partial / "train.rec.tmp4242").write_bytes(b"\x00" * 1000)
    (partial / "train.idx.tmp4242").write_text("0\t0\n1\t")
    code, _, err = run_script("save_embeddings", ["--model", teacher[0], "--data-dir", str(synthetic_dir),
                                                  "--out", str(tmp_path / "o"), "--batch-size", "8"], capsys)
    assert code == 0, err
    assert f"removed {partial}, the unfinished output of an interrupted run" in err
    assert sorted(os.listdir(tmp_path)) == ["o"]
    assert sorted(os.listdir(tmp_path / "o")) == sorted(os.listdir(synthetic_dir))


def test_reader_runs_at_most_a_few_batches_ahead(synthetic_dir, tmp_path, monkeypatch):
    """Bounded queues: with a slow teacher the reader waits instead of decoding the whole set."""
    decoded = []
    real_decode = soft_dataset._decode_batch
    monkeypatch.setattr(soft_dataset, "_decode_batch", lambda *a: decoded.append(1) or real_decode(*a))

    class Slow:
        batch_size, emb_size = 4, 8

        def __init__(self):
            self.calls, self.lead = 0, 0

        def embed(self, images):
            self.calls += 1
            time.sleep(0.02)
            self.lead = max(self.lead, len(decoded) - self.calls)
            return np.ones((len(images), 8), np.float32)

    teacher = Slow()
    s = soft_dataset.build_soft_dataset(str(synthetic_dir), str(tmp_path / "o"), teacher, queue_depth=1,
                                        progress=False)
    assert teacher.calls == -(-s.num_images // 4) > 10
    assert teacher.lead <= 2  # one batch queued + one being decoded, never the whole set
