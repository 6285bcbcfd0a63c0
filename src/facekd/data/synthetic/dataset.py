"""Generate a synthetic dataset folder: train.rec/.idx/property and the three verification targets.

Workers render and encode images; the main process writes them in plan order,
so the files are byte-identical for a seed whatever the number of workers. A
target whose pairs draw from pools (``target_images``) renders each pool image it
uses once and writes its bytes into every pair slot that uses it.
Everything is written into a staging folder beside the output (``.NAME.tmp<pid>``)
and moved into place at the end: a failure leaves nothing half-written, and the
staging folder of a killed run is removed (and said so) by the next run.

The folder gets the marker ``.facekd-output`` (:mod:`facekd.data.prepare`).
``--overwrite`` replaces :data:`OUTPUT_FILES` in an existing folder only when its
marker names this tool; a folder holding none of them (e.g. only notes) may take
the dataset, nothing in it is replaced. A dataset the tool did not write, such as a
real training set given as ``--out`` by mistake, is refused.
"""
import glob
import itertools
import multiprocessing
import os
import shutil
import signal
import time
from collections import namedtuple
from contextlib import contextmanager

import cv2
from tqdm import tqdm

from ...atomic import check_writable_dir, clear_leftovers
from ...errors import FaceKDError
from ..binfile import save_bin
from ..images import decode
from ..outputs import MARKER, notice, not_owned_error, write_marker, written_by
from ..recordio import RecordDatasetWriter
from .image import IMAGE_SIZE, render_encoded
from .montage import DIFFERENT, SAME, MontageRow, check_png_path, montage, save_png
from .plan import STREAM_TRAIN_IMAGE, TARGETS, plan_all_pairs, target_images, train_identities, val_identities

OUTPUT_FILES = ("train.rec", "train.idx", "property") + tuple(t.name + ".bin" for t in TARGETS)
TOOL, KIND = "make_synthetic.py", "synthetic-dataset"

MONTAGE_IDENTITIES, MONTAGE_IMAGES, MONTAGE_PAIRS = 6, 8, 4

SyntheticSummary = namedtuple("SyntheticSummary", "folder num_images num_identities val_identities pairs "
                                                  "targets rendered seconds target_images")
"""``target_images``: the number of distinct images of each target (2 x pairs without a pool)."""

TargetLayout = namedtuple("TargetLayout", "tasks slots")
"""A target's distinct render tasks in plan order, and for each of its 2P slots the index of its task."""


def images_per_second(summary):
    return summary.rendered / max(summary.seconds, 1e-9)


def _quiet_worker():
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and terminates the pool
    cv2.setNumThreads(1)


@contextmanager
def _renderer(workers):
    """A function mapping an iterable of tasks to their JPEG bytes, in order."""
    if workers == 1:
        yield lambda tasks: map(render_encoded, tasks)
        return
    # spawn, not fork: a process that has run MXNet holds OpenMP and engine threads, and a child forked
    # from it can block for ever on a lock one of them held (seen in the test-suite)
    with multiprocessing.get_context("spawn").Pool(workers, initializer=_quiet_worker) as pool:
        yield lambda tasks: pool.imap(render_encoded, tasks, chunksize=16)


def _stage_path(out):
    """The staging folder of ``out``: hidden, beside it, tagged with this process id."""
    out = os.path.abspath(out)
    return os.path.join(os.path.dirname(out), f".{os.path.basename(out)}.tmp{os.getpid()}")


def _check_out_folder(out, overwrite):
    if os.path.exists(out) and not os.path.isdir(out):
        raise FaceKDError(f"--out {out} is a file; give a folder")
    stage = _stage_path(out)
    clear_leftovers(glob.escape(stage[:-len(str(os.getpid()))]) + "*", lambda m: notice(f"{TOOL}: {m}"))
    if os.path.isdir(out) and os.listdir(out):
        if not overwrite:
            raise FaceKDError(f"--out {out} already exists and is not empty; pass --overwrite to replace "
                              "its dataset files, or choose another folder")
        replaced = [name for name in OUTPUT_FILES if os.path.lexists(os.path.join(out, name))]
        if replaced and not written_by(out, TOOL):
            raise not_owned_error(out, TOOL, "--out")
    check_writable_dir(out, "--out")
    check_writable_dir(os.path.dirname(os.path.abspath(out)), "--out")  # the staging folder goes there


