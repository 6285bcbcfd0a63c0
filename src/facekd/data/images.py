"""Encoded image bytes <-> RGB uint8 arrays (OpenCV underneath, RGB outside)."""
import cv2
import numpy as np

from ..errors import FaceKDError

ENCODINGS = (".jpg", ".jpeg", ".png")


def decode(payload, source="image", size=None):
    """RGB uint8 (H, W, 3) of encoded JPEG/PNG bytes; ``source`` names the bytes in errors.

    ``size`` = (H, W), when given, is the size a dataset's ``property`` promises: another
    size is an error.
    """
    buf = np.frombuffer(bytes(payload), dtype=np.uint8)
    bgr = cv2.imdecode(buf, cv2.IMREAD_COLOR) if buf.size else None
    if bgr is None:
        raise FaceKDError(f"{source}: cannot decode {buf.size} bytes as an image (expected JPEG or PNG)")
    if size is not None and bgr.shape[:2] != tuple(size):
        raise FaceKDError(f"{source}: image is {bgr.shape[0]}x{bgr.shape[1]}, the property file says "
                          f"{size[0]}x{size[1]}; rebuild the dataset with aligned faces of one size "
                          "or fix the property file")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def encode(rgb, quality=95, encoding=".jpg"):
    """JPEG (``quality`` 1..100) or PNG bytes of an RGB uint8 (H, W, 3) image."""
    encoding = encoding.lower()
    if encoding not in ENCODINGS:
        raise FaceKDError(f"--encoding {encoding!r} is not supported; use one of {', '.join(ENCODINGS)}")
    rgb = np.asarray(rgb)
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise FaceKDError(f"encode expects an RGB uint8 (H, W, 3) image, got {rgb.dtype} {rgb.shape}")
    if encoding == ".png":
        params = [cv2.IMWRITE_PNG_COMPRESSION, 3]
    else:
        if not 1 <= int(quality) <= 100:
            raise FaceKDError(f"--quality {quality} is out of range; use 1..100")
        params = [cv2.IMWRITE_JPEG_QUALITY, int(quality)]
    ok, buf = cv2.imencode(encoding, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), params)
    if not ok:
        raise FaceKDError(f"OpenCV failed to encode a {rgb.shape} image as {encoding}")
    return buf.tobytes()
