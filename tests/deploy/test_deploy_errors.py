"""Bad inputs of export.py, embed.py and compare.py: one FaceKDError naming the flag or file and the fix,
before any work, nothing written (docs/errors.md lists them)."""
import os
import re
import subprocess
import sys

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from facekd.data.images import encode
from facekd.data.recordio import RecordDatasetWriter
from facekd.errors import FaceKDError

from deployhelpers import ROOT, load_script


def _error(folder, name, argv):
    with pytest.raises(FaceKDError) as info:
        load_script(folder, name).main(argv)
    return str(info.value)


@pytest.fixture
def export_argv(y1_checkpoint, synthetic_dir, ort_python, tmp_path):
    prefix, epoch = y1_checkpoint

    def argv(*extra, model=f"{prefix},{epoch}", out=str(tmp_path / "deploy"), data=str(synthetic_dir)):
        return ["--model", model, "--out", out, "--data-dir", data, "--ort-python", ort_python, *extra]
    return argv


@pytest.mark.slow
def test_export_flag_rules(export_argv, tmp_path):
    cases = [
        (["--int8"], "--int8 needs --calib-data DIR, a RecordIO set of training images to calibrate on "
                     "(never the verification pairs)"),
        (["--calib-data", str(tmp_path)], "--calib-data is used only with --int8; add --int8 or drop --calib-data"),
        (["--target", "synth_easy"], "--target scores the exported models in the report; add --int8 or --report"),
        (["--num-images", "0"], "--num-images 0 is invalid: it must be an integer >= 1"),
        (["--report", "--latency-runs", "0"], "--latency-runs 0 is invalid: it must be an integer >= 1"),
    ]
    for extra, message in cases:
        assert _error("deploy", "export", export_argv(*extra)) == message, extra
    assert re.fullmatch(r"--target: .*/lfw\.bin not found \(present: synth_age, synth_easy, synth_pose\)",
                        _error("deploy", "export", export_argv("--report", "--target", "lfw,synth_easy")))
    assert not os.path.exists(tmp_path / "deploy")


@pytest.mark.slow
def test_export_inputs_and_outputs(export_argv, y1_checkpoint, synthetic_dir, tmp_path):
    prefix, _ = y1_checkpoint
    assert _error("deploy", "export", export_argv(model=f"{prefix},3")) == \
        f"--model: checkpoint file {prefix}-0003.params not found; check the prefix and the epoch"
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "notes.txt").write_text("mine")
    assert _error("deploy", "export", export_argv(out=str(taken))) == \
        f"--out {taken} already exists; choose another path or pass --overwrite"
    assert _error("deploy", "export", export_argv("--overwrite", out=str(taken))) == \
        f"--out {taken} exists and was not written by export.py (no .facekd-output marker); remove it yourself " \
        "or choose another --out"
    assert (taken / "notes.txt").read_text() == "mine"
    inside = synthetic_dir / "deploy"
    assert _error("deploy", "export", export_argv(out=str(inside))).startswith(
        f"--out {inside} is inside the input --data-dir {synthetic_dir}")
    empty = tmp_path / "empty"
    empty.mkdir()
    assert _error("deploy", "export", export_argv(data=str(empty))) == \
        f"{empty}/train.rec: file not found; a dataset folder needs train.rec, train.idx and property " \
        "(build them with data_prepare/face2rec2.py)"
    small = tmp_path / "small"
    with RecordDatasetWriter(str(small), num_classes=1, image_size=(8, 8)) as writer:
        writer.add(np.array([0.0], np.float32), encode(np.zeros((8, 8, 3), np.uint8), encoding=".png"))
    assert _error("deploy", "export", export_argv(data=str(small))) == \
        f"--data-dir {small}: its images are 8x8 (property), the network takes 112x112; give a set of the " \
        "network's input size"
    assert sorted(os.listdir(tmp_path)) == ["empty", "small", "taken"]


