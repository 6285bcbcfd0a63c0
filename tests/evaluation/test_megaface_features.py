"""MegaFace devkit feature files: read back with an independent reader of the devkit's layout and
compared with a float64 NumPy computation from the networks' raw outputs (docs/evaluation.md, section 2)."""
import os
import struct
import subprocess
import sys

import cv2
import mxnet as mx
import numpy as np
import pytest

from facekd.errors import FaceKDError
from facekd.evaluation import devkit_matrix

from evalhelpers import ROOT, SIZE, load_script, plain_flip_pair, tiny_params, tiny_symbol
from protocol_reference import reference_rows


def read_devkit_file(path):
    """The devkit's matrix file as docs/evaluation.md describes it: int32 rows, cols, stride (bytes per
    row), type (5 = float32), then rows x stride bytes, row after row."""
    with open(path, "rb") as f:
        data = f.read()
    rows, cols, stride, kind = struct.unpack("<4i", data[:16])
    assert kind == 5 and stride == 4 * cols and len(data) == 16 + rows * stride
    return np.array(struct.unpack(f"<{rows * cols}f", data[16:]), dtype=np.float64).reshape(rows, cols)


def reference_features(params, images):
    """float64: per network normalise(original + flip) of its raw fc1 outputs, concatenated, normalised."""
    parts = []
    for arg, aux in params:
        orig, flip = plain_flip_pair(arg, aux, images)
        total = orig.astype(np.float64) + flip.astype(np.float64)
        parts.append(total / np.sqrt((total ** 2).sum(axis=1, keepdims=True)))
    joined = np.concatenate(parts, axis=1)
    return joined / np.sqrt((joined ** 2).sum(axis=1, keepdims=True))


@pytest.fixture
def folders(tmp_path):
    """Probe (<identity>/<image>) and distractor folders of random 8x8 PNGs; returns their images."""
    rng = np.random.RandomState(3)
    probe, distract = tmp_path / "probe", tmp_path / "distractors"
    images = {}
    for ident, count in (("alice", 3), ("bob", 2), ("carol", 2)):
        for i in range(count):
            images[("probe", f"{ident}/{i}.png")] = rng.randint(0, 256, size=SIZE + (3,)).astype(np.uint8)
    for i in range(14):
        images[("distractors", f"{i % 2}/{i // 2}/{i:02d}.jpg.png")] = \
            rng.randint(0, 256, size=SIZE + (3,)).astype(np.uint8)
    for (root, name), rgb in images.items():
        path = tmp_path / root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    return probe, distract, images


def save_models(tmp_path, seeds):
    params, flags = [], []
    for seed in seeds:
        prefix = str(tmp_path / "models" / f"net{seed}" / "model")
        os.makedirs(os.path.dirname(prefix))
        arg, aux = tiny_params(seed=seed)
        mx.model.save_checkpoint(prefix, 1, tiny_symbol(), arg, aux)
        params.append((arg, aux))
        flags += ["--model", f"{prefix},1"]
    return params, flags


def run(flags, probe, distract, *extra):
    return load_script("identification").main(flags + ["--probe", str(probe), "--distractors", str(distract),
                                                        "--batch-size", "4", "--image-size", "8,8", *extra])


