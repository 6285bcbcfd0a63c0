"""A mixed edge is the softmax-weighted sum of its primitives, each as PocketNet defines it (NumPy, float64);
the search's PReLU; the concatenation that keeps narrow PocketNets trainable under oneDNN."""
import json
import subprocess
import sys

import mxnet as mx
import numpy as np
import pytest

from facekd.config import generate_config
from facekd.search.space import NONE, PRIMITIVES, mixed_edge
from facekd.symbols.pocketnet import _act, channel_concat
from facekd.training.settings import Settings

EPS = 1e-5  # PocketNet's BatchNorm eps
SEARCH_CFG = Settings(dict(generate_config("pocketnet", "emore", "arcface"), pocket_prelu_conv=True))


# ----------------------------------------------------------------------------- NumPy reference
def prelu(x, slope):
    return np.where(x > 0, x, slope.reshape(1, -1, 1, 1) * x)


def depthwise(x, w, stride):
    """Depthwise k x k convolution, padding k // 2, weights (C, 1, k, k)."""
    n, c, h, wd = x.shape
    k = w.shape[-1]
    p = k // 2
    xp = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))
    ho, wo = (h + 2 * p - k) // stride + 1, (wd + 2 * p - k) // stride + 1
    out = np.zeros((n, c, ho, wo))
    for i in range(k):
        for j in range(k):
            out += xp[:, :, i:i + stride * ho:stride, j:j + stride * wo:stride] * w[None, :, 0, i, j, None, None]
    return out


def pointwise(x, w):
    return np.einsum("oc,nchw->nohw", w[:, :, 0, 0], x)


def batchnorm(x):
    """Training-mode BatchNorm without affine parameters: batch mean and biased variance per channel."""
    mean = x.mean(axis=(0, 2, 3), keepdims=True)
    var = x.var(axis=(0, 2, 3), keepdims=True)
    return (x - mean) / np.sqrt(var + EPS)


def pool(x, stride, kind):
    """3x3 pooling, padding 1; the average counts only the positions inside the map."""
    n, c, h, w = x.shape
    ho, wo = (h - 1) // stride + 1, (w - 1) // stride + 1
    pad = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)), constant_values=-np.inf if kind == "max" else 0.0)
    ones = np.pad(np.ones((1, 1, h, w)), ((0, 0), (0, 0), (1, 1), (1, 1)))
    windows = [pad[:, :, i:i + stride * ho:stride, j:j + stride * wo:stride] for i in range(3) for j in range(3)]
    if kind == "max":
        return np.max(windows, axis=0)
    counts = sum(ones[:, :, i:i + stride * ho:stride, j:j + stride * wo:stride] for i in range(3) for j in range(3))
    return sum(windows) / counts


def reference_op(name, x, p, stride, prefix):
    if name == "skip_connect" and stride == 1:
        return x
    if name == "skip_connect":  # factorized reduce
        a = prelu(x, p[f"{prefix}_act_gamma"])
        one = pointwise(a[:, :, ::2, ::2] * p[f"{prefix}_dw1_weight"][None, :, 0, 0, 0, None, None],
                        p[f"{prefix}_pw1_weight"])
        two = pointwise(a[:, :, 1::2, 1::2] * p[f"{prefix}_dw2_weight"][None, :, 0, 0, 0, None, None],
                        p[f"{prefix}_pw2_weight"])
        return batchnorm(np.concatenate([one, two], axis=1))
    if name.endswith("pool_3x3"):
        return batchnorm(pool(x, stride, name[:3]))
    a = prelu(x, p[f"{prefix}_act_gamma"])
    return batchnorm(pointwise(depthwise(a, p[f"{prefix}_dw_weight"], stride), p[f"{prefix}_pw_weight"]))


