"""The architecture gradient of a tiny supernet against central finite differences, in float64.

First order: d/dalpha L_val(w, alpha). Second order: d/dalpha L_val(w - xi grad_w L_train(w, alpha), alpha),
the unrolled objective evaluated as written. Directional derivatives along random directions. The head is
the plain softmax (the margin heads hold float32 constants and cannot run in float64).
"""
import subprocess
import sys

import mxnet as mx
import numpy as np
import pytest

from facekd.search.architect import Architect
from facekd.search.args import parse_args, search_settings
from facekd.search.network import supernet_symbol
from facekd.search.optim import Adam
from facekd.search.supernet import Supernet

SIZE, BATCH, CLASSES = 16, 4, 5


def _settings(batch=BATCH, devices=1):
    args = parse_args(["--data-dir", "d", "--out", "o", "--layers", "3", "--init-channels", "2", "--nodes", "2",
                       "--batch-size", str(batch), "--emb-size", "8", "--loss", "softmax"])
    return search_settings(args, CLASSES, 100, (SIZE, SIZE), devices, "d")


def _supernet(s, contexts, seed=0):
    net = Supernet(supernet_symbol(s)[0], contexts, s.per_batch_size, (3, SIZE, SIZE), dtype="float64")
    mx.random.seed(seed)
    net.initialize()
    rng = np.random.default_rng(seed)
    for name in net.alpha_names:  # away from the uniform start, so that every term matters
        net.array(name)[:] = mx.nd.array(rng.normal(0, 0.5, net.array(name).shape), dtype="float64")
    net.broadcast(net.alpha_names)
    return net


def _batch(rng, n=BATCH):
    return (mx.nd.array(rng.uniform(0, 255, (n, 3, SIZE, SIZE)), dtype="float64"),
            mx.nd.array(rng.integers(0, CLASSES, n), dtype="float64"))


def _set(net, names, values):
    for name in names:
        net.array(name)[:] = values[name]
    net.broadcast(names)


def _loss(net, batch):
    return float(net.forward_backward(*batch)[0].asscalar())


def _directional(f, base, direction, h):
    plus = {n: base[n] + h * direction[n] for n in base}
    minus = {n: base[n] - h * direction[n] for n in base}
    return (f(plus) - f(minus)) / (2 * h)


def _dot(grads, direction):
    return sum(float((grads[n] * direction[n]).sum().asscalar()) for n in grads)


@pytest.fixture(scope="module")
def tiny():
    s = _settings()
    net = _supernet(s, [mx.cpu()])
    rng = np.random.default_rng(1)
    return net, _batch(rng), _batch(rng), rng


def _directions(net, rng, count=3):
    return [{n: mx.nd.array(rng.normal(size=net.array(n).shape), dtype="float64") for n in net.alpha_names}
            for _ in range(count)]


def test_first_order_gradient_matches_central_differences(tiny):
    net, _, val, rng = tiny
    architect = Architect(net, Adam(1e-3, 0.5, 0.999, 0.0), "first")
    grads, loss, _ = architect.first_order(val)
    base = {n: net.array(n).copy() for n in net.alpha_names}

    def f(alphas):
        _set(net, net.alpha_names, alphas)
        return _loss(net, val)

    for v in _directions(net, rng):
        fd = _directional(f, base, v, 1e-6)
        assert _dot(grads, v) == pytest.approx(fd, rel=1e-5, abs=1e-9)
    _set(net, net.alpha_names, base)
    assert np.isfinite(loss.asscalar())


