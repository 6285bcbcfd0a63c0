"""Pack ``.lst`` image lists into insightface RecordIO datasets (the work behind face2rec2.py).

Worker processes read, align and encode images; the main process writes the
records in list order. Aligned images go in byte for byte; unaligned ones with
landmarks are warped onto the ArcFace template and re-encoded; unaligned ones
without landmarks are skipped and counted.
"""
import functools
import glob
import multiprocessing
import os
from dataclasses import dataclass

import cv2
from tqdm import tqdm

from ..errors import FaceKDError
from .align import ALIGNED_SIZE, align_face
from .images import ENCODINGS, decode, encode
from .lst import read_lst, resolve
from .recordio import IdentityTracker, RecordDatasetWriter


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
    return encode(align_face(rgb, entry.landmarks), quality, encoding)


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
    folder = os.path.dirname(os.path.abspath(lst_path))
    prefix = os.path.basename(lst_path)[:-len(".lst")]
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
    aligned = sum(1 for e in kept if e.aligned)
    return PackSummary(lst_path, writer.rec_path, len(kept), len(tracker.identities), writer.num_classes,
                       aligned, len(kept) - aligned, len(entries) - len(kept))
