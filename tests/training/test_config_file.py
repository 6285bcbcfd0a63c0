"""recognition/config.py is the table file users edit: --config FILE, else config.py beside train.py."""
import os
import shutil
import subprocess
import sys
from types import SimpleNamespace

import pytest

from facekd import config as package
from facekd.config_file import find_tables, read_tables
from facekd.errors import FaceKDError
from facekd.training.args import parse_args
from facekd.training.settings import resolve

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
USER_FILE = os.path.join(ROOT, "recognition", "config.py")
PACKAGE_FILE = os.path.abspath(package.__file__)
# The package's defaults as src/facekd/config.py writes them (the reference the tests compare with).
PACKAGE_LR, PACKAGE_Y1_EMB, PACKAGE_BATCH, PACKAGE_ARC_M2 = 0.1, 512, 256, 0.5

EDITS = """
default.lr = 0.05
default.per_batch_size = 32
network.y1.emb_size = 128
loss.arcface.loss_m2 = 0.4
dataset.my_faces = edict(dataset="my_faces", dataset_path="/data/my_faces", num_classes=0,
                         image_shape=(112, 112, 3), val_targets=["lfw"])
"""


def _edited_copy(folder, edits=EDITS, name="config.py"):
    path = os.path.join(folder, name)
    shutil.copy(USER_FILE, path)
    with open(path, "a") as f:
        f.write(edits)
    return path


def _package_unchanged():
    assert package.default.lr == PACKAGE_LR and package.default.per_batch_size == PACKAGE_BATCH
    assert package.network.y1.emb_size == PACKAGE_Y1_EMB and package.loss.arcface.loss_m2 == PACKAGE_ARC_M2
    assert "my_faces" not in package.dataset


def test_the_shipped_file_holds_the_package_tables():
    tables = read_tables(USER_FILE)
    for name in ("config", "network", "dataset", "loss", "default"):
        assert getattr(tables, name) == getattr(package, name), name
        assert getattr(tables, name) is not getattr(package, name)  # copies, never the package's objects
    assert tables.source == USER_FILE


def test_edited_copy_takes_effect_with_config(tmp_path):
    path = _edited_copy(str(tmp_path))
    args, cfg = parse_args(["--config", path, "--network", "y1", "--loss", "arcface", "--dataset", "my_faces"])
    assert (cfg.lr, cfg.per_batch_size, cfg.emb_size, cfg.loss_m2) == (0.05, 32, 128, 0.4)
    assert cfg.dataset_path == "/data/my_faces" and cfg.config_file == path
    # flags still override the file's tables
    _, cfg = parse_args(["--config", path, "--dataset", "my_faces", "--lr", "0.2", "--emb-size", "256"])
    assert (cfg.lr, cfg.emb_size) == (0.2, 256)
    # and the settings of the run (after the dataset's property) keep the file's values
    settings = resolve(parse_args(["--config", path, "--dataset", "my_faces"])[1],
                       SimpleNamespace(num_classes=10, image_size=(112, 112)), 0)
    assert (settings.emb_size, settings.lr, settings.num_classes) == (128, 0.05, 10)
    _package_unchanged()


def test_package_defaults_unchanged_across_runs(tmp_path):
    """Many runs in one process: each reads its file afresh; the package's tables never move."""
    path = _edited_copy(str(tmp_path))
    for _ in range(2):
        _, cfg = parse_args(["--config", path])
        assert cfg.emb_size == 128
        _package_unchanged()
    _, cfg = parse_args(["--network", "y1"])  # no file: the package's tables
    assert (cfg.lr, cfg.emb_size) == (PACKAGE_LR, PACKAGE_Y1_EMB) and cfg.config_file == PACKAGE_FILE
    # edited afresh: the next run sees the new value, not a cached module
    with open(path, "a") as f:
        f.write("network.y1.emb_size = 64\n")
    assert parse_args(["--config", path])[1].emb_size == 64


