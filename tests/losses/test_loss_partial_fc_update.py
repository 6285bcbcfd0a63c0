"""Partial FC updates: only the sampled rows of fc7_weight and of its momentum move, by MXNet's
lazy SGD, as a float64 NumPy reference computes them; 2 contexts (the kvstore updating, or the
devices updating through RowSumStore) take the steps of 1 context.

The graph is a small FullyConnected layer under the arcface head (no BatchNorm), so that a
batch split over devices has exactly the gradient of the whole batch.
"""
import mxnet as mx
import numpy as np
import pytest

import loss_reference as ref
from loss_harness import KERNELS, kernel
from facekd.config import generate_config
from facekd.losses import build_head, get_loss
from facekd.training import optimizer
from facekd.training.partial_fc import RowSumStore, SampledClasses, class_sampler
from facekd.training.settings import Settings

C, D, IN, B = 40, 8, 5, 8
LR, MOM, WD = 0.5, 0.9, 0.01
S, M = 16.0, 0.5


def config(ratio, batch, native=False):
    cfg = generate_config("y1", "emore", "arcface")
    cfg.update(num_classes=C, emb_size=D, per_batch_size=batch, sample_ratio=ratio, loss_s=S,
               native_unit_rows=native)
    return Settings(cfg)


def bind(ratio, contexts, kv=None, row_sum=True, start=None, native=False):
    """(Module bound and set up as the trainer does, its class sampler, the kvstore)."""
    n = len(contexts)
    cfg = config(ratio, B // n, native)
    kv = kv or mx.kvstore.create("device")
    classes = class_sampler(cfg, get_loss("arcface"), n, kv, seed=11)
    embedding = mx.sym.FullyConnected(mx.sym.Variable("data"), num_hidden=D, no_bias=True, name="fc1")
    module = mx.mod.Module(build_head(embedding, mx.sym.Variable("softmax_label"), cfg), context=contexts,
                           data_names=classes.data_names(["data"]), label_names=["softmax_label"])
    module.bind(data_shapes=classes.data_shapes([mx.io.DataDesc("data", (B, IN))]),
                label_shapes=[mx.io.DataDesc("softmax_label", (B,))], for_training=True)
    module.init_params(arg_params={k: mx.nd.array(v) for k, v in start.items()})
    store = classes.kvstore(kv, n) if row_sum else kv
    optimizer.init_sgd(module, store, n, learning_rate=LR, momentum=MOM, wd=WD, rescale_grad=1.0 / n)
    return module, classes, kv


def start_params(seed=0):
    rng = np.random.default_rng(seed)
    return {"fc1_weight": rng.standard_normal((D, IN)).astype(np.float32),
            "fc7_weight": rng.standard_normal((C, D)).astype(np.float32)}


def batches(steps, seed=1):
    rng = np.random.default_rng(seed)
    return [(rng.standard_normal((B, IN)).astype(np.float32), rng.integers(0, C, B).astype(np.float32))
            for _ in range(steps)]


def train(module, classes, kv, data, contexts=1):
    """Steps over ``data``; returns (weights, fc7 momentum, the samples used)."""
    samples = []
    for step, (x, y) in enumerate(data, start=1):
        batch = classes.prepare(mx.io.DataBatch(data=[mx.nd.array(x)], label=[mx.nd.array(y)]), step)
        samples.append(batch.data[1].asnumpy().astype(np.int64) if len(batch.data) > 1 else np.arange(C))
        module.forward_backward(batch)
        module.update()
    mx.nd.waitall()
    weights = {k: v.asnumpy().astype(np.float64) for k, v in module.get_params()[0].items()}
    states = optimizer.optimizer_state_arrays(module, contexts, kv)
    return weights, states["mom:fc7_weight"].asnumpy().astype(np.float64), samples


def reference_steps(start, data, samples):
    """float64: the sampled-softmax gradient of each step, then lazy SGD on the sampled rows (the
    dense fc1 by plain SGD with momentum), from the method's formulas."""
    w1, w7 = start["fc1_weight"].astype(np.float64), start["fc7_weight"].astype(np.float64)
    m1, m7 = np.zeros_like(w1), np.zeros_like(w7)
    for (x, y), sample in zip(data, samples):
        y = y.astype(np.int64)

        def loss(a, b):
            return ref.sampled_margin_loss(x @ a.T, b, y, sample, S, 1.0, M, 0.0)

        g1, g7 = ref.numeric_grad(lambda a: loss(a, w7), w1), ref.numeric_grad(lambda b: loss(w1, b), w7)
        assert not np.delete(g7, sample, axis=0).any()  # no gradient outside the sample
        m1 = MOM * m1 - LR * (g1 + WD * w1)  # fc1: the dense SGD every row gets
        w1 = w1 + m1
        w7, m7 = ref.lazy_sgd(w7, m7, g7[sample], sample, LR, MOM, WD, 1.0)
    return w1, w7, m7


@pytest.mark.parametrize("native", KERNELS)
@pytest.mark.parametrize("ratio", [0.5, 1.0])
def test_update_is_lazy_sgd_on_the_sampled_rows(ratio, native):
    start, data = start_params(), batches(3)
    module, classes, kv = bind(ratio, [mx.cpu()], start=start, native=kernel(native))
    weights, mom, samples = train(module, classes, kv, data)
    w1, w7, m7 = reference_steps(start, data, samples)
    np.testing.assert_allclose(weights["fc7_weight"], w7, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(mom, m7, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(weights["fc1_weight"], w1, rtol=1e-4, atol=1e-5)
    if ratio < 1:
        assert all(s.size == 20 for s in samples) and not np.array_equal(samples[0], samples[1])
        never = np.setdiff1d(np.arange(C), np.concatenate(samples))
        assert never.size > 0  # rows no step sampled: bit-identical weights, momentum still zero
        np.testing.assert_array_equal(weights["fc7_weight"][never], start["fc7_weight"][never])
        assert not mom[never].any()
        # a row sampled in step 1 and not after keeps its step-1 momentum (no decay, no weight decay)
        first_only = np.setdiff1d(samples[0], np.concatenate(samples[1:]))
        assert first_only.size > 0
        _, w_one, m_one = reference_steps(start, data[:1], samples[:1])
        np.testing.assert_allclose(mom[first_only], m_one[first_only], rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(weights["fc7_weight"][first_only], w_one[first_only], rtol=1e-4, atol=1e-6)
        # the dense update every row would get is not what happened
        dense = start["fc7_weight"] * (1 - LR * WD)
        assert np.abs(weights["fc7_weight"][never] - dense[never]).max() > 1e-4


@pytest.mark.parametrize("native", KERNELS)
@pytest.mark.parametrize("update_on_kvstore", ["1", "0"])
def test_two_contexts_take_the_steps_of_one(update_on_kvstore, native, monkeypatch):
    """"1": the kvstore sums the row_sparse gradients and runs the update; "0": every device updates
    its own copy (as under dist_sync) and RowSumStore sums the rows first."""
    start, data = start_params(), batches(3)
    one = train(*bind(0.5, [mx.cpu()], start=start), data)  # stock operators, one device
    monkeypatch.setenv("MXNET_UPDATE_ON_KVSTORE", update_on_kvstore)
    module, classes, kv = bind(0.5, [mx.cpu(0), mx.cpu(1)], start=start, native=kernel(native))
    assert isinstance(module._kvstore, RowSumStore) == (update_on_kvstore == "0")
    two = train(module, classes, kv, data, contexts=2)
    for a, b in zip(one[2], two[2]):
        np.testing.assert_array_equal(a, b)  # the same samples
    for name in ("fc1_weight", "fc7_weight"):
        np.testing.assert_allclose(two[0][name], one[0][name], rtol=1e-5, atol=1e-6, err_msg=name)
    np.testing.assert_allclose(two[1], one[1], rtol=1e-5, atol=1e-6)


def test_devices_updating_their_own_copies_need_the_row_sum(monkeypatch):
    """Without RowSumStore, Module's pull ignores row_sparse gradients: each device would apply its
    own half of the gradient (what this test would catch if the trainer passed the plain kvstore)."""
    start, data = start_params(), batches(2)
    one = train(*bind(0.5, [mx.cpu()], start=start), data)
    monkeypatch.setenv("MXNET_UPDATE_ON_KVSTORE", "0")
    module, classes, kv = bind(0.5, [mx.cpu(0), mx.cpu(1)], start=start, row_sum=False)
    two = train(module, classes, kv, data, contexts=2)
    assert np.abs(two[0]["fc7_weight"] - one[0]["fc7_weight"]).max() > 1e-3


def test_row_sum_store_is_only_used_where_devices_update():
    cfg, spec = config(0.5, B), get_loss("arcface")
    kv = mx.kvstore.create("device")
    classes = SampledClasses(cfg, spec, 1, kv)
    assert classes.kvstore(kv, 1) is kv  # one device: no kvstore traffic at all
    frozen = SampledClasses(cfg, get_loss("margin_distillation"), 2, kv)
    assert frozen.kvstore(kv, 2) is kv  # margin_distillation's centres are frozen: no gradient to sum
