"""FaceSGD: MXNet's SGD with momentum; tensors of >= LARGE_TENSOR elements take the threaded kernel."""
import mxnet as mx
import numpy as np
import pytest

from facekd.training import optimizer
from facekd.training.optimizer import LARGE_TENSOR, FaceSGD

LR, MOMENTUM, WD, RESCALE = 0.1, 0.9, 5e-4, 0.5
# names ending in _weight or _gamma: MXNet gives other parameters no weight decay
SHAPES = {"big_weight": (LARGE_TENSOR // 256, 256), "small_weight": (7, 5), "vec_gamma": (11,)}


class Spy(FaceSGD):
    """Counts the tensors updated through the single-tensor path."""

    large_updates = 0

    def _update_large(self, *args):
        Spy.large_updates += 1
        super()._update_large(*args)


def reference_steps(w, grads, lr, clip=None):
    """float64 NumPy: mom = μ·mom − lr·(rescale·clip(g) + wd·w); w += mom, for each gradient."""
    w, mom = w.astype(np.float64), np.zeros(w.shape)
    for g in grads:
        g = RESCALE * g.astype(np.float64)
        if clip is not None:
            g = np.clip(g, -clip, clip)
        mom = MOMENTUM * mom - lr * (g + WD * w)
        w = w + mom
    return w


def run(opt_cls, steps=3, aggregate=True, clip=None, lr_mult=None):
    rng = np.random.default_rng(0)
    names = sorted(SHAPES)
    init = {n: rng.standard_normal(SHAPES[n]).astype(np.float32) for n in names}
    grads = [{n: rng.standard_normal(SHAPES[n]).astype(np.float32) for n in names} for _ in range(steps)]
    opt = opt_cls(learning_rate=LR, momentum=MOMENTUM, wd=WD, rescale_grad=RESCALE, clip_gradient=clip,
                  param_idx2name=dict(enumerate(names)))
    if lr_mult:
        opt.set_lr_mult(lr_mult)
    updater = mx.optimizer.get_updater(opt)
    weights = [mx.nd.array(init[n]) for n in names]
    for step in grads:
        g = [mx.nd.array(step[n]) for n in names]
        if aggregate:  # Module without a kvstore: one call with every parameter
            updater(list(range(len(names))), g, weights)
        else:  # a local kvstore: one call per key
            for i in range(len(names)):
                updater(i, g[i], weights[i])
    return {n: w.asnumpy() for n, w in zip(names, weights)}, init, grads


@pytest.mark.parametrize("aggregate", [True, False])
def test_matches_numpy_and_mxnet_sgd(aggregate):
    Spy.large_updates = 0
    ours, init, grads = run(Spy, aggregate=aggregate)
    assert Spy.large_updates == 3  # the big tensor, once a step
    theirs, _, _ = run(mx.optimizer.SGD, aggregate=aggregate)
    for name in SHAPES:
        expected = reference_steps(init[name], [g[name] for g in grads], LR)
        np.testing.assert_allclose(ours[name], expected, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(ours[name], theirs[name], rtol=1e-6, atol=1e-7)


def test_clip_and_lr_mult_apply_to_large_tensors():
    ours, init, grads = run(FaceSGD, clip=0.3, lr_mult={"big_weight": 0.25})
    big = reference_steps(init["big_weight"], [g["big_weight"] for g in grads], LR * 0.25, clip=0.3)
    small = reference_steps(init["small_weight"], [g["small_weight"] for g in grads], LR, clip=0.3)
    np.testing.assert_allclose(ours["big_weight"], big, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ours["small_weight"], small, rtol=1e-5, atol=1e-6)


def test_lr_mult_zero_keeps_a_large_tensor():
    ours, init, _ = run(FaceSGD, lr_mult={"big_weight": 0.0})
    np.testing.assert_array_equal(ours["big_weight"], init["big_weight"])


def module(contexts):
    data = mx.sym.Variable("data")
    out = mx.sym.MakeLoss(mx.sym.mean(mx.sym.FullyConnected(data, num_hidden=3, name="fc")))
    mod = mx.mod.Module(out, data_names=["data"], label_names=None, context=contexts)
    mod.bind(data_shapes=[("data", (4, 5))], for_training=True)
    mod.init_params(mx.init.Xavier())
    return mod


def test_init_sgd_uses_the_kvstore_only_with_several_devices():
    one = module([mx.cpu(0)])
    optimizer.init_sgd(one, mx.kvstore.create("device"), 1, learning_rate=0.1)
    assert one._kvstore is None and isinstance(one._optimizer, FaceSGD)
    two = module([mx.cpu(0), mx.cpu(1)])
    optimizer.init_sgd(two, mx.kvstore.create("device"), 2, learning_rate=0.1)
    assert two._kvstore is not None and two._update_on_kvstore
    assert isinstance(two._optimizer, FaceSGD)
