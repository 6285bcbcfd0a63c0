"""The parity gate: a wrong export fails (non-zero, nothing under --out); the distance itself."""
import os
import subprocess
import sys

import numpy as np
import pytest
from onnx import numpy_helper

from facekd.deploy import onnx_export, parity
from facekd.errors import FaceKDError

from deployhelpers import ROOT, load_script
from export_networks import random_checkpoint  # bench/export_networks.py


def _export(prefix, epoch, data, out, ort_python, *extra):
    return load_script("deploy", "export").main(["--model", f"{prefix},{epoch}", "--out", out, "--data-dir", data,
                                                 "--num-images", "6", "--batch-size", "6", "--ort-python",
                                                 ort_python, *extra])


def _tamper(model, ranks):
    """A changed weight: one output channel of a convolution in the middle of the network, negated."""
    convs = [n for n in model.graph.node if n.op_type == "Conv"]
    name = convs[len(convs) // 2].input[1]
    tensor = next(t for t in model.graph.initializer if t.name == name)
    weight = numpy_helper.to_array(tensor).copy()
    weight[0] = -weight[0]
    tensor.CopyFrom(numpy_helper.from_array(weight, name))
    return 1


@pytest.fixture(scope="module")
def y1_random(tmp_path_factory, calibration_faces):
    """A y1 checkpoint whose fix_gamma BatchNorm (fc1) stores gammas far from 1, as weight decay leaves them."""
    return random_checkpoint(str(tmp_path_factory.mktemp("parity_y1") / "models" / "y1" / "model"), "y1",
                             calibration_faces, seed=3)


@pytest.mark.slow
def test_a_tampered_graph_fails_and_leaves_nothing(y1_random, synthetic_dir, ort_python, tmp_path, monkeypatch):
    prefix, epoch = y1_random
    out = str(tmp_path / "deploy")
    tampered = onnx_export.Repair("tamper", "test: a changed weight", _tamper)
    monkeypatch.setattr(onnx_export, "ONNX_REPAIRS", onnx_export.ONNX_REPAIRS + (tampered,))
    with pytest.raises(FaceKDError, match=r"parity check failed: model\.onnx \(onnxruntime\) is .* from MXNet in "
                                          r"cosine distance \(max over 6 images, limit 1e-05\)"):
        _export(prefix, epoch, str(synthetic_dir), out, ort_python)
    assert os.listdir(tmp_path) == []  # neither deploy nor deploy.partial


@pytest.mark.slow
def test_the_exporters_own_batchnorm_fails_parity(y1_random, synthetic_dir, ort_python, tmp_path, monkeypatch):
    """Without the fixed-gamma repair, MXNet's converter scales fc1 by the stored gamma: caught."""
    prefix, epoch = y1_random
    _export(prefix, epoch, str(synthetic_dir), str(tmp_path / "repaired"), ort_python)  # passes with the repair
    monkeypatch.setattr(onnx_export, "GRAPH_REPAIRS",
                        tuple(r for r in onnx_export.GRAPH_REPAIRS if r.name != "fixed-gamma-as-ones"))
    with pytest.raises(FaceKDError, match="parity check failed"):
        _export(prefix, epoch, str(synthetic_dir), str(tmp_path / "deploy"), ort_python)
    assert sorted(os.listdir(tmp_path)) == ["repaired"]


@pytest.mark.slow
def test_the_command_exits_non_zero_with_one_line(y1_random, synthetic_dir, ort_python, tmp_path):
    prefix, epoch = y1_random
    bad = tmp_path / "missing-ort" / "python"
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "deploy", "export.py"), "--model", f"{prefix},{epoch}",
                           "--out", str(tmp_path / "deploy"), "--data-dir", str(synthetic_dir), "--ort-python",
                           str(bad)], capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"export.py: error: --ort-python {bad}: no such Python; run 'make venv-ort' (the onnxruntime environment, "
        "requirements-ort.txt) or pass --ort-python PATH"]
    assert not os.path.exists(tmp_path / "deploy")


def test_cosine_distance_by_hand():
    a = np.array([[1.0, 0.0], [3.0, 4.0], [1.0, 1.0], [2.0, 0.0]])
    b = np.array([[0.0, 2.0], [6.0, 8.0], [-1.0, -1.0], [1.0, 1.0]])
    np.testing.assert_allclose(parity.cosine_distances(a, b), [1.0, 0.0, 2.0, 1 - np.sqrt(0.5)], atol=1e-15)
    p = parity.measure(a, b)
    assert p.images == 4 and p.max == pytest.approx(2.0) and p.mean == pytest.approx((4 - np.sqrt(0.5)) / 4)
    with_nan = b.copy()
    with_nan[1, 0] = np.nan
    assert parity.measure(a, with_nan).max == np.inf
    close = parity.measure(a[1:2], a[1:2] * 1.5)
    assert parity.check(close, "x") is close
    with pytest.raises(FaceKDError, match="parity check failed: x is 2 from MXNet"):
        parity.check(p, "x")
    with pytest.raises(FaceKDError, match="different embedding sizes"):
        parity.cosine_distances(a, b[:, :1])
