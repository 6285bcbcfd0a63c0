"""deploy/export.py: slim checkpoint, ONNX through MXNet's exporter, parity, INT8, the report.

References: MXNet's own loader and a plain Module forward of the checkpoints, onnxruntime run
directly (not through the project's worker), the .params keys, file sizes on disk.
"""
import json
import os

import mxnet as mx
import numpy as np
import onnx
import pytest

from facekd.deploy.faces import spread_keys
from facekd.evaluation import verification as V

from deployhelpers import cosine_distance, load_script, mxnet_forward, record_images, run_onnxruntime

INSIGHTFACE_FIRST_NODES = 8  # insightface's ArcFaceONNX looks at this many nodes for the preprocessing


def insightface_takes_raw_pixels(model):
    """insightface's rule: a Sub/_minus* and a Mul/_mul* node among the first eight means the model
    normalises its own input (input_mean 0, input_std 1: raw pixels in)."""
    names = [n.name for n in model.graph.node[:INSIGHTFACE_FIRST_NODES]]
    return (any(n.startswith(("Sub", "_minus")) for n in names)
            and any(n.startswith(("Mul", "_mul")) for n in names))


def parity_line(lines):
    line = next(l for l in lines if l.startswith("parity:"))
    return float(line.split("max cosine distance ")[1].split(",")[0])


@pytest.mark.slow
def test_slim_checkpoint_keeps_only_the_network(y1_checkpoint, y1_export, synthetic_dir):
    prefix, epoch = y1_checkpoint
    out, lines = y1_export
    training = mx.nd.load(f"{prefix}-{epoch:04d}.params")
    slim = mx.nd.load(os.path.join(out, "model-0000.params"))
    assert "arg:fc7_weight" in training
    symbol, arg, aux = mx.model.load_checkpoint(os.path.join(out, "model"), 0)  # MXNet's own loader
    assert symbol.list_outputs() == ["fc1_output"]
    needed = {f"arg:{n}" for n in symbol.list_arguments() if n != "data"} | \
             {f"aux:{n}" for n in symbol.list_auxiliary_states()}
    assert set(slim) == needed and not any("fc7" in k for k in slim)
    for key in slim:  # the same arrays, bit for bit
        np.testing.assert_array_equal(slim[key].asnumpy(), training[key].asnumpy(), err_msg=key)
    assert os.path.getsize(os.path.join(out, "model-0000.params")) < os.path.getsize(f"{prefix}-{epoch:04d}.params")
    # the slim checkpoint gives the training checkpoint's embeddings
    images = record_images(synthetic_dir, [1, 17, 40, 72])
    np.testing.assert_array_equal(mxnet_forward(os.path.join(out, "model"), 0, images),
                                  mxnet_forward(prefix, epoch, images))
    assert any(l.startswith("slim checkpoint:") and "training checkpoint" in l for l in lines)
    # the project's verification scores both alike
    both = V.verify_models([(prefix, epoch), (os.path.join(out, "model"), 0)], str(synthetic_dir), ["synth_easy"], 8,
                           [mx.cpu()], report=lambda line: None)
    assert both[0][2].acc == both[1][2].acc and both[0][2].xnorm == pytest.approx(both[1][2].xnorm, rel=1e-6)


@pytest.mark.slow
def test_onnx_computes_the_mxnet_embedding(y1_checkpoint, y1_export, synthetic_dir, tmp_path):
    prefix, epoch = y1_checkpoint
    out, lines = y1_export
    images = record_images(synthetic_dir, spread_keys(72, 24))
    expected = mxnet_forward(prefix, epoch, images)
    got = run_onnxruntime(os.path.join(out, "model.onnx"), images.transpose(0, 3, 1, 2), tmp_path)
    distances = cosine_distance(expected, got)
    assert distances.max() < 1e-5
    assert parity_line(lines) < 1e-5  # what the export measured on these 24 images through its worker
    # dynamic batch: one image at a time gives the same rows
    single = np.concatenate([run_onnxruntime(os.path.join(out, "model.onnx"),
                                             images[i:i + 1].transpose(0, 3, 1, 2), tmp_path) for i in (0, 5)])
    assert cosine_distance(expected[[0, 5]], single).max() < 1e-5


@pytest.mark.slow
def test_onnx_model_interface_and_metadata(y1_export):
    out, _ = y1_export
    model = onnx.load(os.path.join(out, "model.onnx"))
    onnx.checker.check_model(model)
    assert [i.name for i in model.graph.input] == ["data"]
    dims = model.graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_param or d.dim_value for d in dims] == ["N", 3, 112, 112]
    assert [o.name for o in model.graph.output] == ["fc1"]
    meta = {p.key: p.value for p in model.metadata_props}
    assert float(meta["facekd.input_mean"]) == 127.5 and float(meta["facekd.input_scale"]) == 1 / 128
    assert "RGB" in meta["facekd.input"] and "0..255" in meta["facekd.input"] and "NCHW" in meta["facekd.input"]
    assert meta["facekd.embedding_size"] == "512"
    assert "fixed-gamma-as-ones" in meta["facekd.repairs"]
    # the graph's own preprocessing, first: insightface feeds such a model raw pixels
    assert [n.op_type for n in model.graph.node[:2]] == ["Sub", "Mul"]
    assert insightface_takes_raw_pixels(model)
    int8 = onnx.load(os.path.join(out, "model-int8.onnx"))
    assert insightface_takes_raw_pixels(int8)
    assert "facekd.quantization" in {p.key for p in int8.metadata_props}


