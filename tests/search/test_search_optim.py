"""The search's optimisers and schedule against their formulas (NumPy)."""
import math

import mxnet as mx
import numpy as np
import pytest

from facekd.search.optim import Adam, MomentumSGD, clip_scale, cosine_lr, global_norm


def test_cosine_lr_from_lr_to_lr_min():
    assert cosine_lr(0, 50, 0.1, 0.004) == pytest.approx(0.1)
    assert cosine_lr(25, 50, 0.1, 0.004) == pytest.approx(0.052)
    assert cosine_lr(49, 50, 0.1, 0.004) == pytest.approx(0.004 + 0.048 * (1 + math.cos(math.pi * 49 / 50)))
    assert all(cosine_lr(e, 50, 0.1, 0.004) > cosine_lr(e + 1, 50, 0.1, 0.004) for e in range(49))


def test_global_norm_and_clip_scale():
    rng = np.random.default_rng(0)
    grads = {"a": rng.normal(size=(3, 4)), "b": rng.normal(size=7)}
    norm = global_norm({k: mx.nd.array(v) for k, v in grads.items()})
    assert norm == pytest.approx(math.sqrt(sum((v ** 2).sum() for v in grads.values())), rel=1e-6)
    assert clip_scale(10.0, 5.0) == pytest.approx(0.5, rel=1e-6)
    assert clip_scale(4.0, 5.0) == 1.0 and clip_scale(10.0, 0.0) == 1.0


def test_momentum_sgd_follows_its_formula():
    rng = np.random.default_rng(1)
    w0, grads = rng.normal(size=(4, 3)), [rng.normal(size=(4, 3)) for _ in range(3)]
    weight = mx.nd.array(w0)
    opt = MomentumSGD(momentum=0.9, wd=3e-4)
    w, v = w0.copy(), np.zeros_like(w0)
    for step, (g, lr, scale) in enumerate(zip(grads, (0.1, 0.08, 0.05), (1.0, 0.5, 1.0))):
        opt.update({"w": weight}, {"w": mx.nd.array(g)}, lr, rescale=scale)
        v = 0.9 * v - lr * (scale * g + 3e-4 * w)
        w = w + v
        np.testing.assert_allclose(weight.asnumpy(), w, rtol=1e-5, atol=1e-6)
    restored = MomentumSGD(0.9, 3e-4)
    restored.load_state_arrays({k: v.copy() for k, v in opt.state_arrays().items()}, {"w": weight})
    np.testing.assert_allclose(restored.states["w"].asnumpy(), v, rtol=1e-5, atol=1e-6)


def test_adam_follows_the_bias_corrected_formula():
    rng = np.random.default_rng(2)
    a0, grads = rng.normal(size=(14, 8)) * 1e-3, [rng.normal(size=(14, 8)) for _ in range(4)]
    alpha = mx.nd.array(a0)
    lr, b1, b2, wd, eps = 12e-4, 0.5, 0.999, 1e-3, 1e-8
    opt = Adam(lr, b1, b2, wd, eps)
    a, m, v = a0.copy(), np.zeros_like(a0), np.zeros_like(a0)
    for t, g in enumerate(grads, start=1):
        opt.update({"alpha": alpha}, {"alpha": mx.nd.array(g)})
        g = g + wd * a  # L2 weight decay into the gradient (PyTorch's Adam, as DARTS uses it)
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        a = a - lr * (m / (1 - b1 ** t)) / (np.sqrt(v / (1 - b2 ** t)) + eps)
        np.testing.assert_allclose(alpha.asnumpy(), a, rtol=1e-5, atol=1e-7)
    assert opt.steps == 4
    restored = Adam(lr, b1, b2, wd, eps)
    restored.load_state_arrays(opt.state_arrays(), {"alpha": alpha}, opt.steps)
    assert restored.steps == 4
    np.testing.assert_allclose(restored.states["alpha"][1].asnumpy(), v, rtol=1e-4)
