"""Five-point similarity alignment: hand-computed transforms and an independent least-squares solve."""
import numpy as np
import pytest

from datahelpers import dot_centres, dots_image, rotate_scale
from facekd.data.align import ARCFACE_TEMPLATE, align_face, similarity_transform
from facekd.errors import FaceKDError

SQ3 = np.sqrt(3.0)


def test_template_maps_to_itself():
    m = similarity_transform(ARCFACE_TEMPLATE, ARCFACE_TEMPLATE)
    np.testing.assert_allclose(m, [[1, 0, 0], [0, 1, 0]], atol=1e-12)


def test_rotated_scaled_set_maps_back_to_template():
    # src = 2 * R(30 deg) @ template + (10, -5); the inverse, by hand:
    # A = 0.5 * R(-30 deg) = [[sqrt3/4, 1/4], [-1/4, sqrt3/4]],  b = -A @ (10, -5)
    src = rotate_scale(ARCFACE_TEMPLATE, 2.0, 30.0, (10.0, -5.0))
    expected = np.array([[SQ3 / 4, 0.25, 1.25 - 2.5 * SQ3],
                         [-0.25, SQ3 / 4, 2.5 + 1.25 * SQ3]])
    m = similarity_transform(src, ARCFACE_TEMPLATE)
    np.testing.assert_allclose(m, expected, atol=1e-12)
    np.testing.assert_allclose(src @ m[:, :2].T + m[:, 2], ARCFACE_TEMPLATE, atol=1e-10)


def test_noisy_points_match_linear_least_squares():
    # a similarity is linear in (a, b, tx, ty): x' = a x - b y + tx, y' = b x + a y + ty
    rng = np.random.RandomState(0)
    src = rotate_scale(ARCFACE_TEMPLATE, 1.7, -12.0, (30.0, 44.0)) + rng.randn(5, 2) * 2.0
    rows = []
    for x, y in src:
        rows += [[x, -y, 1, 0], [y, x, 0, 1]]
    (a, b, tx, ty), *_ = np.linalg.lstsq(np.array(rows), ARCFACE_TEMPLATE.reshape(-1), rcond=None)
    np.testing.assert_allclose(similarity_transform(src, ARCFACE_TEMPLATE),
                               [[a, -b, tx], [b, a, ty]], atol=1e-9)


def test_mirrored_points_give_a_rotation_not_a_reflection():
    mirrored = ARCFACE_TEMPLATE * [-1, 1] + [112, 0]
    m = similarity_transform(mirrored, ARCFACE_TEMPLATE)
    assert np.linalg.det(m[:, :2]) > 0
    np.testing.assert_allclose([m[0, 0], m[0, 1]], [m[1, 1], -m[1, 0]])


def test_warp_puts_landmarks_on_the_template():
    src = rotate_scale(ARCFACE_TEMPLATE, 2.0, 20.0, (90.0, 40.0))
    aligned = align_face(dots_image(src, (320, 300)), src)
    assert aligned.shape == (112, 112, 3) and aligned.dtype == np.uint8
    np.testing.assert_allclose(dot_centres(aligned, ARCFACE_TEMPLATE), ARCFACE_TEMPLATE, atol=0.25)


@pytest.mark.parametrize("points", [np.zeros((5, 2)), np.full((5, 2), np.nan)])
def test_degenerate_landmarks_are_refused(points):
    with pytest.raises(FaceKDError):
        similarity_transform(points, ARCFACE_TEMPLATE)
