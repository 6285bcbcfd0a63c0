"""atomic_path: the final name appears only on success; nothing is left after a failure."""
import os

import pytest

from facekd.atomic import atomic_path


def test_success_renames(tmp_path):
    target = tmp_path / "out.txt"
    with atomic_path(str(target)) as tmp:
        with open(tmp, "w") as f:
            f.write("done")
        assert not target.exists()
    assert target.read_text() == "done" and os.listdir(tmp_path) == ["out.txt"]


def test_failure_leaves_nothing_and_keeps_the_old_file(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(str(target)) as tmp:
            with open(tmp, "w") as f:
                f.write("half")
            raise RuntimeError("crash")
    assert target.read_text() == "old" and os.listdir(tmp_path) == ["out.txt"]