# ----------------------------------------------------------------------------- the tests
@pytest.mark.parametrize("stride", [1, 2])
def test_mixed_edge_is_the_softmax_weighted_sum_of_the_primitives(stride):
    rng = np.random.default_rng(stride)
    c, row = 4, 1
    x = rng.normal(size=(3, c, 8, 8))
    alpha = rng.normal(scale=1.0, size=(2, len(PRIMITIVES)))
    data = mx.sym.Variable("data")
    weights = mx.sym.softmax(mx.sym.Variable("alpha", shape=alpha.shape), axis=1)
    sym = mixed_edge(data, weights, row, c, stride, "e", SEARCH_CFG)
    shapes, _, _ = sym.infer_shape(data=x.shape, alpha=alpha.shape)
    args = {}
    for name, shape in zip(sym.list_arguments(), shapes):
        value = {"data": x, "alpha": alpha}.get(name)
        if value is None:
            value = rng.uniform(0.1, 0.4, shape) if name.endswith("_act_gamma") else rng.normal(size=shape)
            if name.endswith("_bn_gamma"):
                value = np.ones(shape)  # frozen (lr_mult 0): the non-affine BatchNorm
            elif name.endswith("_bn_beta"):
                value = np.zeros(shape)
        args[name] = mx.nd.array(value, dtype="float64")
    aux = {n: mx.nd.array(np.zeros(s) if n.endswith("mean") else np.ones(s), dtype="float64")
           for n, s in zip(sym.list_auxiliary_states(), sym.infer_shape(data=x.shape, alpha=alpha.shape)[2])}
    got = sym.bind(mx.cpu(), args=args, aux_states=aux).forward(is_train=True)[0].asnumpy()

    params = {k: v.asnumpy() for k, v in args.items()}
    soft = np.exp(alpha[row]) / np.exp(alpha[row]).sum()
    want = sum(soft[k] * reference_op(p, x, params, stride, f"e_{p}")
               for k, p in enumerate(PRIMITIVES) if p != NONE)  # "none" contributes zeros
    assert got.shape == (3, c, 8 // stride, 8 // stride)
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-9)
    assert soft[PRIMITIVES.index(NONE)] > 0.01  # "none" takes its share of the softmax


def test_search_prelu_is_prelu_in_value_and_gradients():
    """The search's PReLU (relu + depthwise 1x1 conv of min(x, 0)) behind an in-graph op: value, input and
    slope gradients against the definition."""
    rng = np.random.default_rng(0)
    x = mx.sym.Variable("data")
    pre = mx.sym.Convolution(x, num_filter=3, kernel=(1, 1), no_bias=True, name="pre")
    out = _act(pre, 3, "a", SEARCH_CFG)
    r = mx.sym.Variable("r")
    loss = mx.sym.MakeLoss(mx.sym.sum(out * r))
    shapes = {"data": (2, 3, 5, 5), "r": (2, 3, 5, 5)}
    exe = loss.simple_bind(mx.cpu(), type_dict={k: "float64" for k in shapes}, **shapes)
    values = {"data": rng.normal(size=(2, 3, 5, 5)), "r": rng.normal(size=(2, 3, 5, 5)),
              "pre_weight": rng.normal(size=(3, 3, 1, 1)), "a_gamma": rng.uniform(0.1, 0.5, (3, 1, 1, 1))}
    for k, v in values.items():
        exe.arg_dict[k][:] = v
    exe.forward(is_train=True)
    exe.backward()
    h = pointwise(values["data"], values["pre_weight"])
    slope = values["a_gamma"].reshape(-1)
    assert exe.arg_dict["a_gamma"].shape == (3, 1, 1, 1)
    np.testing.assert_allclose(out.bind(mx.cpu(), {k: exe.arg_dict[k] for k in out.list_arguments()})
                               .forward()[0].asnumpy(), prelu(h, slope), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(exe.grad_dict["a_gamma"].asnumpy().reshape(-1),
                               (np.minimum(h, 0) * values["r"]).sum(axis=(0, 2, 3)), rtol=1e-10)
    grad_h = np.where(h > 0, 1.0, slope.reshape(1, -1, 1, 1)) * values["r"]
    np.testing.assert_allclose(exe.grad_dict["pre_weight"].asnumpy()[:, :, 0, 0],
                               np.einsum("nohw,nchw->oc", grad_h, values["data"]), rtol=1e-10)


def test_channel_concat_of_narrow_parts_is_a_concat():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(2, 8, 3, 3)), rng.normal(size=(2, 4, 3, 3))
    sym = channel_concat([mx.sym.Variable("a"), mx.sym.Variable("b")], (8, 4))  # through 5-D
    assert "expand_dims" in sym.tojson()
    assert "expand_dims" not in channel_concat([mx.sym.Variable("a")] * 2, (16, 32)).tojson()
    r = rng.normal(size=(2, 12, 3, 3))
    exe = mx.sym.MakeLoss(mx.sym.sum(sym * mx.sym.Variable("r"))).bind(
        mx.cpu(), args={"a": mx.nd.array(a), "b": mx.nd.array(b), "r": mx.nd.array(r)},
        args_grad={"a": mx.nd.zeros(a.shape), "b": mx.nd.zeros(b.shape)})
    exe.forward(is_train=True)
    exe.backward()
    np.testing.assert_allclose(sym.eval(ctx=mx.cpu(), a=mx.nd.array(a), b=mx.nd.array(b))[0].asnumpy(),
                               np.concatenate([a, b], axis=1), rtol=1e-6)
    np.testing.assert_allclose(exe.grad_dict["a"].asnumpy(), r[:, :8], rtol=1e-6)
    np.testing.assert_allclose(exe.grad_dict["b"].asnumpy(), r[:, 8:], rtol=1e-6)


