"""The MegaFace devkit's feature file: one OpenCV matrix in binary.

The devkit (its ``matio.py``) and insightface's ``gen_megaface.py`` (``write_bin``) agree on
this layout: four int32 -- rows, cols, the row stride in bytes (cols times the element
size), the OpenCV type code (5 = CV_32F, 6 = CV_64F) -- then rows x stride bytes of values,
row after row. Both write the machine's byte order; this module writes and reads
little-endian, the order of every x86 and ARM machine the devkit runs on. A feature vector
of d values is a d x 1 matrix: header (d, 1, 4, 5), then d float32.
"""
import os

import numpy as np

from ..atomic import atomic_path
from ..errors import FaceKDError

HEADER_BYTES = 16
CV_32F = 5
CV_64F = 6
CV_DTYPES = {CV_32F: np.dtype("<f4"), CV_64F: np.dtype("<f8")}


def vector_bytes(vector):
    """The bytes of a float32 ``d x 1`` matrix file holding ``vector``."""
    vec = np.asarray(vector, dtype="<f4").reshape(-1)
    header = np.array([vec.size, 1, vec.itemsize, CV_32F], dtype="<i4")
    return header.tobytes() + vec.tobytes()


def write_vector(path, vector):
    """Write ``vector`` as a ``d x 1`` float32 matrix file, atomically."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(vector_bytes(vector))


def read_matrix(path):
    """The (rows, cols) array of a matrix file (float32 or float64), its header checked against its size."""
    size = os.path.getsize(path)
    if size < HEADER_BYTES:
        raise FaceKDError(f"{path}: {size} bytes, too short for the 16-byte header of a devkit feature file")
    with open(path, "rb") as f:
        header = np.frombuffer(f.read(HEADER_BYTES), dtype="<i4")
        rows, cols, stride, kind = (int(v) for v in header)
        dtype = CV_DTYPES.get(kind)
        if dtype is None or rows < 0 or cols < 0 or stride != cols * dtype.itemsize \
                or size != HEADER_BYTES + rows * stride:
            raise FaceKDError(f"{path}: header rows={rows} cols={cols} stride={stride} type={kind} does not "
                              f"describe a float32 (type 5) or float64 (type 6) matrix of the file's "
                              f"{size - HEADER_BYTES} data bytes; the file is damaged or not a feature file")
        return np.frombuffer(f.read(rows * stride), dtype=dtype).reshape(rows, cols)
