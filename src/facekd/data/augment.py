"""Training-time image augmentation (insightface's FaceImageIter): mirror, colour jitter, cutoff.

All functions take an RGB image in HWC layout and a ``numpy.random.Generator``
(one per image, so decoding threads never share random state). The order is
insightface's: mirror, then (JPEG re-compression and) colour jitter, then cutoff.

Departures from insightface, on purpose:

* colour jitter clips the result to 0..255 (insightface let values overflow),
  so the network always sees raw 0..255 pixels;
* ``cutoff=True`` means a square of half the image width (insightface computed
  ``True // 2 == 0`` and so never cut anything); an integer gives the side.
"""
import numpy as np

from ..errors import FaceKDError
from .images import decode, encode

LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)  # RGB -> grey weights
COLOR_STRENGTH = 0.125  # insightface's colour jitter range: factors in [1 - x, 1 + x]
CUTOFF_VALUE = 127.5


def mirror(img):
    """Horizontal flip of an HWC image (a view)."""
    return img[:, ::-1]


def brightness(img, x, rng):
    """Scale all channels by 1 + U(-x, x)."""
    return img * np.float32(1.0 + rng.uniform(-x, x))


def contrast(img, x, rng):
    """Blend with the image's mean grey level: alpha * img + (1 - alpha) * mean(luma)."""
    alpha = np.float32(1.0 + rng.uniform(-x, x))
    mean_grey = np.float32(np.mean(img @ LUMA))
    return img * alpha + (1.0 - alpha) * mean_grey


def saturation(img, x, rng):
    """Blend each pixel with its own grey level: alpha * img + (1 - alpha) * luma."""
    alpha = np.float32(1.0 + rng.uniform(-x, x))
    grey = (img @ LUMA)[..., None]
    return img * alpha + (1.0 - alpha) * grey


def color_jitter(img, rng, x=COLOR_STRENGTH):
    """Brightness, contrast and saturation in random order; float32 result clipped to 0..255."""
    out = np.asarray(img, dtype=np.float32)
    for i in rng.permutation(3):
        out = (brightness, contrast, saturation)[i](out, x, rng)
    return np.clip(out, 0.0, 255.0, out=out)


def jpeg_compress(img, rng):
    """Re-encode a uint8 image as a low-quality JPEG (quality 4..20), as insightface's compress_aug."""
    return decode(encode(np.ascontiguousarray(img), quality=int(rng.integers(4, 21))), "re-compressed image")


def cutoff(img, size, rng):
    """Set a square of side ``size`` around a random centre (clipped at the borders) to 127.5, in place."""
    h, w = img.shape[:2]
    cy, cx = int(rng.integers(0, h)), int(rng.integers(0, w))
    half = size // 2
    img[max(0, cy - half):min(h, cy - half + size), max(0, cx - half):min(w, cx - half + size)] = CUTOFF_VALUE
    return img


def cutoff_size(value, width):
    """Side of the cutoff square for the ``cutoff`` option: False/0 -> 0, True -> width // 2, n -> n."""
    if isinstance(value, bool) or value in (0, 1):
        return width // 2 if value else 0
    try:
        size = int(value)
    except (TypeError, ValueError):
        size = -1
    if size < 0 or size != value:
        raise FaceKDError(f"data_cutoff {value!r} is invalid; use False, True or the square's side in pixels")
    return size


class Augmenter:
    """One configured augmentation pipeline: ``augmenter(rgb_uint8, rng) -> float32 HWC 0..255``.

    ``rand_mirror`` flips half the images; ``color_jitter`` > 0 applies colour
    jitter, > 1 also re-compresses half the images as JPEG first; ``cutoff``
    (False, True or a side in pixels) greys a random square in half the images.
    """

    def __init__(self, rand_mirror=True, color_jitter=0, cutoff=False, width=112):
        if color_jitter < 0:
            raise FaceKDError(f"data_color {color_jitter} is invalid; "
                              "use 0 (off), 1 (colour) or 2 (colour + JPEG)")
        self.rand_mirror = bool(rand_mirror)
        self.color_jitter = color_jitter
        self.cutoff = cutoff_size(cutoff, width)

    @property
    def is_identity(self):
        return not (self.rand_mirror or self.color_jitter or self.cutoff)

    def __call__(self, img, rng):
        if self.rand_mirror and rng.integers(0, 2):
            img = mirror(img)
        if self.color_jitter > 1 and rng.integers(0, 2):
            img = jpeg_compress(img, rng)
        if self.color_jitter > 0:
            out = color_jitter(img, rng)
        else:
            out = np.array(img, dtype=np.float32)
        if self.cutoff and rng.integers(0, 2):
            cutoff(out, self.cutoff, rng)
        return out
