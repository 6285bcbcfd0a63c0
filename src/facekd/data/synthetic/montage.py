"""A PNG grid of images with a label per row, so a person can see what the network sees."""
import os
from collections import namedtuple

import cv2
import numpy as np

from ...errors import FaceKDError
from ...atomic import atomic_path

MontageRow = namedtuple("MontageRow", "label images marks")
"""One row: a text label, RGB uint8 images, and per image an RGB strip colour or None."""

SAME, DIFFERENT = (40, 190, 60), (220, 40, 40)

_GAP = 2
_LABEL_W = 64
_STRIP = 4


def montage(rows, tile=112):
    """RGB uint8 grid of ``rows`` (list of :class:`MontageRow`), tiles resized to ``tile``."""
    cols = max(len(r.images) for r in rows)
    height = len(rows) * (tile + _STRIP + _GAP) + _GAP
    width = _LABEL_W + cols * (tile + _GAP) + _GAP
    grid = np.full((height, width, 3), 255, np.uint8)
    for r, row in enumerate(rows):
        y = _GAP + r * (tile + _STRIP + _GAP)
        cv2.putText(grid, str(row.label), (4, y + tile // 2 + 4), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1,
                    cv2.LINE_AA)
        for c, img in enumerate(row.images):
            x = _LABEL_W + _GAP + c * (tile + _GAP)
            if img.shape[:2] != (tile, tile):
                img = cv2.resize(img, (tile, tile), interpolation=cv2.INTER_AREA)
            grid[y:y + tile, x:x + tile] = img
            mark = row.marks[c] if row.marks else None
            if mark is not None:
                grid[y + tile:y + tile + _STRIP, x:x + tile] = mark
    return grid


def check_png_path(path):
    """Refuse a montage path that is not a .png in an existing or creatable folder."""
    if not str(path).lower().endswith(".png"):
        raise FaceKDError(f"--montage {path}: the montage is a PNG; give a path ending in .png")
    folder = os.path.dirname(os.path.abspath(path))
    if os.path.exists(folder) and not os.path.isdir(folder):
        raise FaceKDError(f"--montage {path}: {folder} is not a folder")
    if os.path.isdir(path):
        raise FaceKDError(f"--montage {path} is a folder; give a file name ending in .png")


def save_png(path, rgb):
    """Write RGB uint8 ``rgb`` as a PNG at ``path`` atomically."""
    ok, buf = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    if not ok:
        raise FaceKDError(f"--montage {path}: OpenCV could not encode the montage")
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(buf.tobytes())
