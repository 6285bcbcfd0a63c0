"""margin_base_with_T and margin_distillation: heads that read the teacher's frozen class centres."""
import mxnet as mx
import numpy as np
import pytest

import loss_reference as ref
from facekd.losses import get_loss
from facekd.losses.margin_distillation import sample_margins
from loss_harness import BATCH, assert_close, differs, f32, face_batch, make_cfg, run_head, soft_labels

S, M = 64.0, 0.5


def test_registration():
    mbt, md = get_loss("margin_base_with_T"), get_loss("margin_distillation")
    assert (mbt.label, mbt.teacher_centres, mbt.needs_teacher_dim) == ("soft", "teacher_fc7_weight", True)
    assert (md.label, md.teacher_centres, md.needs_teacher_dim) == ("soft", "fc7_weight", True)
    cfg = make_cfg("margin_base_with_T")
    assert (cfg.T, cfg.alpha, cfg.loss_s, cfg.loss_m2) == (4.0, 0.95, 64.0, 0.5)
    cfg = make_cfg("margin_distillation")
    assert (cfg.loss_s, cfg.Mmin, cfg.Mmax) == (64.0, 0.2, 0.5)


# ----------------------------------------------------------------------------- margin_base_with_T
def run_kd(e, w, t, wt, y, **kw):
    return run_head(make_cfg("margin_base_with_T", **kw), f32(e), soft_labels(t, y),
                    {"fc7_weight": f32(w), "teacher_fc7_weight": f32(wt)},
                    grads=("data", "fc7_weight", "teacher_fc7_weight"))


@pytest.mark.parametrize("temperature,alpha", [(4.0, 0.95), (2.0, 0.5), (1.0, 1.0)])
def test_margin_base_with_t(temperature, alpha):
    w, wt, y, e, t = face_batch(seed=31)
    outs, grads, values = run_kd(e, w, t, wt, y, T=temperature, alpha=alpha)

    def f(x, a=alpha, temp=temperature):
        return ref.kd_loss(x, w, t, wt, y, S, M, temp, a)

    student = ref.margin_logits(e, ref.normalize(w), y, S, 1.0, M, 0.0)
    assert_close(values["lossvalue"], f(e))
    assert_close(values["cos"], ref.one_minus_cos(e, t))
    assert values["acc"] == pytest.approx(ref.accuracy(student, y))
    expected = ref.numeric_grad(f, e)
    assert_close(grads["data"], expected)
    assert_close(grads["fc7_weight"],
                 ref.numeric_grad(lambda v: ref.kd_loss(e, v, t, wt, y, S, M, temperature, alpha), w))
    assert not grads["teacher_fc7_weight"].any()  # frozen
    # the teacher really distils: its centres change the gradient
    rolled = np.roll(wt, 1, axis=0)
    assert differs(grads["data"],
                   ref.numeric_grad(lambda x: ref.kd_loss(x, w, t, rolled, y, S, M, temperature, alpha), e))
    # a wrong weight would be caught: α, T instead of T², or a KD gradient summed over the batch
    assert differs(grads["data"], ref.numeric_grad(lambda x: f(x, a=alpha * 0.9), e))
    kd_part = expected - (1 - alpha) * ref.numeric_grad(lambda x: ref.margin_loss(x, w, y, S, 1, M, 0), e)
    if temperature != 1:
        assert differs(grads["data"], expected - kd_part + kd_part / temperature)
    assert differs(grads["data"], expected + (BATCH - 1) * kd_part)


def test_margin_base_with_t_bound_with_another_batch_fails():
    w, wt, y, e, t = face_batch(seed=32)
    with pytest.raises((mx.base.MXNetError, RuntimeError)):
        run_kd(e[:4], w, t[:4], wt, y[:4])  # per_batch_size is 6


def test_margin_base_with_t_adversarial_is_finite():
    w, wt, y, e, t = face_batch(seed=33)
    e = 2.0 * w[y]  # student on its centre
    e[0] = -e[0]  # and one opposite it (θ + m > π)
    t = 3.0 * wt[y]  # teacher on its centre
    _, grads, values = run_kd(e, w, t, wt, y)
    assert np.isfinite(values["lossvalue"]) and np.all(np.isfinite(grads["data"]))
    assert np.all(np.isfinite(grads["fc7_weight"]))


