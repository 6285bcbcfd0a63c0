"""Partial FC heads (--sample-ratio): the same heads on a sampled subset of the class centres,
against float64 NumPy sampled-softmax references given the same sampled set."""
import mxnet as mx
import numpy as np
import pytest

import loss_reference as ref
from facekd.errors import FaceKDError
from facekd.losses import LOSSES, build_head, get_loss
from facekd.losses.partial_fc import SAMPLE, head_classes, sample_size
from loss_harness import (BATCH, KERNELS, NUM_CLASSES, assert_close, differs, f32, face_batch, kernel, make_cfg,
                          run_head, soft_labels)

S, M = 64.0, 0.5
RATIO = 0.8  # 8 of the 10 classes: the 6 of the batch and 2 others
MARGINS = {"nsoftmax": (1, 0, 0), "arcface": (1, 0.5, 0), "cosface": (1, 0, 0.35), "combined": (1, 0.3, 0.2)}
SAMPLED = sorted(MARGINS) + ["angular_distillation", "margin_base_with_T", "margin_distillation", "template_kd"]


def sample_for(y, seed, ratio=RATIO):
    """A sorted sample holding every class of ``y`` plus random others, and y's positions in it."""
    rng = np.random.default_rng(seed)
    k = sample_size(NUM_CLASSES, ratio)
    others = rng.permutation(np.setdiff1d(np.arange(NUM_CLASSES), y))[:k - len(set(y))]
    sample = np.sort(np.concatenate([np.unique(y), others]))
    return sample, np.searchsorted(sample, y)


def test_registry_says_which_heads_sample():
    assert sorted(n for n in LOSSES.names() if get_loss(n).samples_centres) == sorted(SAMPLED)


@pytest.mark.parametrize("loss", SAMPLED)
def test_ratio_one_is_exactly_the_full_head(loss):
    """At r = 1 the graph is today's, node for node: loss, gradients and updates are the full head's."""
    def graph(ratio):
        cfg = make_cfg(loss)
        if ratio is None:
            del cfg["sample_ratio"]  # a configuration from before the flag existed
        else:
            cfg.sample_ratio = ratio
        with mx.name.NameManager():  # the same automatic node names in every graph
            return build_head(mx.sym.Variable("data"), mx.sym.Variable("softmax_label"), cfg)

    full = graph(None)
    assert make_cfg(loss)["sample_ratio"] == 1.0  # the default (config.default)
    assert graph(1.0).tojson() == full.tojson()
    assert SAMPLE not in full.list_arguments()
    assert SAMPLE in graph(0.5).list_arguments() and graph(0.5).tojson() != full.tojson()


@pytest.mark.parametrize("native", KERNELS)
@pytest.mark.parametrize("loss", sorted(MARGINS))
def test_margin_heads_match_the_sampled_softmax_reference(loss, native):
    m1, m2, m3 = MARGINS[loss]
    w, _, y, e, _ = face_batch(seed=51)
    sample, pos = sample_for(y, seed=1)
    cfg = make_cfg(loss, sample_ratio=RATIO, native_unit_rows=kernel(native))
    outs, grads, values = run_head(cfg, f32(e), f32(pos),
                                   {"fc7_weight": f32(w), SAMPLE: f32(sample)}, grads=("data", "fc7_weight"))

    def f(x, v=w, s=sample):
        return ref.sampled_margin_loss(x, v, y, s, S, m1, m2, m3)

    logits = ref.restrict(ref.margin_logits(e, ref.normalize(w), y, S, m1, m2, m3), sample)
    assert_close(values["lossvalue"], f(e))
    assert values["acc"] == pytest.approx(ref.accuracy(logits, y))
    assert_close(outs[1], np.exp(ref.log_softmax(logits))[:, sample])  # probabilities over the sample
    assert_close(grads["data"], ref.numeric_grad(f, e))
    expected_w = ref.numeric_grad(lambda v: f(e, v), w)
    assert_close(grads["fc7_weight"], expected_w)
    outside = np.setdiff1d(np.arange(NUM_CLASSES), sample)
    assert not grads["fc7_weight"][outside].any() and not expected_w[outside].any()
    # the full softmax, or another sample, would be caught
    assert differs(values["lossvalue"], ref.margin_loss(e, w, y, S, m1, m2, m3))
    other, _ = sample_for(y, seed=2)
    assert not np.array_equal(other, sample)
    assert differs(grads["data"], ref.numeric_grad(lambda x: f(x, s=other), e))


@pytest.mark.parametrize("loss,key,weight,reference", [
    ("angular_distillation", "alpha", 1.0, ref.sampled_angular_loss),
    ("template_kd", "kd_lambda", 100.0, ref.sampled_template_loss)])
@pytest.mark.parametrize("native", KERNELS)
def test_embedding_kd_heads_match_the_reference(loss, key, weight, reference, native):
    w, _, y, e, t = face_batch(seed=52)
    sample, pos = sample_for(y, seed=3)
    cfg = make_cfg(loss, sample_ratio=RATIO, native_unit_rows=kernel(native), **{key: weight})
    _, grads, values = run_head(cfg, f32(e), soft_labels(t, pos),
                                {"fc7_weight": f32(w), SAMPLE: f32(sample)}, grads=("data", "fc7_weight"))

    def f(x, v=w):
        return reference(x, v, t, y, sample, S, M, weight)

    assert_close(values["lossvalue"], f(e))
    assert_close(values["cos"], ref.one_minus_cos(e, t))
    assert_close(grads["data"], ref.numeric_grad(f, e))
    assert_close(grads["fc7_weight"], ref.numeric_grad(lambda v: f(e, v), w))


