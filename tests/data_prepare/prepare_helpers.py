"""Helpers of the data-preparation tests: a tiny teacher and its float64 NumPy twin, script runners, raw reads."""
import os
import runpy

import cv2
import mxnet as mx
import numpy as np

from facekd.errors import run_cli

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
POOL = 14  # 112x112 -> 8x8 average pool
EMB = 8
EPS = 2e-5


def tiny_symbol(output="fc1"):
    """raw RGB -> normalise -> 14x14 average pool -> FC pre_fc1 -> BatchNorm ``output`` (fix_gamma)."""
    data = mx.sym.Variable("data")
    x = (data - 127.5) * 0.0078125
    x = mx.sym.Pooling(x, kernel=(POOL, POOL), stride=(POOL, POOL), pool_type="avg", name="pool")
    x = mx.sym.FullyConnected(mx.sym.flatten(x), num_hidden=EMB, name="pre_fc1")
    return mx.sym.BatchNorm(x, fix_gamma=True, eps=EPS, momentum=0.9, name=output)


def tiny_params(seed=0, output="fc1"):
    """Random weights and non-trivial BatchNorm statistics (so inference mode matters)."""
    rng = np.random.RandomState(seed)
    feat = 3 * (112 // POOL) ** 2
    args = {"pre_fc1_weight": rng.normal(0, 0.5, (EMB, feat)), "pre_fc1_bias": rng.normal(0, 0.1, EMB),
            f"{output}_gamma": np.ones(EMB), f"{output}_beta": rng.normal(0, 0.3, EMB)}
    aux = {f"{output}_moving_mean": rng.normal(0, 0.2, EMB), f"{output}_moving_var": rng.uniform(0.2, 2.0, EMB)}
    to_nd = lambda d: {k: mx.nd.array(v.astype(np.float32)) for k, v in d.items()}  # noqa: E731
    return to_nd(args), to_nd(aux)


def reference_embedding(rgb, args, aux):
    """float64 NumPy forward of :func:`tiny_symbol` in inference mode, on uint8 RGB (N, 112, 112, 3)."""
    p = {k: v.asnumpy().astype(np.float64) for k, v in {**args, **aux}.items()}
    x = (rgb.astype(np.float64) - 127.5) * 0.0078125
    x = x.transpose(0, 3, 1, 2)
    n = x.shape[0]
    side = 112 // POOL
    x = x.reshape(n, 3, side, POOL, side, POOL).mean(axis=(3, 5)).reshape(n, -1)
    y = x @ p["pre_fc1_weight"].T + p["pre_fc1_bias"]
    return (y - p["fc1_moving_mean"]) / np.sqrt(p["fc1_moving_var"] + EPS) + p["fc1_beta"]


def decode_rgb(payload):
    """RGB uint8 of encoded bytes with OpenCV directly (independent of facekd.data.images)."""
    bgr = cv2.imdecode(np.frombuffer(payload, np.uint8), cv2.IMREAD_COLOR)
    return bgr[..., ::-1]


def script(name):
    """``main`` of data_prepare/<name>.py (the scripts are thin, so tests run them in-process)."""
    return runpy.run_path(os.path.join(ROOT, "data_prepare", name + ".py"))["main"]


def run_script(name, argv, capsys):
    """Run a script through run_cli; returns (exit code, stdout, stderr)."""
    try:
        run_cli(script(name), argv)
        code = 0
    except SystemExit as exc:
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def read_raw(folder):
    """A dataset read with MXNet's own reader only: header, labels, payloads, identities, property."""
    rec = mx.recordio.MXIndexedRecordIO(os.path.join(folder, "train.idx"), os.path.join(folder, "train.rec"), "r")
    try:
        h0, _ = mx.recordio.unpack(rec.read_idx(0))
        start, stop = int(h0.label[0]), int(h0.label[1])
        labels, payloads = [], []
        for key in range(1, start):
            h, payload = mx.recordio.unpack(rec.read_idx(key))
            labels.append(np.atleast_1d(np.asarray(h.label, np.float32)))
            payloads.append(payload)
        idents = [tuple(int(v) for v in mx.recordio.unpack(rec.read_idx(k))[0].label) for k in range(start, stop)]
        num_keys = len(rec.keys)
    finally:
        rec.close()
    with open(os.path.join(folder, "property")) as f:
        prop = f.read().strip()
    return dict(header=(start, stop), labels=labels, payloads=payloads, identities=idents,
                num_keys=num_keys, property=prop)
