"""recognition/eval/verification.py: rows per model and target, ROC file, one-line errors."""
import os
import pickle
import subprocess
import sys

import cv2
import mxnet as mx
import numpy as np
import pytest

from facekd.errors import FaceKDError
from facekd.evaluation import verification as V
from facekd.embedder import Embedder

from evalhelpers import ROOT, SIZE, load_script, tiny_params, tiny_symbol, write_target


@pytest.fixture
def setup(tmp_path, checkpoint):
    prefix, _ = checkpoint
    arg, aux = tiny_params(seed=1)
    mx.model.save_checkpoint(prefix, 2, tiny_symbol(), arg, aux)
    rng = np.random.RandomState(0)
    data = tmp_path / "data"
    data.mkdir()
    write_target(data / "synth_easy.bin", rng, n_pairs=10)
    write_target(data / "synth_pose.bin", rng, n_pairs=12)
    return prefix, str(data)


def test_rows_per_model_and_target(setup, tmp_path, capsys):
    prefix, data = setup
    roc = str(tmp_path / "roc.png")
    script = load_script("verification")
    assert script.main(["--data-dir", data, "--model", f"{prefix},1|2", "--target", "synth_easy,synth_pose",
                        "--batch-size", "4", "--image-size", "8,8", "--roc", roc]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if "Accuracy-Flip" in line]
    assert len(rows) == 4
    for row, (epoch, target) in zip(rows, [(1, "synth_easy"), (1, "synth_pose"), (2, "synth_easy"),
                                           (2, "synth_pose")]):
        emb = Embedder.from_checkpoint(prefix, epoch, [mx.cpu()], 4, SIZE)
        res = V.evaluate(emb, V.load_target(os.path.join(data, f"{target}.bin"), SIZE))
        assert row.startswith(f"[{target}]{prefix},{epoch}\t")
        assert f"XNorm: {res.xnorm:f}" in row
        assert f"Accuracy-Flip: {res.acc:1.5f}+-{res.std:1.5f}" in row
    png = cv2.imread(roc)
    assert png is not None and png.shape[0] > 100


def test_errors(setup):
    prefix, data = setup
    script = load_script("verification")
    with pytest.raises(FaceKDError, match=r"lfw\.bin not found.*present: synth_easy, synth_pose"):
        script.main(["--data-dir", data, "--model", f"{prefix},1", "--target", "lfw,synth_easy"])
    with pytest.raises(FaceKDError, match=r"model-0003\.params not found"):
        script.main(["--data-dir", data, "--model", f"{prefix},1|3", "--target", "synth_easy"])
    with pytest.raises(FaceKDError, match="--model"):
        script.main(["--data-dir", data, "--model", prefix, "--target", "synth_easy"])


def test_command_line_error_is_one_line(setup):
    prefix, data = setup
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "recognition", "eval", "verification.py"),
                           "--data-dir", data, "--model", f"{prefix},7", "--target", "synth_easy"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "model-0007.params not found" in lines[0]


# ----------------------------------------------------------------------------- --roc target

def _run(*argv):
    return subprocess.run([sys.executable, os.path.join(ROOT, "recognition", "eval", "verification.py"), *argv],
                          capture_output=True, text=True, timeout=300)


def _no_work(monkeypatch, script):
    """Make any model loading or embedding of the script fail loudly: the check must come first."""
    def boom(*args, **kwargs):
        raise AssertionError("verify_models ran before --roc was checked")
    monkeypatch.setattr(script, "verify_models", boom)


def test_existing_roc_file_is_refused_and_kept(setup, tmp_path, monkeypatch):
    prefix, data = setup
    roc = tmp_path / "roc.png"
    roc.write_bytes(b"an earlier plot\x00\xff")
    script = load_script("verification")
    _no_work(monkeypatch, script)
    with pytest.raises(FaceKDError) as err:
        script.main(["--data-dir", data, "--model", f"{prefix},1", "--target", "synth_easy", "--roc", str(roc)])
    assert str(err.value) == f"--roc {roc} already exists; pass --overwrite to replace it, or choose another file name"
    assert roc.read_bytes() == b"an earlier plot\x00\xff"


def test_roc_onto_a_dataset_file_is_refused(setup):
    """The reported case: --roc pointing at the dataset's `property` file."""
    prefix, data = setup
    prop = os.path.join(data, "property")
    with open(prop, "wb") as f:
        f.write(b"85742,112,112")
    for extra in ([], ["--overwrite"]):
        proc = _run("--data-dir", data, "--model", f"{prefix},1", "--target", "synth_easy", "--roc", prop, *extra)
        assert proc.returncode == 2
        assert proc.stderr.strip().splitlines() == [
            f"verification.py: error: --roc {prop}: the plot is written as PNG; give a file name ending in .png"]
        assert "Accuracy-Flip" not in proc.stdout
        with open(prop, "rb") as f:
            assert f.read() == b"85742,112,112"