# A genotype a tiny search found: trained at C = 4 its factorized reduces and cells concatenate maps of 2 to 16
# channels, and oneDNN's concat backward failed on them (a floating point exception that killed the process;
# "could not construct a sub-memory" at C = 12).
NARROW_GENOTYPE = {
    "format": "facekd-genotype", "version": 1,
    "normal": [[["max_pool_3x3", 1], ["dw_conv_1x1", 0]], [["dw_conv_5x5", 1], ["skip_connect", 0]],
               [["dw_conv_5x5", 3], ["dw_conv_3x3", 1]], [["dw_conv_3x3", 4], ["max_pool_3x3", 1]]],
    "normal_concat": [2, 3, 4, 5],
    "reduce": [[["avg_pool_3x3", 0], ["avg_pool_3x3", 1]], [["skip_connect", 2], ["dw_conv_5x5", 0]],
               [["dw_conv_3x3", 1], ["dw_conv_3x3", 2]], [["dw_conv_5x5", 0], ["dw_conv_3x3", 2]]],
    "reduce_concat": [2, 3, 4, 5],
}
_TRAIN_STEP = """
import sys, mxnet as mx, numpy as np
from facekd.config import generate_config
from facekd.symbols import get_symbol, network_initializer
cfg = generate_config("pocketnet", "emore", "arcface", pocket_cells=4, pocket_channels=4, pocket_genotype=sys.argv[1])
mod = mx.mod.Module(mx.sym.MakeLoss(mx.sym.mean(get_symbol(cfg))), data_names=["data"], label_names=None)
mod.bind(data_shapes=[("data", (4, 3, 112, 112))], for_training=True)
mod.init_params(network_initializer(cfg))
mod.forward_backward(mx.io.DataBatch([mx.nd.array(np.random.uniform(0, 255, (4, 3, 112, 112)))]))
print(np.isfinite(mod._exec_group.grad_arrays[0][0].asnumpy()).all())
"""


def test_narrow_pocketnet_trains_under_onednn(tmp_path):
    path = tmp_path / "narrow.json"
    path.write_text(json.dumps(NARROW_GENOTYPE))
    proc = subprocess.run([sys.executable, "-c", _TRAIN_STEP, str(path)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-500:]
    assert proc.stdout.strip().endswith("True")
