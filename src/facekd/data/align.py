"""Five-point face alignment onto the 112x112 ArcFace template (similarity transform)."""
import cv2
import numpy as np

from ..errors import FaceKDError

# left eye, right eye, nose tip, left mouth corner, right mouth corner (x, y) in a 112x112 crop
ARCFACE_TEMPLATE = np.array([[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366],
                             [41.5493, 92.3655], [70.7299, 92.2041]], dtype=np.float64)
ALIGNED_SIZE = (112, 112)  # (height, width)


def similarity_transform(src, dst):
    """Least-squares similarity (rotation, uniform scale, translation) mapping src onto dst.

    Umeyama (1991) closed form; src and dst are (n, 2) point sets. Returns the
    2x3 float64 matrix ``[s R | t]`` so that ``dst ~ s R src + t``.
    """
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    if src.shape != dst.shape or src.ndim != 2 or src.shape[1] != 2 or src.shape[0] < 2:
        raise FaceKDError(f"similarity_transform needs two (n, 2) point sets with n >= 2, "
                          f"got {src.shape} and {dst.shape}")
    if not (np.isfinite(src).all() and np.isfinite(dst).all()):
        raise FaceKDError("landmarks contain NaN or infinity")
    mu_src, mu_dst = src.mean(axis=0), dst.mean(axis=0)
    src_c, dst_c = src - mu_src, dst - mu_dst
    var_src = (src_c ** 2).sum() / len(src)
    if var_src <= 1e-12:
        raise FaceKDError("landmarks are all at one point; cannot align")
    cov = dst_c.T @ src_c / len(src)
    u, sing, vt = np.linalg.svd(cov)
    sign = np.ones(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        sign[-1] = -1.0
    rot = u @ np.diag(sign) @ vt
    scale = (sing * sign).sum() / var_src
    trans = mu_dst - scale * rot @ mu_src
    return np.hstack([scale * rot, trans[:, None]])


def align_face(rgb, landmarks):
    """The 112x112 aligned crop (uint8 RGB) of an image given its 5 landmarks ((5, 2) x, y rows)."""
    landmarks = np.asarray(landmarks, dtype=np.float64).reshape(5, 2)
    matrix = similarity_transform(landmarks, ARCFACE_TEMPLATE)
    height, width = ALIGNED_SIZE
    return cv2.warpAffine(np.ascontiguousarray(rgb), matrix, (width, height), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=0)