def test_margin_base_with_t_samples_student_and_teacher_alike():
    w, wt, y, e, t = face_batch(seed=53)
    sample, pos = sample_for(y, seed=4)
    _, grads, values = run_head(make_cfg("margin_base_with_T", sample_ratio=RATIO), f32(e), soft_labels(t, pos),
                                {"fc7_weight": f32(w), "teacher_fc7_weight": f32(wt), SAMPLE: f32(sample)},
                                grads=("data", "fc7_weight"))

    def f(x, v=w, teacher=wt):
        return ref.sampled_kd_loss(x, v, t, teacher, y, sample, S, M, 4.0, 0.95)

    assert_close(values["lossvalue"], f(e))
    assert_close(grads["data"], ref.numeric_grad(f, e))
    assert_close(grads["fc7_weight"], ref.numeric_grad(lambda v: f(e, v), w))
    # the teacher's rows are sampled with the same ids: other teacher rows would change the gradient
    shuffled = wt.copy()
    shuffled[sample] = np.roll(wt[sample], 1, axis=0)
    assert differs(grads["data"], ref.numeric_grad(lambda x: f(x, teacher=shuffled), e))


def test_margin_distillation_margins_come_from_the_positive_centres():
    _, wt, y, e, t = face_batch(seed=54)
    e = 3 * wt[y] + np.random.default_rng(5).standard_normal(e.shape)
    sample, pos = sample_for(y, seed=6)
    _, grads, values = run_head(make_cfg("margin_distillation", sample_ratio=RATIO), f32(e), soft_labels(t, pos),
                                {"fc7_weight": f32(wt), SAMPLE: f32(sample)}, grads=("data",))

    def f(x):
        return ref.sampled_margin_distillation_loss(x, wt, t, y, sample, S, 0.2, 0.5)

    assert_close(values["lossvalue"], f(e))
    assert_close(values["cos"], ref.one_minus_cos(e, t))
    assert_close(grads["data"], ref.numeric_grad(f, e))
    assert differs(values["lossvalue"], ref.margin_distillation_loss(e, wt, t, y, S, 0.2, 0.5))  # full softmax


def test_every_class_sampled_equals_the_full_head():
    """round(0.96 x 10) = 10: the sampled path over all classes gives the full head's numbers."""
    w, _, y, e, _ = face_batch(seed=55)
    assert sample_size(NUM_CLASSES, 0.96) == NUM_CLASSES
    full = run_head(make_cfg("arcface"), f32(e), f32(y), {"fc7_weight": f32(w)}, grads=("data", "fc7_weight"))
    sampled = run_head(make_cfg("arcface", sample_ratio=0.96), f32(e), f32(y),
                       {"fc7_weight": f32(w), SAMPLE: f32(np.arange(NUM_CLASSES))}, grads=("data", "fc7_weight"))
    assert_close(sampled[2]["lossvalue"], full[2]["lossvalue"], rtol=1e-6)
    for name in ("data", "fc7_weight"):
        assert_close(sampled[1][name], full[1][name], rtol=1e-5)


def test_the_centre_gradient_is_row_sparse_over_the_sample():
    w, _, y, e, _ = face_batch(seed=56)
    sample, pos = sample_for(y, seed=7)
    cfg = make_cfg("arcface", sample_ratio=RATIO)
    sym = build_head(mx.sym.Variable("data"), mx.sym.Variable("softmax_label"), cfg)
    assert head_classes(cfg) == len(sample) == 8
    ex = sym.simple_bind(mx.cpu(), grad_req={n: "write" if n == "fc7_weight" else "null" for n in sym.list_arguments()},
                         data=e.shape, softmax_label=(BATCH,), fc7_weight=w.shape)
    for name, value in (("data", e), ("softmax_label", pos), ("fc7_weight", w), (SAMPLE, sample)):
        ex.arg_dict[name][:] = f32(value)
    ex.forward(is_train=True)
    ex.backward()
    grad = ex.grad_dict["fc7_weight"]
    assert grad.stype == "row_sparse"
    np.testing.assert_array_equal(grad.indices.asnumpy(), sample)


@pytest.mark.parametrize("loss", ["softmax", "triplet_distillation_L2", "triplet_distillation_cos"])
def test_heads_without_class_centres_to_sample_refuse_the_flag(loss):
    with pytest.raises(FaceKDError, match=rf"--sample-ratio 0.5 samples class centres, but --loss {loss} has no "
                                          r"margin-softmax class-centre matrix .*drop --sample-ratio .*arcface"):
        build_head(mx.sym.Variable("data"), mx.sym.Variable("softmax_label"), make_cfg(loss, sample_ratio=0.5))
    build_head(mx.sym.Variable("data"), mx.sym.Variable("softmax_label"), make_cfg(loss, sample_ratio=1.0))
