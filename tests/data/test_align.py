"""Five-point similarity alignment: hand-computed transforms and an independent least-squares solve."""
import numpy as np
import pytest

from datahelpers import dot_centres, dots_image, rotate_scale
from facekd.data.align import ARCFACE_TEMPLATE, align_face, check_landmarks, similarity_transform
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


# ----------------------------------------------------------------------------- degenerate landmarks
COLLINEAR = np.array([[10.0, 20.0], [20.0, 20.0], [30.0, 20.0], [40.0, 20.0], [50.0, 20.0]])  # one row
DIAGONAL = np.array([[0.0, 0.0], [1.0, 1.0], [2.0, 2.0], [3.0, 3.0], [4.0, 4.0]]) * 10 + 5
IDENTICAL = np.full((5, 2), 60.0)


@pytest.mark.parametrize("points, what", [(COLLINEAR, "are collinear"), (DIAGONAL, "are collinear"),
                                          (IDENTICAL, "are all at one point"),
                                          (IDENTICAL + np.arange(10).reshape(5, 2) * 1e-3, "are all at one point")])
def test_check_landmarks_refuses_degenerate_sets(points, what):
    where = "train.lst:7: /data/raw/c1.jpg"
    with pytest.raises(FaceKDError) as err:
        check_landmarks(points, where)
    msg = str(err.value)
    assert msg.startswith(f"{where}: landmarks ({points[0, 0]:g},{points[0, 1]:g}) ") and what in msg
    assert "\n" not in msg
    with pytest.raises(FaceKDError, match=what):  # align_face with a location checks the same
        align_face(np.zeros((200, 200, 3), np.uint8), points, where=where)


def test_identical_landmarks_refused_by_the_solver_itself():
    with pytest.raises(FaceKDError, match=r"landmarks \(60,60\) \(60,60\) .* are all at one point"):
        similarity_transform(IDENTICAL, ARCFACE_TEMPLATE)


def test_degenerate_target_gives_no_transform():
    # src fine, dst all one point: the least-squares scale is 0, the warp would be a single pixel
    with pytest.raises(FaceKDError, match=r"degenerate \(scale 0\)"):
        similarity_transform(ARCFACE_TEMPLATE, np.full((5, 2), 3.0))


@pytest.mark.parametrize("yaw", [0.0, 60.0, 80.0])
def test_real_faces_pass_the_check(yaw):
    # the template seen under yaw (x squeezed by cos(yaw)), rotated, scaled and shifted: a face, not degenerate
    squeezed = (ARCFACE_TEMPLATE - ARCFACE_TEMPLATE.mean(0)) * [np.cos(np.deg2rad(yaw)), 1.0]
    pts = rotate_scale(squeezed, 0.5, 40.0, (100.0, 100.0))
    np.testing.assert_array_equal(check_landmarks(pts, "x"), pts)


def test_valid_set_aligns_to_hand_computed_transform_through_the_check():
    # src = 0.5 * R(90 deg) @ template + (100, 20); the inverse by hand: 2 * R(-90 deg) = [[0, 2], [-2, 0]],
    # b = -A @ (100, 20) = (-40, 200)
    src = rotate_scale(ARCFACE_TEMPLATE, 0.5, 90.0, (100.0, 20.0))
    check_landmarks(src, "x")
    np.testing.assert_allclose(similarity_transform(src, ARCFACE_TEMPLATE), [[0, 2, -40], [-2, 0, 200]], atol=1e-9)
