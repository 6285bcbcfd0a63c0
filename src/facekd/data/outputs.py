"""Outputs that never destroy what their tool did not write, and leftovers of killed runs.

Every output folder is written under ``OUT.partial`` and renamed into place when complete
(:func:`staged_output`); it carries a marker file :data:`MARKER` naming the tool that wrote
it, and ``--overwrite`` replaces only a folder whose marker names the same tool
(:func:`check_output_folder`). An output that is, contains or lies inside its input is
refused (:func:`check_separate`). What a killed run left beside an output (``OUT.partial``,
``OUT.old-PID``) is cleared or restored by the next run, which says so (:func:`recover_leftovers`).
"""
import contextlib
import glob
import os
import re
import shutil
import sys

from ..atomic import OLD_TAG, atomic_path, check_writable_dir, clear_leftovers, pid_alive
from ..errors import FaceKDError

PARTIAL = ".partial"
MARKER = ".facekd-output"  # in every output folder: one "tool kind" line per tool that wrote there
_MARKER_HEAD = "# written by facekd; --overwrite replaces this folder's outputs only for the tools named here\n"


# ----------------------------------------------------------------------------- outputs

def check_output(path, overwrite, flag="--out"):
    """Refuse an existing output unless ``overwrite`` (checked before any work starts)."""
    if os.path.lexists(path) and not overwrite:
        raise FaceKDError(f"{flag} {path} already exists; choose another path or pass --overwrite")


def notice(message):
    """One line on stderr saying what a run did besides its work (cleared or restored leftovers)."""
    print(message, file=sys.stderr, flush=True)


def remove_path(path):
    """Remove a file, link or folder tree if present."""
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    elif os.path.lexists(path):
        os.remove(path)


def replace_path(staged, final):
    """Move ``staged`` to ``final``; an existing ``final`` is set aside first, then removed.

    A kill between the two renames leaves ``final`` missing and the previous output as
    ``final.old-PID``; :func:`recover_leftovers` (run by the next run) restores it.
    """
    old = None
    if os.path.lexists(final):
        old = f"{final}{OLD_TAG}{os.getpid()}"
        os.rename(final, old)
    os.rename(staged, final)
    if old is not None:
        remove_path(old)


# ----------------------------------------------------------------------------- ownership marker

def read_marker(folder):
    """The ``(tool, kind)`` entries of ``folder/.facekd-output``; None when the folder has no marker."""
    path = os.path.join(folder, MARKER)
    if not os.path.isdir(folder) or not os.path.isfile(path):
        return None
    with open(path, "rb") as f:
        text = f.read(1 << 16).decode("utf-8", errors="replace")
    entries = []
    for line in text.splitlines():
        parts = line.split()
        if parts and not parts[0].startswith("#"):
            entries.append((parts[0], " ".join(parts[1:])))
    return entries


def write_marker(folder, tool, kind):
    """Record in ``folder/.facekd-output`` that ``tool`` wrote ``kind`` there (other tools' lines are kept)."""
    entries = read_marker(folder) or []
    if (tool, kind) in entries:
        return
    entries.append((tool, kind))
    with atomic_path(os.path.join(folder, MARKER)) as tmp, open(tmp, "w") as f:
        f.write(_MARKER_HEAD + "".join(f"{t} {k}\n" for t, k in entries))


def written_by(folder, tool, kind=None):
    """Whether the marker of ``folder`` names ``tool`` (and ``kind``, when given)."""
    return any(t == tool and (kind is None or k == kind) for t, k in read_marker(folder) or [])


def not_owned_error(path, tool, flag, what=None):
    """The refusal to replace ``path`` that ``tool`` did not write (``what`` names it, default ``flag path``)."""
    entries = read_marker(path)
    if entries:
        reason = f"its {MARKER} marker names {', '.join(sorted({t for t, _ in entries}))}"
    else:
        reason = f"no {MARKER} marker"
    what = f"{flag} {path}" if what is None else what
    return FaceKDError(f"{what} exists and was not written by {tool} ({reason}); "
                       f"remove it yourself or choose another {flag}")


# ----------------------------------------------------------------------------- input vs output

