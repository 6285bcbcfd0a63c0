"""recognition/embed.py and compare.py: verification's embeddings of image files, the cosine verdict."""
import os

import cv2
import mxnet as mx
import numpy as np
import pytest

from facekd.data.binfile import load_bin
from facekd.embedder import Embedder
from facekd.errors import FaceKDError
from facekd.evaluation import verification as V

from deployhelpers import load_script, mxnet_forward

COUNT = 10


@pytest.fixture(scope="module")
def faces(synthetic_dir, tmp_path_factory):
    """(folder, relative names sorted, RGB images) of 10 faces of synth_easy.bin saved as PNG, two in a sub-folder."""
    bins, _ = load_bin(str(synthetic_dir / "synth_easy.bin"))
    folder = tmp_path_factory.mktemp("faces")
    (folder / "sub").mkdir()
    names = [f"sub/{i:02d}.png" if i < 2 else f"{i:02d}.png" for i in range(COUNT)]
    images = []
    for name, payload in zip(names, bins):
        bgr = cv2.imdecode(np.frombuffer(payload, np.uint8), cv2.IMREAD_COLOR)
        cv2.imwrite(str(folder / name), bgr)  # PNG: the pixels round-trip exactly
        images.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    order = np.argsort(names)
    return folder, [names[i] for i in order], np.stack(images)[order]


def _embed(model, images_arg, out, ort_python, *extra):
    assert load_script("recognition", "embed").main(["--model", model, "--images", str(images_arg), "--out", str(out),
                                                     "--batch-size", "8", "--ort-python", ort_python, "--quiet",
                                                     *extra]) == 0
    with open(os.path.splitext(str(out))[0] + ".txt") as f:
        return np.load(out), f.read().splitlines()


@pytest.mark.slow
def test_embed_equals_the_verification_embeddings(y1_checkpoint, faces, ort_python, tmp_path):
    prefix, epoch = y1_checkpoint
    folder, names, images = faces
    features, written = _embed(f"{prefix},{epoch}", folder, tmp_path / "feats.npy", ort_python)
    assert written == names and features.shape == (COUNT, 512) and features.dtype == np.float32
    # what verification computes for these images (its own embedder, batches of originals and flips)
    embedder = Embedder.from_checkpoint(prefix, epoch, [mx.cpu()], 8)
    expected, _ = V.flip_embeddings(*V.embed_with_flip(embedder, images))
    np.testing.assert_allclose(features, expected, rtol=0, atol=1e-6)
    # and from first principles: a plain MXNet forward of image and mirror, summed, normalised in float64
    raw = mxnet_forward(prefix, epoch, images).astype(np.float64) + \
        mxnet_forward(prefix, epoch, images[:, :, ::-1]).astype(np.float64)
    np.testing.assert_allclose(features, raw / np.linalg.norm(raw, axis=1, keepdims=True), rtol=0, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(features, axis=1), 1.0, atol=1e-6)


@pytest.mark.slow
def test_embed_with_the_onnx_model_and_a_list(y1_export, y1_checkpoint, faces, ort_python, tmp_path):
    out, _ = y1_export
    prefix, epoch = y1_checkpoint
    folder, names, _ = faces
    listing = tmp_path / "faces.txt"
    chosen = [names[4], names[0], names[7]]
    listing.write_text("# three faces\n" + "\n".join(os.path.relpath(os.path.join(folder, n), tmp_path)
                                                     for n in chosen) + "\n\n")
    onnx_feats, written = _embed(os.path.join(out, "model.onnx"), listing, tmp_path / "onnx.npy", ort_python)
    assert len(written) == 3 and [os.path.normpath(os.path.join(tmp_path, w)) for w in written] == \
        [os.path.normpath(os.path.join(folder, n)) for n in chosen]
    mx_feats, _ = _embed(f"{prefix},{epoch}", folder, tmp_path / "mx.npy", ort_python)
    reference = mx_feats[[names.index(n) for n in chosen]].astype(np.float64)
    assert (1 - np.sum(reference * onnx_feats, axis=1)).max() < 1e-5


@pytest.mark.slow
def test_compare_prints_the_cosine_and_the_verdict(y1_checkpoint, faces, ort_python, tmp_path, capsys):
    prefix, epoch = y1_checkpoint
    folder, names, _ = faces
    features, _ = _embed(f"{prefix},{epoch}", folder, tmp_path / "feats.npy", ort_python)
    capsys.readouterr()
    a, b = names[2], names[5]
    cos = float(features[2].astype(np.float64) @ features[5])
    script = load_script("recognition", "compare")
    argv = ["--model", f"{prefix},{epoch}", str(folder / a), str(folder / b)]
    assert script.main(argv + ["--threshold", f"{cos - 1e-3:.6f}"]) == 0
    assert capsys.readouterr().out.strip() == f"cosine {cos:.4f}: same (threshold {float(f'{cos - 1e-3:.6f}'):g})"
    assert script.main(argv + ["--threshold", f"{min(cos + 1e-3, 1):.6f}"]) == 1
    assert ": different (threshold" in capsys.readouterr().out
    assert script.main(argv) == (0 if cos > 0.3 else 1)
    assert "the default" in capsys.readouterr().out


@pytest.mark.parametrize("argv, message", [
    (["--threshold", "1.5"], r"--threshold 1.5: a cosine threshold lies in \[-1, 1\]"),
    (["--threshold", "nan"], r"--threshold nan: a cosine threshold lies in \[-1, 1\]"),
])
def test_compare_refuses_a_threshold_outside_the_cosine_range(y1_checkpoint, faces, argv, message):
    prefix, epoch = y1_checkpoint
    folder, names, _ = faces
    with pytest.raises(FaceKDError, match=message):
        load_script("recognition", "compare").main(["--model", f"{prefix},{epoch}", str(folder / names[0]),
                                                    str(folder / names[1]), *argv])
