"""Does an exported model compute what MXNet computes? Cosine distances of embeddings, and the gate.

The distance of one image is ``1 - cos(e_mxnet, e_other)`` of the raw embeddings, in float64:
the quantity verification and the inference commands use to compare faces. Float32 runtimes
differ by rounding (about 1e-7 here); a wrong conversion (a slope on the wrong axis, a
gamma that MXNet ignores) moves it by 1e-3 or more. The float export must stay within
:data:`MAX_COSINE_DISTANCE` on every image.
"""
from dataclasses import dataclass

import numpy as np

from ..errors import FaceKDError
from ..vectors import normalize_rows

MAX_COSINE_DISTANCE = 1e-5


@dataclass(frozen=True)
class Parity:
    """Cosine distances of one model's embeddings to MXNet's over ``images`` images."""
    max: float
    mean: float
    images: int

    def as_dict(self):
        return {"max_cosine_distance": self.max, "mean_cosine_distance": self.mean, "images": self.images}


def cosine_distances(reference, other):
    """``1 - cos`` of each row pair, float64 (N,)."""
    reference, other = np.asarray(reference), np.asarray(other)
    if reference.shape != other.shape or reference.ndim != 2:
        raise FaceKDError(f"embeddings of shapes {reference.shape} and {other.shape} cannot be compared "
                          "row by row; the models give different embedding sizes")
    return 1.0 - np.sum(normalize_rows(reference) * normalize_rows(other), axis=1)


def measure(reference, other):
    """The :class:`Parity` of ``other`` against ``reference``; a non-finite embedding counts as distance inf."""
    distances = cosine_distances(reference, other)
    bad = ~(np.isfinite(np.asarray(other, dtype=np.float64)).all(axis=1)
            & np.isfinite(np.asarray(reference, dtype=np.float64)).all(axis=1))
    distances[bad] = np.inf
    return Parity(float(distances.max()), float(distances.mean()), int(len(distances)))


def check(parity, what, limit=MAX_COSINE_DISTANCE):
    """Raise when ``parity.max`` exceeds ``limit``."""
    if not parity.max <= limit:
        raise FaceKDError(f"parity check failed: {what} is {parity.max:.3g} from MXNet in cosine distance "
                          f"(max over {parity.images} images, limit {limit:g}); the export does not compute "
                          "what the checkpoint computes, nothing was written")
    return parity
