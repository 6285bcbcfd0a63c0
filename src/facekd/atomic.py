"""Write a file under a temporary name and rename it into place: never half-written.

A process killed between the write and the rename (kill -9, power loss) leaves its
temporary name behind, tagged with its process id; :func:`clear_leftovers` removes
such names once that process is gone, so the next run of the same tool cleans up.
"""
import contextlib
import glob
import logging
import os
import re
import shutil

TMP_TAG = ".tmp"  # <final>.tmp<pid>
OLD_TAG = ".old-"  # <final>.old-<pid>: an existing output set aside while it is replaced


@contextlib.contextmanager
def atomic_path(path, keep_partial=False):
    """Yield a temporary path beside ``path``; on success rename it to ``path``, on failure remove it
    (or, with ``keep_partial``, rename what was written: a log of a run that failed)."""
    tmp = f"{path}{TMP_TAG}{os.getpid()}"
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            if keep_partial:
                os.replace(tmp, path)
            else:
                os.remove(tmp)


def pid_alive(pid):
    """Whether process ``pid`` runs (this process counts as running)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


_LEFTOVER = re.compile(r"^(?P<final>.+?)(\.tmp|\.old-)(?P<pid>\d+)$")


def clear_leftovers(pattern, log=logging.info):
    """Remove ``<final>.tmp<pid>`` / ``<final>.old-<pid>`` files and folders matching the glob
    ``pattern`` (e.g. ``<prefix>-*``) whose process no longer runs; returns the removed paths."""
    removed = []
    for path in sorted(glob.glob(pattern)):
        match = _LEFTOVER.match(os.path.basename(path))
        if match is None or pid_alive(int(match.group("pid"))):
            continue
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path, ignore_errors=True)
        elif os.path.lexists(path):
            os.remove(path)
        removed.append(path)
        log("removed %s, left by an interrupted run (process %s)" % (path, match.group("pid")))
    return removed


def check_writable_dir(folder, flag):
    """Fail now, not after hours of work, when ``folder`` (or the parent it would be made in)
    cannot take new files: a file in the way, a read-only mount, no permission, a full disk."""
    from .errors import FaceKDError

    folder = os.path.abspath(folder)
    probe_dir = folder
    while not os.path.exists(probe_dir):
        parent = os.path.dirname(probe_dir)
        if parent == probe_dir:
            break
        probe_dir = parent
    if not os.path.isdir(probe_dir):
        raise FaceKDError(f"{flag} {folder}: {probe_dir} is a file, not a folder; choose another path")
    probe = os.path.join(probe_dir, f".facekd-write-test{os.getpid()}")
    try:
        with open(probe, "wb") as f:
            f.write(b"\0" * 4096)
            f.flush()
            os.fsync(f.fileno())
    except OSError as exc:
        raise FaceKDError(f"{flag} {folder}: cannot write into {probe_dir} ({exc.strerror or exc}); "
                          "choose a writable folder with free space") from None
    finally:
        if os.path.lexists(probe):
            os.remove(probe)
