"""MegaFace-style identification (docs/evaluation.md section 3): a hand-computed case, the float64 reference,
folders. The devkit feature files: test_megaface_features.py."""
import cv2
import numpy as np
import pytest

from facekd.errors import FaceKDError
from facekd.evaluation import identification as I

from protocol_reference import reference_rows


def unit(degrees):
    r = np.radians(degrees)
    return np.stack([np.cos(r), np.sin(r)], axis=-1)


def test_distractor_sizes():
    assert I.distractor_sizes(1000) == [10, 100, 1000]
    assert I.distractor_sizes(1500) == [10, 100, 1000, 1500]
    assert I.distractor_sizes(5) == [5]


def test_hand_computed_growth():
    # identity A at 0, 10, 20 degrees; B at 90, 130; distractors at 45, 112, 5 degrees
    probes = unit(np.array([0, 10, 20, 90, 130]))
    labels = np.array([0, 0, 0, 1, 1])
    distractors = unit(np.array([45, 112, 5]))
    rows = I.megaface_identification(probes, labels, distractors, sizes=[1, 2, 3], far=0.1, chunk=1)
    # n=1: every probe is closer to its gallery image than to 45 deg (8/8 ordered pairs)
    # n=2: B's probes are 22 and 18 deg from 112 deg, their mates 40 deg away (6/8)
    # n=3: 5 deg beats all of A's pairs except gallery 10 / probe 20 (1/8)
    assert [r.rank1 for r in rows] == [1.0, 0.75, 0.125]
    # impostor angles: n=1 min 25 (k=0) -> 3 of 4 genuine pairs (10, 20, 10 deg) pass;
    # n=2 second smallest 22 (k=1) -> the same 3; n=3 second smallest 5 (k=1) -> none
    assert [r.tar for r in rows] == [0.75, 0.75, 0.0]
    assert [r.distractors for r in rows] == [1, 2, 3]


@pytest.mark.parametrize("seed", [0, 1])
def test_matches_brute_force(seed):
    rng = np.random.RandomState(seed)
    centres = rng.randn(4, 8)
    labels = np.repeat(np.arange(4), [4, 3, 1, 5])  # identity 2 has a single image: not a probe
    probes = centres[labels] + 0.8 * rng.randn(len(labels), 8)
    distractors = rng.randn(60, 8)
    rows = I.megaface_identification(probes, labels, distractors, sizes=[10, 35, 60], far=0.02, chunk=7)
    for row, (n, rank1, tar) in zip(rows, reference_rows(probes, labels, distractors, [10, 35, 60], 0.02)):
        assert row.distractors == n and row.rank1 == pytest.approx(rank1) and row.tar == pytest.approx(tar)
    assert rows[0].rank1 > rows[-1].rank1 or rows[0].rank1 == 1.0


def test_errors():
    with pytest.raises(FaceKDError, match="two or more images"):
        I.megaface_identification(np.eye(3), [0, 1, 2], np.eye(3))
    with pytest.raises(FaceKDError, match="--far"):
        I.megaface_identification(np.eye(3), [0, 0, 1], np.eye(3), far=2.0)
    with pytest.raises(FaceKDError, match="1..3"):
        I.megaface_identification(np.eye(3), [0, 0, 1], np.eye(3), sizes=[10])




def test_probe_identities(tmp_path):
    for name in ("alice/0.png", "alice/1.jpg", "bob/x/2.png"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(tmp_path / name), np.zeros((8, 8, 3), np.uint8))
    (tmp_path / "bob" / "3.txt").write_text("not an image")
    names, labels = I.probe_identities(str(tmp_path))
    assert names == ["alice/0.png", "alice/1.jpg", "bob/x/2.png"] and list(labels) == [0, 0, 1]
    cv2.imwrite(str(tmp_path / "loose.png"), np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(FaceKDError, match="loose.png is not inside an identity sub-folder"):
        I.probe_identities(str(tmp_path))
