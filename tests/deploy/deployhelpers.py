"""Helpers of the deployment tests: scripts, onnxruntime run directly, plain MXNet forwards."""
import importlib.util
import os
import subprocess

import mxnet as mx
import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ORT_PYTHON = os.path.join(ROOT, ".venv-ort", "bin", "python")

# onnxruntime on its own, without the project's worker: model, input .npy, output .npy
ORT_RUN = """
import sys, numpy as np, onnxruntime as ort
session = ort.InferenceSession(sys.argv[1], providers=["CPUExecutionProvider"])
name = session.get_inputs()[0].name
np.save(sys.argv[3], session.run(None, {name: np.load(sys.argv[2])})[0])
"""


def load_script(folder, name):
    """The module of ``<folder>/<name>.py`` (scripts are not a package)."""
    path = os.path.join(ROOT, folder, f"{name}.py")
    spec = importlib.util.spec_from_file_location(f"facekd_deploy_script_{folder}_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_onnxruntime(model, images_nchw, tmp_path):
    """Outputs of ``model`` run by onnxruntime in .venv-ort, with nothing of the project in between."""
    src, out = os.path.join(tmp_path, "ort_in.npy"), os.path.join(tmp_path, "ort_out.npy")
    np.save(src, np.asarray(images_nchw, dtype=np.float32))
    proc = subprocess.run([ORT_PYTHON, "-c", ORT_RUN, str(model), src, out], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr.strip().splitlines()[-1])
    return np.load(out)


def mxnet_forward(prefix, epoch, images_nhwc):
    """Raw fc1 outputs of a checkpoint from a plain mx.mod.Module over ``fc1_output`` (no project code)."""
    symbol, arg, aux = mx.model.load_checkpoint(prefix, epoch)
    symbol = symbol.get_internals()["fc1_output"]
    data = mx.nd.array(np.asarray(images_nhwc).transpose(0, 3, 1, 2).astype(np.float32))
    module = mx.mod.Module(symbol, data_names=["data"], label_names=None, context=mx.cpu())
    module.bind(data_shapes=[("data", data.shape)], for_training=False)
    module.set_params(arg, aux, allow_extra=True)
    module.forward(mx.io.DataBatch(data=[data]), is_train=False)
    return module.get_outputs()[0].asnumpy()


def cosine_distance(a, b):
    """1 - cos per row, float64."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return 1 - np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def record_images(folder, keys):
    """uint8 RGB images of record ``keys`` read with MXNet's own reader and OpenCV."""
    import cv2

    reader = mx.recordio.MXIndexedRecordIO(os.path.join(folder, "train.idx"), os.path.join(folder, "train.rec"), "r")
    out = []
    for key in keys:
        _, payload = mx.recordio.unpack(reader.read_idx(int(key)))
        out.append(cv2.cvtColor(cv2.imdecode(np.frombuffer(payload, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB))
    reader.close()
    return np.stack(out)