@pytest.mark.slow
def test_a_python_without_onnxruntime(export_argv, tmp_path):
    message = _error("deploy", "export", export_argv()[:-1] + [sys.executable])
    assert message == (f"the onnxruntime worker (--ort-python {sys.executable}) stopped: ModuleNotFoundError: No "
                       "module named 'onnxruntime'; check that it is the environment 'make venv-ort' makes")
    assert not os.path.exists(tmp_path / "deploy")


@pytest.fixture
def bad_models(y1_export, tmp_path):
    """model.onnx files that must not be run: not ONNX, weights in external files, a custom operator."""
    out, _ = y1_export
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"\x08\x07not a protobuf at all" * 10)
    external = tmp_path / "external" / "model.onnx"
    external.parent.mkdir()
    model = onnx.load(os.path.join(out, "model.onnx"))
    for tensor in model.graph.initializer:  # as raw bytes, which onnx can move to a side file
        tensor.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(tensor), tensor.name))
    onnx.save(model, str(external), save_as_external_data=True, all_tensors_to_one_file=True, location="weights.bin",
              size_threshold=0)
    assert os.path.isfile(external.parent / "weights.bin")
    custom = tmp_path / "custom.onnx"
    graph = helper.make_graph([helper.make_node("Run", ["data"], ["fc1"], domain="evil.ops")], "g",
                              [helper.make_tensor_value_info("data", TensorProto.FLOAT, [1, 3, 112, 112])],
                              [helper.make_tensor_value_info("fc1", TensorProto.FLOAT, [1, 8])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13), helper.make_opsetid("evil.ops", 1)]),
              str(custom))
    return garbage, external, custom


@pytest.mark.slow
def test_embed_refuses_untrusted_models_and_bad_inputs(bad_models, y1_checkpoint, ort_python, tmp_path):
    garbage, external, custom = bad_models
    prefix, epoch = y1_checkpoint
    faces = tmp_path / "faces"
    faces.mkdir()
    (faces / "a.png").write_bytes(encode(np.full((112, 112, 3), 90, np.uint8), encoding=".png"))
    out = str(tmp_path / "feats.npy")

    def embed(*argv, model=f"{prefix},{epoch}", images=str(faces), to=out):
        return _error("recognition", "embed", ["--model", str(model), "--images", str(images), "--out", to,
                                               "--ort-python", ort_python, "--quiet", *argv])

    assert embed(model=garbage) == f"{garbage}: not an ONNX model (its bytes do not parse as one)"
    assert embed(model=external) == (f"{external}: weights (scalar_op1, ...) are stored in external "
                                     "files; only self-contained models are loaded, save it with "
                                     "save_as_external_data=False")
    assert embed(model=custom) == (f"{custom}: operators of the custom domain(s) evil.ops; only standard ONNX "
                                   "operators are run, re-export the model without custom operators")
    assert embed(model=tmp_path / "none.onnx") == f"{tmp_path / 'none.onnx'}: ONNX model not found"
    assert embed(to=str(tmp_path / "feats.bin")) == \
        f"--out {tmp_path / 'feats.bin'}: the features are a NumPy array; name the file *.npy"
    assert embed(images=tmp_path / "nowhere") == f"--images {tmp_path / 'nowhere'}: no such folder or list file"
    listing = tmp_path / "list.txt"
    listing.write_text("faces/a.png\nfaces/b.png\n")
    assert embed(images=listing) == f"--images {listing}: line 2: {tmp_path / 'faces' / 'b.png'} not found; fix the list"
    (faces / "b.png").write_bytes(b"not an image")
    assert embed() == f"{faces / 'b.png'}: cannot decode 12 bytes as an image (expected JPEG or PNG)"
    assert not os.path.exists(out) and not os.path.exists(tmp_path / "feats.txt")
    (faces / "b.png").unlink()
    np.save(out, np.zeros(1))
    assert embed() == f"--out {out} already exists; choose another path or pass --overwrite"


def test_compare_one_line_error(y1_checkpoint, tmp_path):
    prefix, epoch = y1_checkpoint
    missing = tmp_path / "a.jpg"
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "recognition", "compare.py"), "--model",
                           f"{prefix},{epoch}", str(missing), str(missing)], capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [f"compare.py: error: {missing}: image not found"]