@pytest.mark.parametrize("seeds", [(0,), (0, 1)])
def test_files_match_float64_reference(tmp_path, folders, capsys, seeds):
    probe, distract, images = folders
    params, flags = save_models(tmp_path, seeds)
    feats = tmp_path / "feats"
    assert run(flags, probe, distract, "--feature-out", str(feats), "--algo", "tiny", "--sizes", "5,14") == 0
    keys = sorted(images)
    expected = dict(zip(keys, reference_features(params, np.stack([images[k] for k in keys]))))
    written = sorted(os.path.relpath(os.path.join(r, f), feats) for r, _, fs in os.walk(feats) for f in fs)
    assert written == sorted([".facekd-output"] + [os.path.join(root, f"{name}_tiny.bin") for root, name in keys])
    got = {}
    for root, name in keys:
        matrix = read_devkit_file(feats / root / f"{name}_tiny.bin")
        assert matrix.shape == (6 * len(seeds), 1)
        got[(root, name)] = matrix[:, 0]
        np.testing.assert_allclose(got[(root, name)], expected[(root, name)], rtol=1e-5, atol=2e-6)
        assert abs(np.linalg.norm(got[(root, name)]) - 1) < 1e-6
    # the printed figures are the protocol of docs/evaluation.md section 3 on the written features
    probes = [k for k in keys if k[0] == "probe"]
    labels = [k[1].split("/")[0] for k in probes]
    dkeys = [k for k in keys if k[0] == "distractors"]
    rows = reference_rows(np.array([got[k] for k in probes]), np.array(labels),
                          np.array([got[k] for k in dkeys]), [5, 14], 1e-6)
    lines = [line for line in capsys.readouterr().out.splitlines() if "distractors " in line]
    for line, (n, rank1, tar) in zip(lines, rows):
        assert line.split("\t")[1:] == [f"distractors {n}", f"rank-1: {100 * rank1:.2f}",
                                        f"TAR@FAR=1e-06: {100 * tar:.2f}"]
    assert len(lines) == 2


def test_write_vector_and_reader(tmp_path):
    vec = np.arange(5, dtype=np.float32) - 1.5
    path = str(tmp_path / "img.jpg_x.bin")
    devkit_matrix.write_vector(path, vec)
    np.testing.assert_array_equal(read_devkit_file(path)[:, 0], vec)
    np.testing.assert_array_equal(devkit_matrix.read_matrix(path), vec[:, None])
    float64 = tmp_path / "f64.bin"
    float64.write_bytes(struct.pack("<4i", 2, 3, 24, 6) + np.arange(6, dtype="<f8").tobytes())
    np.testing.assert_array_equal(devkit_matrix.read_matrix(str(float64)), np.arange(6.0).reshape(2, 3))
    with open(path, "r+b") as f:
        f.write(struct.pack("<i", 6))
    with pytest.raises(FaceKDError, match="rows=6 cols=1 stride=4 type=5 does not describe"):
        devkit_matrix.read_matrix(path)


def test_feature_out_errors(tmp_path, folders):
    probe, distract, _ = folders
    _, flags = save_models(tmp_path, (0,))
    feats = tmp_path / "feats"
    assert run(flags, probe, distract, "--feature-out", str(feats)) == 0
    with pytest.raises(FaceKDError, match=r"--feature-out .*feats already exists; choose another path or pass "
                                          r"--overwrite"):
        run(flags, probe, distract, "--feature-out", str(feats))
    assert run(flags, probe, distract, "--feature-out", str(feats), "--overwrite", "--algo", "again") == 0
    assert os.path.isfile(feats / "probe" / "bob" / "1.png_again.bin")
    assert not os.path.exists(feats / "probe" / "bob" / "1.png_facekd.bin")  # replaced as a whole
    other = tmp_path / "other"
    other.mkdir()
    with pytest.raises(FaceKDError, match=r"other exists and was not written by identification.py \(no "
                                          r"\.facekd-output marker\)"):
        run(flags, probe, distract, "--feature-out", str(other), "--overwrite")
    with pytest.raises(FaceKDError, match=r"--feature-out .*probe/feats is inside the input --probe"):
        run(flags, probe, distract, "--feature-out", str(probe / "feats"))
    with pytest.raises(FaceKDError, match=r"--algo 'a/b': the algorithm name goes into every feature file"):
        run(flags, probe, distract, "--feature-out", str(tmp_path / "f2"), "--algo", "a/b")
    with pytest.raises(FaceKDError, match=r"--sizes 10,20: distractor counts must lie in 1..14"):
        run(flags, probe, distract, "--sizes", "10,20")
    assert not os.path.exists(tmp_path / "f2") and not os.path.exists(str(feats) + ".partial")


def test_one_line_error(tmp_path, folders):
    probe, distract, _ = folders
    _, flags = save_models(tmp_path, (0,))
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "recognition", "eval", "identification.py"), *flags,
                           "--probe", str(probe), "--distractors", str(distract), "--image-size", "8,8",
                           "--feature-out", str(distract / "x")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "is inside the input --distractors" in lines[0]
