"""Five-point face alignment onto the 112x112 ArcFace template (similarity transform)."""
import cv2
import numpy as np

from ..errors import FaceKDError

# left eye, right eye, nose tip, left mouth corner, right mouth corner (x, y) in a 112x112 crop
ARCFACE_TEMPLATE = np.array([[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366],
                             [41.5493, 92.3655], [70.7299, 92.2041]], dtype=np.float64)
ALIGNED_SIZE = (112, 112)  # (height, width)

# A face's five landmarks spread in two directions: the template's spread (RMS distance from the
# centroid along its two principal axes) is 18.2 and 14.5 px. Points whose larger spread is under
# MIN_SPREAD_PX are all at one spot; a smaller/larger ratio under MIN_AXIS_RATIO puts them on one
# line (a plain yaw by 85 degrees still gives 0.07). Either warp turns the image into garbage.
MIN_SPREAD_PX = 1.0
MIN_AXIS_RATIO = 0.05


def format_landmarks(landmarks):
    """The landmarks as ``(x,y)`` pairs on one line, for error messages."""
    pts = np.asarray(landmarks, dtype=np.float64).reshape(-1, 2)
    return " ".join(f"({x:g},{y:g})" for x, y in pts)


def check_landmarks(landmarks, where="landmarks"):
    """The 5 landmarks as float64 (5, 2), refused (one line naming ``where`` and the points) when a
    similarity warp of them cannot give a face: NaN/inf, all at one point, or on one line."""
    pts = np.asarray(landmarks, dtype=np.float64)
    if pts.size != 10:
        raise FaceKDError(f"{where}: expected 5 landmarks (10 numbers x1..x5 y1..y5), got {pts.size} numbers")
    pts = pts.reshape(5, 2)
    if not np.isfinite(pts).all():
        raise FaceKDError(f"{where}: landmarks {format_landmarks(pts)} contain NaN or infinity; "
                          "fix them in the list (or drop the landmarks to skip the image)")
    spread = np.linalg.svd((pts - pts.mean(axis=0)) / np.sqrt(len(pts)), compute_uv=False)
    if spread[0] < MIN_SPREAD_PX:
        raise FaceKDError(f"{where}: landmarks {format_landmarks(pts)} are all at one point (spread "
                          f"{spread[0]:.3g} px, a face needs eyes, nose and mouth apart); cannot align, "
                          "fix them in the list (or drop the landmarks to skip the image)")
    if spread[1] < MIN_AXIS_RATIO * spread[0]:
        raise FaceKDError(f"{where}: landmarks {format_landmarks(pts)} are collinear (spread {spread[1]:.3g} px "
                          f"across a line of {spread[0]:.3g} px); the warp would be degenerate, "
                          "fix them in the list (or drop the landmarks to skip the image)")
    return pts


def similarity_transform(src, dst):
    """Least-squares similarity (rotation, uniform scale, translation) mapping src onto dst.

    Umeyama (1991) closed form; src and dst are (n, 2) point sets. Returns the
    2x3 float64 matrix ``[s R | t]`` so that ``dst ~ s R src + t``. A rank-deficient
    system (all src points at one place) or a scale that is not a positive finite
    number (dst points all at one place, overflow) is refused.
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
    if var_src <= 1e-12 * max(1.0, float((mu_src ** 2).sum())):
        raise FaceKDError(f"landmarks {format_landmarks(src)} are all at one point; cannot align")
    cov = dst_c.T @ src_c / len(src)
    u, sing, vt = np.linalg.svd(cov)
    sign = np.ones(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        sign[-1] = -1.0
    rot = u @ np.diag(sign) @ vt
    scale = (sing * sign).sum() / var_src
    if not (np.isfinite(scale) and scale > 1e-12):
        raise FaceKDError(f"the similarity transform of landmarks {format_landmarks(src)} is degenerate "
                          f"(scale {scale:g}); cannot align")
    trans = mu_dst - scale * rot @ mu_src
    matrix = np.hstack([scale * rot, trans[:, None]])
    if not np.isfinite(matrix).all():
        raise FaceKDError(f"the similarity transform of landmarks {format_landmarks(src)} is not finite; cannot align")
    return matrix


def align_face(rgb, landmarks, where=None):
    """The 112x112 aligned crop (uint8 RGB) of an image given its 5 landmarks ((5, 2) x, y rows).

    With ``where`` (e.g. ``list.lst:7: image.jpg``), degenerate landmarks are refused first
    (:func:`check_landmarks`), the error naming ``where``.
    """
    if where is not None:
        landmarks = check_landmarks(landmarks, where)
    landmarks = np.asarray(landmarks, dtype=np.float64).reshape(5, 2)
    matrix = similarity_transform(landmarks, ARCFACE_TEMPLATE)
    height, width = ALIGNED_SIZE
    return cv2.warpAffine(np.ascontiguousarray(rgb), matrix, (width, height), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=0)