# ----------------------------------------------------------------------------- margin_distillation
def run_md(e, wt, t, y, **kw):
    # as the trainer binds it: the teacher's centres are a fixed parameter (no gradient)
    return run_head(make_cfg("margin_distillation", **kw), f32(e), soft_labels(t, y),
                    {"fc7_weight": f32(wt)}, grads=("data",))


def check_md(e, wt, t, y, m_min=0.2, m_max=0.5):
    outs, grads, values = run_md(e, wt, t, y, Mmin=m_min, Mmax=m_max)

    def f(x):
        return ref.margin_distillation_loss(x, wt, t, y, S, m_min, m_max)

    logits = ref.margin_distillation_logits(e, wt, t, y, S, m_min, m_max)
    assert_close(values["lossvalue"], f(e))
    assert_close(values["cos"], ref.one_minus_cos(e, t))
    assert values["acc"] == pytest.approx(ref.accuracy(logits, y))
    assert_close(grads["data"], ref.numeric_grad(f, e))
    return values


@pytest.mark.parametrize("loss,centres", [("margin_distillation", "fc7_weight"),
                                          ("margin_base_with_T", "teacher_fc7_weight")])
def test_teacher_centres_have_no_learning_rate_or_decay(loss, centres):
    from facekd.losses import build_head

    sym = build_head(mx.sym.Variable("data"), mx.sym.Variable("softmax_label"), make_cfg(loss))
    attrs = sym.attr_dict()[centres]
    assert float(attrs["__lr_mult__"]) == 0.0 and float(attrs["__wd_mult__"]) == 0.0
    assert get_loss(loss).teacher_centres == centres  # the trainer binds them as fixed parameters


def test_margin_distillation():
    w, wt, y, e, t = face_batch(seed=41)
    e = 3 * wt[y] + np.random.default_rng(0).standard_normal(e.shape)  # the student learns the teacher's centres
    margins = ref.distillation_margins(t, wt, y, 0.2, 0.5)
    assert margins.max() == pytest.approx(0.5) and margins.min() > 0.2
    values = check_md(e, wt, t, y)
    assert differs(values["lossvalue"], ref.margin_distillation_loss(e, wt, t, y, S, 0.2, 0.45))
    assert differs(values["lossvalue"], ref.margin_loss(e, wt, y, S, 1, 0.5, 0))  # margins vary


def test_margin_distillation_negative_teacher_cosines():
    w, wt, y, e, t = face_batch(seed=42)
    e = 3 * wt[y] + np.random.default_rng(1).standard_normal(e.shape)
    t[:2] = -t[:2]  # two teachers point away from their centres: margins clipped at 0
    margins = ref.distillation_margins(t, wt, y, 0.2, 0.5)
    assert np.all(margins[:2] == 0) and margins.max() == pytest.approx(0.5)
    check_md(e, wt, t, y)
    t = -np.abs(t) * np.sign(wt[y])  # every teacher cosine <= 0: Dmax <= 0
    assert np.all(np.sum(t * wt[y], axis=1) <= 0)
    assert np.all(ref.distillation_margins(t, wt, y, 0.2, 0.5) == 0)
    check_md(e, wt, t, y)


def test_margin_distillation_student_on_centre_is_finite():
    w, wt, y, e, t = face_batch(seed=43)
    e = 2.0 * wt[y]
    _, grads, values = run_md(e, wt, t, y)
    assert np.isfinite(values["lossvalue"]) and np.all(np.isfinite(grads["data"]))
    assert_close(values["lossvalue"], ref.margin_distillation_loss(e, wt, t, y, S, 0.2, 0.5), atol=1e-5)


@pytest.mark.parametrize("cos,expected", [
    ([0.8, 0.4, 0.0, -0.3, -0.8], [0.5, 0.35, 0.2, 0.0875, 0.0]),  # Mmin + 0.3·c/0.8, clipped at 0
    ([0.0, 0.0], [0.2, 0.2]),  # Dmax = 0
    ([-0.1, -0.5], [0.0, 0.0]),  # Dmax < 0
])
def test_sample_margins_by_hand(cos, expected):
    sym = sample_margins(mx.sym.Variable("c"), 0.2, 0.5)
    out = sym.eval(ctx=mx.cpu(), c=mx.nd.array(cos))[0].asnumpy()
    np.testing.assert_allclose(out, expected, atol=1e-6)