def test_existing_roc_file_refused_on_the_command_line(setup, tmp_path):
    prefix, data = setup
    roc = tmp_path / "old.png"
    roc.write_bytes(b"old")
    proc = _run("--data-dir", data, "--model", f"{prefix},1", "--target", "synth_easy", "--roc", str(roc))
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"verification.py: error: --roc {roc} already exists; pass --overwrite to replace it, "
        "or choose another file name"]
    assert proc.stdout == "" and roc.read_bytes() == b"old"


def test_overwrite_replaces_the_roc_file(setup, tmp_path):
    prefix, data = setup
    roc = tmp_path / "roc.png"
    roc.write_bytes(b"an earlier plot")
    script = load_script("verification")
    assert script.main(["--data-dir", data, "--model", f"{prefix},1", "--target", "synth_easy",
                        "--batch-size", "4", "--image-size", "8,8", "--roc", str(roc), "--overwrite"]) == 0
    png = cv2.imread(str(roc))
    assert png is not None and png.shape[0] > 100
    assert roc.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["roc.png", "models", "data"])


@pytest.mark.parametrize("where, message", [
    ("somefile/out.png", "--roc {path}: {tmp}/somefile is a file, not a folder; choose another path"),
    ("somefile/deeper/out.png", "--roc {path}: {tmp}/somefile is a file, not a folder; choose another path"),
    ("missing/out.png", "--roc {path}: folder {tmp}/missing does not exist; create it or choose another path"),
    ("adir", "--roc {path} is a folder; give a file name such as {path}/roc.png"),
    ("out.jpg", "--roc {path}: the plot is written as PNG; give a file name ending in .png"),
])
@pytest.mark.parametrize("overwrite", [[], ["--overwrite"]], ids=["", "overwrite"])
def test_unwritable_roc_is_refused_before_any_work(setup, tmp_path, monkeypatch, where, message, overwrite):
    prefix, data = setup
    (tmp_path / "somefile").write_bytes(b"keep me")
    (tmp_path / "adir").mkdir()
    path = str(tmp_path / where)
    script = load_script("verification")
    _no_work(monkeypatch, script)
    with pytest.raises(FaceKDError) as err:
        script.main(["--data-dir", data, "--model", f"{prefix},1", "--target", "synth_easy", "--roc", path,
                     *overwrite])
    assert str(err.value) == message.format(path=path, tmp=tmp_path)
    assert (tmp_path / "somefile").read_bytes() == b"keep me"
    assert os.listdir(tmp_path / "adir") == []
    assert not os.path.exists(tmp_path / "out.jpg") and not os.path.exists(tmp_path / "missing")


def test_roc_in_a_file_path_refused_on_the_command_line(setup, tmp_path):
    prefix, data = setup
    (tmp_path / "somefile").write_bytes(b"keep me")
    path = str(tmp_path / "somefile" / "out.png")
    proc = _run("--data-dir", data, "--model", f"{prefix},1", "--target", "synth_easy", "--roc", path)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"verification.py: error: --roc {path}: {tmp_path}/somefile is a file, not a folder; choose another path"]
    assert proc.stdout == "" and (tmp_path / "somefile").read_bytes() == b"keep me"


# ----------------------------------------------------------------------------- code in a .bin

class _Touch:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


@pytest.mark.parametrize("protocol", [0, 2, 5])
def test_malicious_bin_is_refused_on_the_command_line(setup, tmp_path, protocol):
    prefix, data = setup
    marker = tmp_path / "pwned"
    evil = os.path.join(data, "evil.bin")
    with open(evil, "wb") as f:  # valid-looking pairs with a command hidden among them
        f.write(pickle.dumps(([b"\x89PNG a", _Touch(marker)], [True]), protocol=protocol))
    proc = _run("--data-dir", data, "--model", f"{prefix},1", "--target", "evil", "--image-size", "8,8")
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [
        f"verification.py: error: {evil}: refuses to load global 'posix.system' (a verification set holds only "
        "image bytes and booleans); replace it with the .bin of a trusted dataset download"]
    assert not marker.exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_roc_in_a_read_only_folder_is_refused(setup, tmp_path, monkeypatch):
    prefix, data = setup
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    script = load_script("verification")
    _no_work(monkeypatch, script)
    try:
        with pytest.raises(FaceKDError, match=rf"^--roc {folder}: cannot write into {folder} \(Permission denied\)"):
            script.main(["--data-dir", data, "--model", f"{prefix},1", "--target", "synth_easy",
                         "--roc", str(folder / "roc.png")])
    finally:
        folder.chmod(0o700)
    assert os.listdir(folder) == []