def test_second_order_gradient_matches_central_differences_of_the_unrolled_loss(tiny):
    net, train, val, rng = tiny
    xi = 0.05
    # a tiny finite-difference step for the Hessian-vector product, so that only the formula is tested
    architect = Architect(net, Adam(1e-3, 0.5, 0.999, 0.0), "second", hvp_scale=1e-5)
    alphas = {n: net.array(n).copy() for n in net.alpha_names}
    weights = {n: net.array(n).copy() for n in net.weight_names}
    unrolled, _, _ = architect.second_order(train, val, xi)
    for name, value in weights.items():  # the architect put the weights back exactly
        np.testing.assert_array_equal(net.array(name).asnumpy(), value.asnumpy())
    first, _, _ = architect.first_order(val)

    def f(a):
        _set(net, net.alpha_names, a)
        _set(net, net.weight_names, weights)
        net.forward_backward(*train)
        step = {n: weights[n] - xi * g for n, g in net.gradients(net.weight_names).items()}
        _set(net, net.weight_names, step)
        return _loss(net, val)

    for v in _directions(net, rng):
        fd = _directional(f, alphas, v, 1e-6)
        assert _dot(unrolled, v) == pytest.approx(fd, rel=1e-5, abs=1e-9)
        assert abs(_dot(first, v) - fd) > 1e-3 * abs(fd)  # the Hessian term matters here
    _set(net, net.weight_names, weights)
    _set(net, net.alpha_names, alphas)


def test_two_devices_split_the_batch_and_average_the_gradients():
    """Two CPU devices, each half of the batch (its own BatchNorm statistics): the gradient is the mean
    of two one-device gradients on the halves, with the same weights."""
    rng = np.random.default_rng(2)
    data, label = _batch(rng, 2 * BATCH)
    pair = _supernet(_settings(2 * BATCH, 2), [mx.cpu(0), mx.cpu(1)])
    single = _supernet(_settings(BATCH, 1), [mx.cpu(0)], seed=1)
    args, aux = pair.get_params()
    single.set_params(args, aux, "pair")
    names = pair.alpha_names + pair.weight_names[:5] + pair.weight_names[-3:]
    loss, _ = pair.forward_backward(data, label)
    got = {n: g.asnumpy().copy() for n, g in pair.gradients(names).items()}
    halves = []
    for k in range(2):
        part = (data[k * BATCH:(k + 1) * BATCH], label[k * BATCH:(k + 1) * BATCH])
        halves.append((_loss(single, part), {n: g.asnumpy().copy() for n, g in single.gradients(names).items()}))
    assert float(loss.asscalar()) == pytest.approx((halves[0][0] + halves[1][0]) / 2, rel=1e-12)
    for name in names:
        np.testing.assert_allclose(got[name], (halves[0][1][name] + halves[1][1][name]) / 2, rtol=1e-10, atol=1e-14)


# The search's own configuration: float32 with oneDNN turned off before MXNet runs (a fresh process), against
# float64 with the same weights. (With oneDNN on, MXNet 1.9.1's float32 gradients of this supernet were off by
# factors of 2 to 1e30.)
_FLOAT32 = """
import numpy as np, mxnet as mx
from facekd.search.supernet import Supernet, use_plain_kernels
use_plain_kernels()
from facekd.search.args import parse_args, search_settings
from facekd.search.network import supernet_symbol
args = parse_args(["--data-dir", "d", "--out", "o", "--layers", "3", "--init-channels", "4", "--nodes", "2",
                   "--batch-size", "4", "--emb-size", "8", "--loss", "softmax"])
s = search_settings(args, 5, 100, (16, 16), 1, "d")
sym = supernet_symbol(s)[0]
wide, narrow = (Supernet(sym, [mx.cpu()], 4, (3, 16, 16), dtype=t) for t in ("float64", "float32"))
mx.random.seed(0)
wide.initialize()
narrow.set_params(*wide.get_params(), "float64")
rng = np.random.default_rng(0)
batch = mx.nd.array(rng.uniform(0, 255, (4, 3, 16, 16))), mx.nd.array(rng.integers(0, 5, 4))
worst = 0.0
for net in (wide, narrow):
    net.forward_backward(*batch)
names = wide.weight_names + wide.alpha_names
for n in names:
    a, b = wide.gradients([n])[n].asnumpy(), narrow.gradients([n])[n].asnumpy()
    if np.abs(a).max() > 1e-6:
        worst = max(worst, float(np.abs(a - b).max() / np.abs(a).max()))
print("worst", worst)
"""


def test_float32_without_onednn_matches_float64():
    proc = subprocess.run([sys.executable, "-c", _FLOAT32], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-800:]
    worst = float(proc.stdout.split()[-1])
    assert worst < 1e-3
