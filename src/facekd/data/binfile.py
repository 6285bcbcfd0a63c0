"""Verification-pair files ``<target>.bin``: a pickle of ``(bins, issame_list)``.

``bins`` holds 2P encoded images, ``issame_list`` P booleans; pair i is
``bins[2i]``, ``bins[2i+1]``. Files pickled under Python 2 are read with
``encoding='bytes'``.
"""
import os
import pickle

import numpy as np

from ..errors import FaceKDError
from ..atomic import atomic_path


def _as_bytes(item, path, i):
    if isinstance(item, (bytes, bytearray, memoryview)):
        return bytes(item)
    if isinstance(item, np.ndarray) and item.dtype == np.uint8 and item.ndim == 1:
        return item.tobytes()
    raise FaceKDError(f"{path}: bins[{i}] is a {type(item).__name__}, expected encoded image bytes")


def _as_bool(item, path, i):
    if isinstance(item, (bool, np.bool_)) or (isinstance(item, (int, np.integer)) and item in (0, 1)):
        return bool(item)
    raise FaceKDError(f"{path}: issame_list[{i}] is {item!r}, expected a boolean")


def _validate(obj, path):
    if not isinstance(obj, (tuple, list)) or len(obj) != 2:
        raise FaceKDError(f"{path}: expected a pickled (bins, issame_list) pair, got {type(obj).__name__}")
    bins, issame = obj
    if not isinstance(bins, (list, tuple)) or not isinstance(issame, (list, tuple, np.ndarray)):
        raise FaceKDError(f"{path}: expected bins as a list of bytes and issame_list as a list of bools, "
                          f"got {type(bins).__name__} and {type(issame).__name__}")
    if len(issame) == 0 or len(bins) != 2 * len(issame):
        raise FaceKDError(f"{path}: {len(bins)} images for {len(issame)} pairs; expected "
                          "len(bins) == 2 * len(issame_list) > 0")
    return ([_as_bytes(b, path, i) for i, b in enumerate(bins)],
            [_as_bool(s, path, i) for i, s in enumerate(issame)])


def save_bin(path, bins, issame):
    """Write ``(bins, issame)`` with the highest pickle protocol, atomically."""
    bins, issame = _validate((list(bins), list(issame)), path)
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        pickle.dump((bins, issame), f, protocol=pickle.HIGHEST_PROTOCOL)


def load_bin(path):
    """(bins: list of bytes, issame: list of bool) of a ``.bin`` file (Python 3 or Python 2 pickle)."""
    if not os.path.isfile(path):
        raise FaceKDError(f"{path}: verification file not found; check the dataset folder and target name")
    with open(path, "rb") as f:
        data = f.read()
    try:
        try:
            obj = pickle.loads(data)
        except UnicodeDecodeError:
            obj = pickle.loads(data, encoding="bytes")
    except Exception as exc:
        raise FaceKDError(f"{path}: not a readable pickle ({type(exc).__name__}: {exc}); "
                          "regenerate the .bin file") from None
    return _validate(obj, path)
