"""Bind a loss head on CPU, run forward + backward, return outputs and gradients as float64."""
import mxnet as mx
import numpy as np
import pytest

from facekd import native as facekd_native
from facekd.config import generate_config
from facekd.losses import build_head, head_metrics

NUM_CLASSES, EMB, BATCH = 10, 8, 6


def make_cfg(loss, **overrides):
    cfg = generate_config("y1", "emore", loss)
    cfg.num_classes, cfg.emb_size, cfg.per_batch_size = NUM_CLASSES, EMB, BATCH
    cfg.teacher_dim = EMB  # what a run takes from the soft labels (a test may override it)
    for k, v in overrides.items():
        cfg[k] = v
    return cfg


def run_head(cfg, data, label, params=None, grads=("data",)):
    """Forward + backward of ``build_head``; returns (outputs list, {name: gradient}, metric values)."""
    params = params or {}
    sym = build_head(mx.sym.Variable("data"), mx.sym.Variable("softmax_label"), cfg)
    shapes = {"data": data.shape, "softmax_label": label.shape}
    shapes.update({k: v.shape for k, v in params.items()})
    grad_req = {name: ("write" if name in grads else "null") for name in sym.list_arguments()}
    ex = sym.simple_bind(mx.cpu(), grad_req=grad_req, **shapes)
    for name, value in [("data", data), ("softmax_label", label)] + list(params.items()):
        ex.arg_dict[name][:] = value
    ex.forward(is_train=True)
    ex.backward()
    outputs = [o.asnumpy().astype(np.float64) for o in ex.outputs]
    metrics = head_metrics(sym)
    for metric in metrics:
        metric.update([ex.arg_dict["softmax_label"]], ex.outputs)
    values = {m.name: m.get()[1] for m in metrics}
    return outputs, {g: ex.grad_dict[g].asnumpy().astype(np.float64) for g in grads}, values


def assert_close(actual, expected, rtol=2e-4, atol=0.0):
    """Agreement to float32 precision, relative to the largest magnitude of the reference."""
    expected = np.asarray(expected, dtype=np.float64)
    scale = max(np.abs(expected).max(), 1e-12)
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=max(rtol * scale, atol))


def differs(actual, expected, rtol=2e-4):
    expected = np.asarray(expected, dtype=np.float64)
    scale = max(np.abs(expected).max(), 1e-12)
    return not np.allclose(actual, expected, rtol=rtol, atol=rtol * scale)


def face_batch(seed, teacher_dim=EMB, batch=BATCH):
    """Random centres W, class ids y, student embeddings e near their centres, teacher vectors t
    near the teacher's centres Wt (row-normalised), all float64."""
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((NUM_CLASSES, EMB))
    wt = rng.standard_normal((NUM_CLASSES, teacher_dim))
    wt /= np.linalg.norm(wt, axis=1, keepdims=True)
    y = rng.permutation(NUM_CLASSES)[:batch] if batch <= NUM_CLASSES else rng.integers(0, NUM_CLASSES, batch)
    e = 3 * w[y] / np.linalg.norm(w[y], axis=1, keepdims=True) + rng.standard_normal((batch, EMB))
    t = 4 * wt[y] + rng.standard_normal((batch, teacher_dim))
    return w, wt, y, e, t


def soft_labels(t, y):
    return np.concatenate([t, np.asarray(y, dtype=np.float64)[:, None]], axis=1).astype(np.float32)


def f32(x):
    return np.asarray(x, dtype=np.float32)


# The two ways the margin heads normalise their trainable centres: stock operators, and
# facekd.native's facekd_unit_rows (skipped where the library cannot be built here).
KERNELS = [pytest.param(False, id="stock"), pytest.param(True, id="native")]


def kernel(native):
    """The ``native_unit_rows`` setting for a test of one kernel (skips when native is unavailable)."""
    if native and not facekd_native.load():
        pytest.skip(f"native operators unavailable: {facekd_native.reason()}")
    return bool(native)