def test_a_file_editing_the_package_tables_in_place(tmp_path):
    """`from facekd.config import default` then edits: the run gets them, the package is restored."""
    path = tmp_path / "inplace.py"
    path.write_text("from facekd.config import config, network, dataset, loss, default\n"
                    "default.lr = 0.01\nnetwork.y1.emb_size = 96\ndataset.extra = dict(dataset_path='x')\n")
    _, cfg = parse_args(["--config", str(path)])
    assert (cfg.lr, cfg.emb_size) == (0.01, 96)
    _package_unchanged()
    assert "extra" not in package.dataset


def test_config_beside_train_py(tmp_path):
    """Without --config the trainer reads the config.py beside the running train.py, if present."""
    path = _edited_copy(str(tmp_path))
    _, cfg = parse_args(["--network", "y1"], script_config=path)
    assert cfg.emb_size == 128 and cfg.config_file == path
    other = _edited_copy(str(tmp_path), "default.lr = 0.3\n", name="other.py")
    assert parse_args(["--config", other], script_config=path)[1].lr == 0.3  # --config wins
    missing = str(tmp_path / "none" / "config.py")
    assert find_tables(None, missing).source == PACKAGE_FILE


@pytest.mark.slow
def test_train_py_reads_its_neighbour(tmp_path):
    """The real script: a copy of recognition/train.py beside an edited config.py runs with its
    tables and names the file it read (the run stops at the missing dataset)."""
    shutil.copy(os.path.join(ROOT, "recognition", "train.py"), tmp_path / "train.py")
    path = _edited_copy(str(tmp_path), "default.lr = 0.0625\n")
    proc = subprocess.run([sys.executable, str(tmp_path / "train.py"), "--data-dir", str(tmp_path / "missing")],
                          capture_output=True, text=True, cwd=tmp_path, timeout=120)
    lines = proc.stderr.splitlines()
    assert proc.returncode == 2 and lines[0] == f"config: tables from {path}", proc.stderr[-2000:]
    assert "'lr': 0.0625" in lines[1] and lines[-1].startswith("train.py: error: dataset folder")


@pytest.mark.parametrize("name, text, message", [
    ("config.py", "default = {}\nnetwork = {}\n",
     r"^--config {path} does not define dataset, loss; a table file defines default, network, dataset, loss"),
    ("config.py", "from facekd.config import copy_tables\nconfig, network, dataset, loss, default = "
                  "copy_tables()\nif True\n    default.lr = 1\n",
     r"^--config {path}, line 3: syntax error \(expected ':'\); fix that line$"),
    ("config.py", "from facekd.config import copy_tables\n\nconfig, network, dataset, loss, default = "
                  "copy_tables()\ndefault.lr = undefined_name\n",
     r"^--config {path}, line 4: NameError: name 'undefined_name' is not defined; fix the file"),
    ("config.txt", "default = {}\n", r"^--config {path}: not a Python file; the tables are read from a \.py file"),
    ("config.py", b"\x89PNG\r\n\x1a\n\x00\x00", r"^--config {path}: not a Python file \(binary or not UTF-8 text\)"),
    ("config.py", "from facekd.config import copy_tables\nconfig, network, dataset, loss, default = "
                  "copy_tables()\nnetwork = 5\n",
     r"^--config {path}: network is a int, expected a table"),
    ("config.py", "from facekd.config import copy_tables\nconfig, network, dataset, loss, default = "
                  "copy_tables()\nnetwork.y1 = 'fast'\n",
     r"^--config {path}: network.y1 is a str, expected a table of keys"),
])
def test_bad_table_files(tmp_path, name, text, message):
    path = tmp_path / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(FaceKDError, match=message.format(path=path)):
        parse_args(["--config", str(path)])
    _package_unchanged()


def test_missing_and_folder(tmp_path):
    with pytest.raises(FaceKDError, match=rf"^--config {tmp_path}/nope.py: file not found"):
        parse_args(["--config", str(tmp_path / "nope.py")])
    with pytest.raises(FaceKDError, match=rf"^--config {tmp_path} is a folder; give the table file"):
        parse_args(["--config", str(tmp_path)])
    broken = tmp_path / "config.py"  # beside train.py: named by its path alone
    broken.write_text("default = [\n")
    with pytest.raises(FaceKDError, match=rf"^{broken}, line 1: syntax error"):
        parse_args([], script_config=str(broken))
