"""The teacher cache of the experiments: keys, entries that survive only complete, reuse by Workspace.train_cached."""
import json
import os

import pytest

import experiments as ex  # bench/experiments.py (pytest's pythonpath)
import teacher_cache as tc  # bench/teacher_cache.py
from facekd.errors import FaceKDError

TRAIN_SET = {"identities": 10, "images_per_identity": 4, "seed": 0}
ARGS = ["--network", "y2", "--loss", "arcface", "--data-dir", "out/synthetic", "--models-root", "out/models",
        "--max-steps", "10", "--seed", "0"]


def test_the_key_ignores_paths_and_follows_everything_else():
    assert tc.command_without_paths(ARGS)[4:8] == ["--data-dir", "<path>", "--models-root", "<path>"]
    key = tc.cache_key(ARGS, TRAIN_SET)
    moved = [a.replace("out/", "elsewhere/") for a in ARGS]
    assert tc.cache_key(moved, TRAIN_SET) == key
    assert tc.cache_key(ARGS[:-1] + ["1"], TRAIN_SET) != key  # another seed
    assert tc.cache_key(ARGS, dict(TRAIN_SET, identities=11)) != key  # other training images
    assert len(key) == 16 and int(key, 16) >= 0


def test_the_root_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("FACEKD_CACHE", str(tmp_path / "c"))
    assert tc.default_root() == str(tmp_path / "c")
    monkeypatch.delenv("FACEKD_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "x"))
    assert tc.default_root() == str(tmp_path / "x" / "facekd")


def _fake_run(folder):
    os.makedirs(folder, exist_ok=True)
    for name, text in (("model-0001.params", "weights"), ("train.log", "log"), ("model-resume.params", "r")):
        with open(os.path.join(folder, name), "w") as f:
            f.write(text)


def test_store_then_restore_copies_the_run_without_its_resume_set(tmp_path):
    cache = tc.TeacherCache(str(tmp_path / "cache"))
    run = str(tmp_path / "run")
    _fake_run(run)
    assert cache.lookup("k") is None
    record = cache.store("k", run, "python -u recognition/train.py ...", 12.34)
    assert record["seconds"] == 12.3 and record["command"].startswith("python")
    assert sorted(os.listdir(cache.folder("k"))) == ["cache.json", "model-0001.params", "train.log"]
    assert not [n for n in os.listdir(cache.root) if ".tmp" in n]
    target = str(tmp_path / "again")
    _fake_run(target)  # an older run there is replaced
    assert cache.restore("k", target)["seconds"] == 12.3
    assert sorted(os.listdir(target)) == ["model-0001.params", "train.log"]


def test_a_damaged_record_is_ignored(tmp_path, capsys):
    cache = tc.TeacherCache(str(tmp_path))
    os.makedirs(cache.folder("k"))
    with open(os.path.join(cache.folder("k"), tc.RECORD), "w") as f:
        f.write("{not json")
    assert cache.lookup("k") is None
    assert "ignoring" in capsys.readouterr().out
    with pytest.raises(FaceKDError, match="no entry"):
        cache.restore("k", str(tmp_path / "run"))


class TrainingRunner(ex.CommandRunner):
    """Records the commands; a train.py call leaves a fake finished run in its --models-root."""

    def __init__(self, root):
        self.root, self.timings, self.calls = str(root), [], []

    def run(self, script, args, log_path, label=None):
        args = [str(a) for a in args]
        self.calls.append((script, args))
        if script == "recognition/train.py":
            root = os.path.join(self.root, args[args.index("--models-root") + 1])
            _fake_run(os.path.join(root, f"{args[1]}-arcface-synthetic"))
        self.timings.append((label, 5.0))
        return 5.0


def test_workspace_trains_a_teacher_once_then_reuses_it(tmp_path):
    cache = tc.TeacherCache(str(tmp_path / "cache"))
    runner = TrainingRunner(tmp_path)
    budget = ex.teacher_budget(10, 8)
    with pytest.raises(FaceKDError, match="synthetic set made first"):
        ex.Workspace(runner, str(tmp_path / "a")).train_cached(cache, "y2", ex.loss_flags("arcface"), budget)
    first = ex.Workspace(runner, str(tmp_path / "a"))
    first.make_synthetic(10, 4, 6, 20)
    model, record = first.train_cached(cache, "y2", ex.loss_flags("arcface"), budget)
    assert record["restored"] is False and [c[0] for c in runner.calls].count("recognition/train.py") == 1
    # another folder, same command and training images: no training, the files are copied
    second = ex.Workspace(runner, str(tmp_path / "b"))
    second.make_synthetic(10, 4, 6, 40, target_images=3)  # other targets: the same training images
    assert runner.calls[-1][1][10:12] == ["--target-images", "3"]
    again, record = second.train_cached(cache, "y2", ex.loss_flags("arcface"), budget)
    assert record["restored"] is True and [c[0] for c in runner.calls].count("recognition/train.py") == 1
    assert os.path.isfile(again.prefix + "-0001.params") and again.prefix != model.prefix
    assert json.load(open(os.path.join(cache.folder(os.listdir(cache.root)[0]), tc.RECORD)))["seconds"] == 5.0
    # other training images: trained again
    third = ex.Workspace(runner, str(tmp_path / "c"), seed=1)
    third.make_synthetic(10, 4, 6, 20)
    third.train_cached(cache, "y2", ex.loss_flags("arcface"), budget)
    assert [c[0] for c in runner.calls].count("recognition/train.py") == 2
    # no cache: always trained
    first.train_cached(None, "y2", ex.loss_flags("arcface"), budget)
    assert [c[0] for c in runner.calls].count("recognition/train.py") == 3