def is_inside(path, folder):
    """Whether real path ``path`` is ``folder`` or lies under it (both already resolved)."""
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def check_separate(input_path, in_flag, out_path, out_flag="--out"):
    """Refuse an output that is, contains or lies inside the input (symlinks resolved).

    The staging names beside the output (``OUT.partial``, ``OUT.old-PID``), which a run
    removes, count as the output too.
    """
    inp = os.path.realpath(input_path)
    out = os.path.realpath(out_path)
    if inp == out:
        raise FaceKDError(f"{out_flag} {out_path} is the input {in_flag}; write the output to a new folder")
    if is_inside(out, inp):
        raise FaceKDError(f"{out_flag} {out_path} is inside the input {in_flag} {input_path}; "
                          "write the output outside the input folder")
    if is_inside(inp, out):
        raise FaceKDError(f"{out_flag} {out_path} contains the input {in_flag} {input_path}; "
                          f"replacing it would delete the input, choose an {out_flag} outside it")
    final = os.path.normpath(os.path.abspath(out_path))
    staging = re.compile(re.escape(os.path.basename(final)) + r"(\.partial|\.old-\d+)$")
    rel = os.path.relpath(inp, os.path.realpath(os.path.dirname(final)))
    if staging.match(rel.split(os.sep)[0]):
        raise FaceKDError(f"{in_flag} {input_path} lies in {rel.split(os.sep)[0]}, a staging name of "
                          f"{out_flag} {out_path} that a run removes; rename the input or choose another {out_flag}")


# ----------------------------------------------------------------------------- leftovers

def _dead_old_copies(final):
    """``final.old-PID`` paths whose process is gone, newest first."""
    pattern = re.compile(re.escape(os.path.basename(final)) + re.escape(OLD_TAG) + r"(\d+)$")
    found = []
    for path in glob.glob(glob.escape(final) + OLD_TAG + "*"):
        match = pattern.match(os.path.basename(path))
        if match and not pid_alive(int(match.group(1))):
            found.append(path)
    return sorted(found, key=lambda p: os.lstat(p).st_mtime, reverse=True)


def recover_leftovers(final, tool, flag="--out", log=notice):
    """Clean up what a killed run of ``tool`` left beside the output ``final``; returns the notes logged.

    * ``final.old-PID`` (PID gone) is the previous output, set aside by :func:`replace_path`
      just before the new one was renamed in. When ``final`` exists the kill came after that
      rename, so the copy is stale and removed. When ``final`` is missing the kill came
      between the two renames and the copy is the only copy of the user's previous output:
      it is renamed back to ``final`` (never deleted). The half-finished new output in
      ``final.partial`` is then discarded like any other; the rerun rebuilds it. Of several
      copies (not made by one tool, but possible) the newest is restored, the rest removed.
    * ``final.partial`` is an unfinished output: removed. A folder there that does not carry
      ``tool``'s marker (and is not empty) was not made by ``tool`` and is refused instead.

    Each action is logged (one line through ``log``) so the user knows where the space went.
    """
    final = os.path.normpath(final)
    notes = []

    def say(message):
        notes.append(message)
        log(f"{tool}: {message}")

    olds = _dead_old_copies(final)
    if olds and not os.path.lexists(final):
        os.rename(olds[0], final)
        say(f"restored {final} from {olds[0]}, the previous output set aside by an interrupted run")
    clear_leftovers(glob.escape(final) + OLD_TAG + "*", say)
    staged = final + PARTIAL
    if os.path.isdir(staged) and not os.path.islink(staged):
        if os.listdir(staged) and not written_by(staged, tool):
            raise not_owned_error(staged, tool, flag, what=f"{flag} {final}: {staged}")
        remove_path(staged)
        say(f"removed {staged}, the unfinished output of an interrupted run")
    elif os.path.lexists(staged):
        remove_path(staged)
        say(f"removed {staged}, the unfinished output of an interrupted run")
    return notes


def check_output_folder(final, overwrite, tool, flag="--out"):
    """Before any work: leftovers cleared, an existing ``final`` only with ``overwrite`` and only
    when ``tool`` wrote it (its marker), and the location writable."""
    final = os.path.normpath(final)
    recover_leftovers(final, tool, flag)
    check_output(final, overwrite, flag)
    if os.path.lexists(final) and not written_by(final, tool):
        raise not_owned_error(final, tool, flag)
    check_writable_dir(final, flag)
    if os.path.lexists(final):  # the new output is staged beside it, in the parent
        check_writable_dir(os.path.dirname(os.path.abspath(final)), flag)


@contextlib.contextmanager
def staged_output(final, overwrite=False, flag="--out", tool="facekd", kind="output"):
    """Yield the folder ``final + '.partial'`` to write into; rename it to ``final`` on success.

    :func:`check_output_folder` runs first: a leftover ``.partial`` folder or ``.old-PID``
    copy (from a killed run) is cleared or restored and said so, and an existing ``final`` is
    replaced only with ``overwrite`` when its marker names ``tool``. The new folder gets the
    marker ``tool kind``. On an exception the partial folder is removed and ``final`` is
    untouched; a crash at any point never leaves anything under ``final``.
    """
    final = os.path.normpath(final)
    check_output_folder(final, overwrite, tool, flag)
    staged = final + PARTIAL
    os.makedirs(staged)
    try:
        write_marker(staged, tool, kind)
        yield staged
    except BaseException:
        remove_path(staged)
        raise
    replace_path(staged, final)
