"""Pack ``.lst`` image lists into insightface RecordIO datasets (the work behind face2rec2.py).

Worker processes read, align and encode images; the main process writes the
records in list order. Aligned images go in byte for byte; unaligned ones with
landmarks are warped onto the ArcFace template and re-encoded (degenerate landmarks,
all at one point or on one line, are refused before any image work); unaligned ones
without landmarks are skipped and counted.

The folder's marker ``.facekd-output`` records each list packed there
(``face2rec2.py <prefix>``); ``--overwrite`` replaces an existing ``<prefix>.rec``/``.idx``
only when the marker names it, never a dataset this tool did not write.
"""
import functools
import glob
import multiprocessing
import os
from dataclasses import dataclass

import cv2
from tqdm import tqdm

from ..atomic import check_writable_dir
from ..errors import FaceKDError
from .align import ALIGNED_SIZE, align_face, check_landmarks
from .images import ENCODINGS, decode, encode
from .lst import read_lst, resolve
from .outputs import MARKER, read_marker, write_marker, written_by
from .recordio import IdentityTracker, RecordDatasetWriter

TOOL = "face2rec2.py"


@dataclass
class PackSummary:
    """What one list produced."""

    lst_path: str
    rec_path: str
    num_images: int
    num_identities: int
    num_classes: int
    aligned: int
    warped: int
    skipped: int

    def __str__(self):
        return (f"{self.lst_path} -> {self.rec_path}: {self.num_images} images "
                f"({self.aligned} aligned, {self.warped} warped), {self.num_identities} identities, "
                f"{self.num_classes} classes, {self.skipped} skipped (unaligned without landmarks)")


def find_lists(root):
    """The ``.lst`` files to pack: ``root`` itself if it is one, else every ``*.lst`` in it (sorted)."""
    if os.path.isfile(root) and root.endswith(".lst"):
        return [root]
    if not os.path.isdir(root):
        raise FaceKDError(f"{root}: not a folder (or .lst file); pass the folder holding the .lst lists")
    lists = sorted(glob.glob(os.path.join(root, "*.lst")))
    if not lists:
        raise FaceKDError(f"{root}: no *.lst files found; write the image lists there first")
    return lists


def is_packable(entry):
    """Aligned images and unaligned ones with landmarks are packed; others are skipped."""
    return entry.aligned or entry.landmarks is not None


def prepare_image(entry, lst_path, quality=95, encoding=".jpg"):
    """Encoded 112x112 aligned image bytes of one packable entry."""
    path = resolve(entry, lst_path)
    where = f"{lst_path}:{entry.lineno}"
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise FaceKDError(f"{where}: cannot read image {path} ({exc.strerror}); fix the path in the list") from None
    rgb = decode(data, f"{where}: {path}")
    if entry.aligned:
        if rgb.shape[:2] != ALIGNED_SIZE:
            raise FaceKDError(f"{where}: {path} is marked aligned but is {rgb.shape[0]}x{rgb.shape[1]}, "
                              f"not {ALIGNED_SIZE[0]}x{ALIGNED_SIZE[1]}; set aligned=0 and give its landmarks")
        return data
    return encode(align_face(rgb, entry.landmarks, where=f"{where}: {path}"), quality, encoding)


def output_paths(folder, prefix):
    """The files packing ``<prefix>.lst`` writes in ``folder``."""
    names = [prefix + ".rec", prefix + ".idx"] + (["property"] if prefix == "train" else [])
    return [os.path.join(folder, name) for name in names]


def check_outputs(lst_path, entries, folder, prefix, overwrite):
    """Before any image work: the folder writable, no listed image among the files to be written,
    and ``overwrite`` replacing only a ``.rec``/``.idx`` this tool wrote (the folder's marker)."""
    check_writable_dir(folder, f"{lst_path}: output folder")
    outputs = output_paths(folder, prefix)
    names = {os.path.basename(p) for p in outputs}
    real = {os.path.realpath(p) for p in outputs}
    for entry in entries:  # realpath only for the few paths that could clash
        if os.path.basename(entry.path) in names and os.path.realpath(resolve(entry, lst_path)) in real:
            raise FaceKDError(f"{lst_path}:{entry.lineno}: the image {entry.path} is a file this list is packed "
                              "into; move the list or the image to another folder")
    existing = [p for p in outputs[:2] if os.path.exists(p)]
    if overwrite and existing and not written_by(folder, TOOL, prefix):
        entries_ = read_marker(folder)
        reason = (f"its {MARKER} marker does not list {TOOL} {prefix}" if entries_ else f"no {MARKER} marker")
        raise FaceKDError(f"{existing[0]} exists and was not written by {TOOL} ({reason}); "
                          "remove it yourself or put the list in another folder")


def _init_worker():
    cv2.setNumThreads(1)


def pack_list(lst_path, num_workers=1, quality=95, encoding=".jpg", overwrite=False, progress=True):
    """Pack ``x.lst`` into ``x.rec``/``x.idx`` beside it (+ ``property`` for ``train``). Returns a PackSummary."""
    if num_workers < 1:
        raise FaceKDError(f"--num-thread {num_workers}: need at least 1")
    if encoding.lower() not in ENCODINGS:
        raise FaceKDError(f"--encoding {encoding!r} is not supported; use one of {', '.join(ENCODINGS)}")
    if not 1 <= quality <= 100:
        raise FaceKDError(f"--quality {quality} is out of range; use 1..100")
    entries = read_lst(lst_path)
    kept = [e for e in entries if is_packable(e)]
    if not kept:
        raise FaceKDError(f"{lst_path}: all {len(entries)} lines are unaligned without landmarks; nothing to pack")
    tracker = IdentityTracker(lst_path)  # fail on grouping/label problems before any image work
    for entry in kept:
        tracker.add(entry.label, f"line {entry.lineno}")
        if not entry.aligned:
            check_landmarks(entry.landmarks, f"{lst_path}:{entry.lineno}: {resolve(entry, lst_path)}")
    folder = os.path.dirname(os.path.abspath(lst_path))
    prefix = os.path.basename(lst_path)[:-len(".lst")]
    check_outputs(lst_path, kept, folder, prefix, overwrite)
    work = functools.partial(prepare_image, lst_path=lst_path, quality=quality, encoding=encoding)
    pool = multiprocessing.Pool(num_workers, initializer=_init_worker) if num_workers > 1 else None
    try:
        with RecordDatasetWriter(folder, image_size=ALIGNED_SIZE, prefix=prefix, overwrite=overwrite) as writer:
            payloads = pool.imap(work, kept, chunksize=16) if pool else map(work, kept)
            for entry, payload in tqdm(zip(kept, payloads), total=len(kept), desc=os.path.basename(lst_path),
                                       unit="img", disable=not progress):
                writer.add(entry.label, payload, f"{lst_path}:{entry.lineno}")
    finally:
        if pool is not None:
            pool.terminate()
            pool.join()
    write_marker(folder, TOOL, prefix)
    aligned = sum(1 for e in kept if e.aligned)
    return PackSummary(lst_path, writer.rec_path, len(kept), len(tracker.identities), writer.num_classes,
                       aligned, len(kept) - aligned, len(entries) - len(kept))
