"""Teachers trained once per command line and kept between runs (``make demo``, bench/compare_methods.py).

The teacher is the longest training of an experiment and the same for every method, seed and
rerun, so its finished run folder (checkpoint, meta, ``train.log``) is stored under a key made
of what determines it: the training command with its paths left out, the parameters of the
training images it read (a synthetic set is a function of its sizes and seed), and the
facekd version. The next run with the same key copies the folder instead of training.

The cache lives in ``$FACEKD_CACHE``, else ``$XDG_CACHE_HOME/facekd``, else ``~/.cache/facekd``
(outside the clone, so a fresh clone on the same machine finds it); every entry is a folder
``teachers/<key>/`` with ``cache.json`` saying which command made it, when and in how long.
Deleting the folder retrains; ``--no-cache`` of the scripts ignores it.
"""
import datetime
import hashlib
import json
import os
import shutil

from facekd.cache import default_root
from facekd.errors import FaceKDError

RECORD = "cache.json"
# Arguments whose values are paths: they say where the run was, not what it computed.
PATH_FLAGS = ("--data-dir", "--models-root")
SKIPPED = ("model-resume",)  # the resume set: not needed to use the teacher


def command_without_paths(args):
    """``args`` (a train.py argument list) with the values of :data:`PATH_FLAGS` replaced by ``<path>``."""
    args = [str(a) for a in args]
    out = []
    for i, a in enumerate(args):
        out.append("<path>" if i > 0 and args[i - 1] in PATH_FLAGS else a)
    return out


def cache_key(train_args, train_set):
    """The key of a teacher: a hash of its path-free command, its training set's parameters and facekd's version."""
    import facekd

    text = json.dumps({"train": command_without_paths(train_args), "train_set": dict(sorted(train_set.items())),
                       "facekd": facekd.__version__}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class TeacherCache:
    """Finished teacher run folders by :func:`cache_key`, under ``<root>/teachers``."""

    def __init__(self, root=None):
        self.root = os.path.join(root or default_root(), "teachers")

    def folder(self, key):
        return os.path.join(self.root, key)

    def lookup(self, key):
        """The record (dict) of a complete entry, or None. A damaged record is said and ignored."""
        path = os.path.join(self.folder(key), RECORD)
        if not os.path.isfile(path):
            return None
        try:
            with open(path) as f:
                record = json.load(f)
            if not isinstance(record, dict) or "seconds" not in record:
                raise ValueError("no 'seconds'")
        except (OSError, ValueError) as exc:
            print(f"teacher cache: ignoring {path} ({exc}); the teacher is trained again")
            return None
        return record

    def restore(self, key, run_folder):
        """Copy the entry's files into ``run_folder`` (replacing it); returns the record."""
        record = self.lookup(key)
        if record is None:
            raise FaceKDError(f"teacher cache: no entry {self.folder(key)}")
        if os.path.isdir(run_folder):
            shutil.rmtree(run_folder)
        shutil.copytree(self.folder(key), run_folder, ignore=shutil.ignore_patterns(RECORD))
        return record

    def store(self, key, run_folder, command, seconds):
        """Copy a finished run folder into the cache under ``key`` (staged, then renamed: never half-written)."""
        final = self.folder(key)
        stage = f"{final}.tmp{os.getpid()}"
        os.makedirs(self.root, exist_ok=True)
        shutil.rmtree(stage, ignore_errors=True)
        try:
            shutil.copytree(run_folder, stage, ignore=lambda _d, names: [
                n for n in names if n.startswith(SKIPPED) or n.endswith(".tmp")])
            record = {"command": command, "seconds": round(float(seconds), 1),
                      "date": datetime.datetime.now().isoformat(timespec="seconds")}
            with open(os.path.join(stage, RECORD), "w") as f:
                json.dump(record, f, indent=1)
            shutil.rmtree(final, ignore_errors=True)
            os.rename(stage, final)
        finally:
            shutil.rmtree(stage, ignore_errors=True)
        return record
