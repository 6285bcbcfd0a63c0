"""MegaFace-style identification: feature files, a hand-computed case, a brute-force reference, folders."""
import os
import struct

import cv2
import numpy as np
import pytest

from facekd.errors import FaceKDError
from facekd.evaluation import identification as I

from evalhelpers import SIZE, load_script


def unit(degrees):
    r = np.radians(degrees)
    return np.stack([np.cos(r), np.sin(r)], axis=-1)


def test_feature_file_layout(tmp_path):
    vec = np.arange(5, dtype=np.float32) - 1.5
    path = str(tmp_path / "img.jpg_facekd.bin")
    I.write_feature(path, vec)
    data = open(path, "rb").read()
    assert struct.unpack("<4i", data[:16]) == (5, 1, 4, 5)
    assert struct.unpack("<5f", data[16:]) == tuple(vec.tolist())
    np.testing.assert_array_equal(I.read_feature(path), vec)
    with open(path, "r+b") as f:
        f.write(struct.pack("<i", 6))
    with pytest.raises(FaceKDError, match="does not describe"):
        I.read_feature(path)


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


def reference(probes, labels, distractors, sizes, far):
    p = probes / np.linalg.norm(probes, axis=1, keepdims=True)
    d = distractors / np.linalg.norm(distractors, axis=1, keepdims=True)
    out = []
    for n in sizes:
        hits = total = 0
        genuine = []
        for g in range(len(p)):
            for q in range(len(p)):
                if g != q and labels[g] == labels[q]:
                    total += 1
                    hits += p[q] @ p[g] > max(p[q] @ d[j] for j in range(n))
                    genuine.append(p[q] @ p[g])
        used = [q for q in range(len(p)) if (labels == labels[q]).sum() > 1]
        impostor = sorted((p[q] @ d[j] for q in used for j in range(n)), reverse=True)
        k = int(np.floor(far * len(impostor) + 1e-9))
        out.append((hits / total, np.mean(np.array(genuine) > impostor[k])))
    return out


@pytest.mark.parametrize("seed", [0, 1])
def test_matches_brute_force(seed):
    rng = np.random.RandomState(seed)
    centres = rng.randn(4, 8)
    labels = np.repeat(np.arange(4), [4, 3, 1, 5])  # identity 2 has a single image: not a probe
    probes = centres[labels] + 0.8 * rng.randn(len(labels), 8)
    distractors = rng.randn(60, 8)
    rows = I.megaface_identification(probes, labels, distractors, sizes=[10, 35, 60], far=0.02, chunk=7)
    for row, (rank1, tar) in zip(rows, reference(probes, labels, distractors, [10, 35, 60], 0.02)):
        assert row.rank1 == pytest.approx(rank1) and row.tar == pytest.approx(tar)
    assert rows[0].rank1 > rows[-1].rank1 or rows[0].rank1 == 1.0


def test_errors():
    with pytest.raises(FaceKDError, match="two or more images"):
        I.megaface_identification(np.eye(3), [0, 1, 2], np.eye(3))
    with pytest.raises(FaceKDError, match="--far"):
        I.megaface_identification(np.eye(3), [0, 0, 1], np.eye(3), far=2.0)
    with pytest.raises(FaceKDError, match="1..3"):
        I.megaface_identification(np.eye(3), [0, 0, 1], np.eye(3), sizes=[10])


def test_folders_features_and_command(tmp_path, checkpoint, make_embedder, capsys):
    rng = np.random.RandomState(0)
    probe, distract = tmp_path / "probe", tmp_path / "distractors"
    images = {}
    for ident, count in (("alice", 3), ("bob", 2)):
        (probe / ident).mkdir(parents=True)
        for i in range(count):
            images[f"{ident}/{i}.png"] = rng.randint(0, 256, size=SIZE + (3,)).astype(np.uint8)
    (distract / "sub").mkdir(parents=True)
    for i in range(12):
        images[f"sub/{i:02d}.png"] = rng.randint(0, 256, size=SIZE + (3,)).astype(np.uint8)
    for name, rgb in images.items():
        root = probe if name.split("/")[0] in ("alice", "bob") else distract
        cv2.imwrite(str(root / name), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    prefix, epoch = checkpoint
    feats = tmp_path / "feats"
    assert load_script("identification").main([
        "--model", f"{prefix},{epoch}", "--probe", str(probe), "--distractors", str(distract),
        "--batch-size", "4", "--image-size", "8,8", "--sizes", "10,12", "--feature-out", str(feats),
        "--algo", "tiny"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split("\t")[1] for line in lines] == ["distractors 10", "distractors 12"]
    single = make_embedder(batch_size=1)
    ref = {n: (single.embed(rgb[None]) + single.embed(rgb[None, :, ::-1]))[0] for n, rgb in images.items()}
    np.testing.assert_allclose(I.read_feature(str(feats / "probe" / "alice" / "1.png_tiny.bin")),
                               ref["alice/1.png"], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(I.read_feature(str(feats / "distractors" / "sub" / "07.png_tiny.bin")),
                               ref["sub/07.png"], rtol=1e-5, atol=1e-5)
    names = sorted(n for n in images if not n.startswith("sub"))
    labels = [0 if n.startswith("alice") else 1 for n in names]
    dnames = sorted(n for n in images if n.startswith("sub"))
    expected = I.megaface_identification(np.array([ref[n] for n in names]), labels,
                                         np.array([ref[n] for n in dnames]), sizes=[10, 12])
    assert lines[1].endswith(f"rank-1: {100 * expected[1].rank1:.2f}\tTAR@FAR=1e-06: {100 * expected[1].tar:.2f}")
    os.remove(probe / "bob" / "1.png")
    cv2.imwrite(str(probe / "loose.png"), np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(FaceKDError, match="loose.png is not inside an identity sub-folder"):
        I.probe_identities(str(probe))