@contextmanager
def _staging(out):
    """A fresh folder beside ``out``; on success its files replace those in ``out``, else it is removed."""
    parent = os.path.dirname(os.path.abspath(out))
    os.makedirs(parent, exist_ok=True)
    stage = _stage_path(out)
    if os.path.lexists(stage):  # our own pid: left by an earlier process that had it
        shutil.rmtree(stage)
    os.mkdir(stage)
    try:
        write_marker(stage, TOOL, KIND)
        yield stage
        if os.path.isdir(out) and not os.listdir(out):
            os.rmdir(out)
        if not os.path.exists(out):
            os.rename(stage, out)
        else:
            write_marker(out, TOOL, KIND)  # merged with the lines of other tools
            for name in sorted(os.listdir(stage)):
                if name != MARKER:
                    os.replace(os.path.join(stage, name), os.path.join(out, name))
    finally:
        if os.path.isdir(stage):
            shutil.rmtree(stage)


def target_layouts(params, val, plans):
    """The :class:`TargetLayout` of every target: each distinct image (one key) rendered once."""
    layouts = []
    for t, pairs in enumerate(plans):
        row_of, tasks, slots = {}, [], []
        for image in target_images(params, t, pairs):
            if image.key not in row_of:
                row_of[image.key] = len(tasks)
                tasks.append((val[image.identity], image.profile, params.seed, image.key))
            slots.append(row_of[image.key])
        layouts.append(TargetLayout(tasks, slots))
    return layouts


def _tasks(params, train, layouts):
    for c, ident in enumerate(train):
        for j in range(params.images_per_identity):
            yield ident, "train", params.seed, (STREAM_TRAIN_IMAGE, c, j)
    for layout in layouts:
        yield from layout.tasks


def _montage_rows(train_shown, target_bins, plans):
    rows = [MontageRow(f"id {c}", [decode(p) for p in payloads], None) for c, payloads in enumerate(train_shown)]
    for target, bins, pairs in zip(TARGETS, target_bins, plans):
        n = min(MONTAGE_PAIRS, len(pairs))
        marks = [SAME if pairs[i // 2].same else DIFFERENT for i in range(2 * n)]
        rows.append(MontageRow(target.name.replace("synth_", ""), [decode(b) for b in bins[:2 * n]], marks))
    return rows


def generate_synthetic(out, params, workers=1, overwrite=False, montage_path=None, progress=True):
    """Write the synthetic dataset of ``params`` (a validated :class:`SyntheticParams`) into folder ``out``;
    optionally a montage PNG. Returns a :class:`SyntheticSummary`."""
    params.validate()
    if int(workers) < 1:
        raise FaceKDError(f"--workers must be at least 1; got {workers}")
    _check_out_folder(out, overwrite)
    if montage_path is not None:
        check_png_path(montage_path)
    start = time.perf_counter()
    train, val = train_identities(params), val_identities(params)
    plans = plan_all_pairs(params, val)
    layouts = target_layouts(params, val, plans)
    total = params.num_images + sum(len(layout.tasks) for layout in layouts)
    shown = min(MONTAGE_IMAGES, params.images_per_identity)
    train_shown = [[] for _ in range(min(MONTAGE_IDENTITIES, params.identities))]
    target_bins = []
    with _staging(out) as stage, _renderer(int(workers)) as render, \
            tqdm(total=total, desc="synthetic faces", unit="img", disable=not progress) as bar:
        payloads = render(_tasks(params, train, layouts))
        with RecordDatasetWriter(stage, num_classes=params.identities, image_size=(IMAGE_SIZE, IMAGE_SIZE)) as w:
            for c in range(params.identities):
                for j, payload in enumerate(itertools.islice(payloads, params.images_per_identity)):
                    w.add(c, payload)
                    if c < len(train_shown) and j < shown:
                        train_shown[c].append(payload)
                bar.update(params.images_per_identity)
        for target, pairs, layout in zip(TARGETS, plans, layouts):
            distinct = list(itertools.islice(payloads, len(layout.tasks)))
            bins = [distinct[row] for row in layout.slots]
            save_bin(os.path.join(stage, target.name + ".bin"), bins, [p.same for p in pairs])
            target_bins.append(bins)
            bar.update(len(distinct))
        grid = montage(_montage_rows(train_shown, target_bins, plans)) if montage_path is not None else None
    if grid is not None:
        save_png(montage_path, grid)
    return SyntheticSummary(folder=out, num_images=params.num_images, num_identities=params.identities,
                            val_identities=params.val_identities, pairs=params.pairs,
                            targets=tuple(t.name for t in TARGETS), rendered=total,
                            seconds=time.perf_counter() - start,
                            target_images=tuple(len(layout.tasks) for layout in layouts))