@pytest.mark.slow
def test_int8_and_report(y1_export, synthetic_dir, tmp_path):
    out, lines = y1_export
    with open(os.path.join(out, "deploy.json")) as f:
        report = json.load(f)
    columns = {c["name"]: c for c in report["columns"]}
    assert list(columns) == ["MXNet", "ONNX float", "ONNX INT8"]
    sizes = {"MXNet": os.path.getsize(os.path.join(out, "model-0000.params"))
             + os.path.getsize(os.path.join(out, "model-symbol.json")),
             "ONNX float": os.path.getsize(os.path.join(out, "model.onnx")),
             "ONNX INT8": os.path.getsize(os.path.join(out, "model-int8.onnx"))}
    assert {n: c["size"] for n, c in columns.items()} == sizes
    assert sizes["ONNX INT8"] < 0.4 * sizes["ONNX float"]  # 8-bit weights
    for column in columns.values():
        assert column["latency_ms"] > 0 and column["images_per_second"] > 0
        assert set(column["accuracy"]) == {"synth_easy"}
    # float ONNX and MXNet score the same pairs the same
    assert columns["ONNX float"]["accuracy"]["synth_easy"] == pytest.approx(columns["MXNet"]["accuracy"]["synth_easy"],
                                                                           abs=1e-9)
    # the INT8 model runs in onnxruntime on its own and stays near the float one
    images = record_images(synthetic_dir, [3, 30]).transpose(0, 3, 1, 2)
    float_out = run_onnxruntime(os.path.join(out, "model.onnx"), images, tmp_path)
    int8_out = run_onnxruntime(os.path.join(out, "model-int8.onnx"), images, tmp_path)
    assert int8_out.shape == float_out.shape and np.isfinite(int8_out).all()
    table = open(os.path.join(out, "deploy.md")).read()
    assert "| size |" in table and "Accuracy-Flip synth_easy" in table and "ONNX INT8" in table
    with open(os.path.join(out, ".facekd-output")) as f:
        assert "export.py" in f.read()


@pytest.mark.slow
def test_pocketnet_exports_with_parity(pocketnet_checkpoint, synthetic_dir, ort_python, tmp_path, capsys):
    prefix, epoch = pocketnet_checkpoint
    out = str(tmp_path / "pocket")
    load_script("deploy", "export").main(["--model", f"{prefix},{epoch}", "--out", out, "--data-dir",
                                          str(synthetic_dir), "--num-images", "8", "--batch-size", "8",
                                          "--ort-python", ort_python])
    images = record_images(synthetic_dir, [1, 50])
    expected = mxnet_forward(prefix, epoch, images)
    got = run_onnxruntime(os.path.join(out, "model.onnx"), images.transpose(0, 3, 1, 2), tmp_path)
    assert got.shape == (2, 128) and cosine_distance(expected, got).max() < 1e-5
    assert parity_line(capsys.readouterr().out.splitlines()) < 1e-5
    model = onnx.load(os.path.join(out, "model.onnx"))
    inits = {t.name: t for t in model.graph.initializer}
    slopes = [list(inits[n.input[1]].dims) for n in model.graph.node if n.op_type == "PRelu"]
    assert slopes and all(len(s) == 3 and s[1:] == [1, 1] for s in slopes)  # one slope per channel
    meta = {p.key: p.value for p in model.metadata_props}
    assert float(meta["facekd.input_scale"]) == pytest.approx(1 / 127.5)  # PocketNet's own normalisation
    assert "prelu-slope-per-channel" in meta["facekd.repairs"]


@pytest.mark.slow
def test_rerun_needs_overwrite_and_replaces_its_own_output(y1_checkpoint, synthetic_dir, ort_python, tmp_path):
    from facekd.errors import FaceKDError

    prefix, epoch = y1_checkpoint
    out = str(tmp_path / "deploy")
    argv = ["--model", f"{prefix},{epoch}", "--out", out, "--data-dir", str(synthetic_dir), "--num-images", "4",
            "--batch-size", "4", "--ort-python", ort_python]
    script = load_script("deploy", "export")
    script.main(argv)
    before = os.path.getmtime(os.path.join(out, "model.onnx"))
    with pytest.raises(FaceKDError, match="already exists; choose another path or pass --overwrite"):
        script.main(argv)
    script.main(argv + ["--overwrite"])
    assert os.path.getmtime(os.path.join(out, "model.onnx")) >= before
    assert sorted(os.listdir(tmp_path)) == ["deploy"]
