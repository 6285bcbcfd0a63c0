"""softmax, nsoftmax, arcface, cosface, combined against float64 NumPy references."""
import math

import mxnet as mx
import numpy as np
import pytest

import loss_reference as ref
from facekd.errors import FaceKDError
from facekd.losses import get_loss
from facekd.losses.margin import margin_target
from loss_harness import KERNELS, assert_close, differs, f32, face_batch, kernel, make_cfg, run_head

MARGINS = {"nsoftmax": (64, 1, 0, 0), "arcface": (64, 1, 0.5, 0), "cosface": (64, 1, 0, 0.35),
           "combined": (64, 1, 0.3, 0.2)}


@pytest.mark.parametrize("loss", sorted(MARGINS))
def test_config_constants_match_spec(loss):
    cfg = make_cfg(loss)
    assert (cfg.loss_s, cfg.loss_m1, cfg.loss_m2, cfg.loss_m3) == MARGINS[loss]
    spec = get_loss(loss)
    assert (spec.label, spec.teacher_centres, spec.iterator) == ("hard", None, "face")


@pytest.mark.parametrize("native", KERNELS)
@pytest.mark.parametrize("loss", sorted(MARGINS))
def test_margin_softmax_value_gradients_and_metrics(loss, native):
    s, m1, m2, m3 = MARGINS[loss]
    w, _, y, e, _ = face_batch(seed=1)
    outs, grads, values = run_head(make_cfg(loss, native_unit_rows=kernel(native)), f32(e), f32(y), {"fc7_weight": f32(w)},
                                   grads=("data", "fc7_weight"))

    def f(x):
        return ref.margin_loss(x, w, y, s, m1, m2, m3)

    logits = ref.margin_logits(e, ref.normalize(w), y, s, m1, m2, m3)
    assert_close(values["lossvalue"], f(e))
    assert values["acc"] == pytest.approx(ref.accuracy(logits, y))
    assert_close(outs[1], np.exp(ref.log_softmax(logits)))
    assert_close(grads["data"], ref.numeric_grad(f, e))
    assert_close(grads["fc7_weight"], ref.numeric_grad(lambda v: ref.margin_loss(e, v, y, s, m1, m2, m3), w))
    assert_close(outs[0], e)  # output 0: the embedding


def test_wrong_margin_would_be_detected():
    w, _, y, e, _ = face_batch(seed=2)
    _, grads, values = run_head(make_cfg("arcface"), f32(e), f32(y), {"fc7_weight": f32(w)})
    wrong = ref.numeric_grad(lambda x: ref.margin_loss(x, w, y, 64, 1, 0.45, 0), e)
    assert differs(grads["data"], wrong)
    assert differs(values["lossvalue"], ref.margin_loss(e, w, y, 64, 1, 0.45, 0))


def test_plain_softmax_with_bias():
    w, _, y, e, _ = face_batch(seed=3)
    b = np.linspace(-1, 1, len(w))
    cfg = make_cfg("softmax")
    _, grads, values = run_head(cfg, f32(e), f32(y), {"fc7_weight": f32(w), "fc7_bias": f32(b)},
                                grads=("data", "fc7_weight", "fc7_bias"))
    assert_close(values["lossvalue"], ref.softmax_loss(e, w, b, y))
    assert values["acc"] == pytest.approx(ref.accuracy(e @ w.T + b, y))
    assert_close(grads["data"], ref.numeric_grad(lambda x: ref.softmax_loss(x, w, b, y), e))
    assert_close(grads["fc7_weight"], ref.numeric_grad(lambda v: ref.softmax_loss(e, v, b, y), w))
    assert_close(grads["fc7_bias"], ref.numeric_grad(lambda v: ref.softmax_loss(e, w, v, y), b))
    cfg.fc7_no_bias = True
    _, grads, values = run_head(cfg, f32(e), f32(y), {"fc7_weight": f32(w)})
    assert_close(values["lossvalue"], ref.softmax_loss(e, w, 0.0, y))


def test_class_centre_variable_attributes():
    cfg = make_cfg("arcface", fc7_lr_mult=3.0, fc7_wd_mult=0.5)
    sym = get_loss("arcface").build(mx.sym.Variable("data"), mx.sym.Variable("softmax_label"), cfg)
    attrs = mx.sym.Group(sym).attr_dict()["fc7_weight"]
    assert float(attrs["__lr_mult__"]) == 3.0 and float(attrs["__wd_mult__"]) == 0.5
    assert "normal" in attrs["__init__"] and "0.01" in attrs["__init__"]
    assert attrs["__shape__"] == "(10, 8)"


def test_missing_class_count_is_a_clear_error():
    with pytest.raises(FaceKDError, match="num_classes"):
        run_head(make_cfg("arcface", num_classes=0), f32(np.ones((6, 8))), f32(np.zeros(6)))


def _target(cos, m1, m2, m3):
    sym = margin_target(mx.sym.Variable("c"), m1, m2, m3)
    return sym.eval(ctx=mx.cpu(), c=mx.nd.array(cos))[0].asnumpy().astype(np.float64)


@pytest.mark.parametrize("m1,m2,m3", [(1, 0.5, 0), (1, 0.3, 0.2), (1, 0, 0.35), (1.5, 0.2, 0.1)])
def test_target_guard(m1, m2, m3):
    theta = np.linspace(0, math.pi, 2001)
    cos = np.cos(theta)
    target = _target(cos, m1, m2, m3)
    assert np.all(np.isfinite(target))
    assert np.all(np.diff(target) <= 1e-6)  # decreasing in θ
    assert np.all(target <= cos - m3 + 1e-6)  # the margin never raises the logit
    assert np.abs(np.diff(target)).max() < 0.01  # continuous (no jump at θ + m = π)
    normal = (m1 * theta + m2 < math.pi - 1e-3) & (np.abs(cos) < 1 - 1e-5)
    assert_close(target[normal], ref.unguarded_target(cos[normal], m1, m2, m3), rtol=1e-5)
    assert_close(target, ref.margin_target(cos, m1, m2, m3), rtol=1e-5)


def test_target_fallback_is_what_unguarded_formula_gets_wrong():
    cos = np.array([-0.99])  # θ = 3.0, θ + 0.5 > π: cos(θ + m) would exceed cos θ
    assert ref.unguarded_target(cos, 1, 0.5, 0)[0] > cos[0]
    assert _target(cos, 1, 0.5, 0)[0] < cos[0]


def test_embedding_on_its_centre_is_finite():
    w, _, y, e, _ = face_batch(seed=4)
    e = w[y] * 2.5  # cos θ = 1 (up to float32 rounding, possibly above 1)
    _, grads, values = run_head(make_cfg("arcface"), f32(e), f32(y), {"fc7_weight": f32(w)},
                                grads=("data", "fc7_weight"))
    assert np.isfinite(values["lossvalue"]) and np.all(np.isfinite(grads["data"]))
    assert np.all(np.isfinite(grads["fc7_weight"]))
    assert_close(values["lossvalue"], ref.margin_loss(e, w, y, 64, 1, 0.5, 0), atol=1e-6)


@pytest.mark.parametrize("s", [64.0, 16.0])
def test_theta_plus_margin_beyond_pi(s):
    w, _, y, e, _ = face_batch(seed=5)
    wn = ref.normalize(w)
    e = -2.0 * wn[y] + 0.3 * np.random.default_rng(0).standard_normal(e.shape)  # θ near π
    theta = np.arccos(np.sum(ref.normalize(e) * wn[y], axis=1))
    assert np.all(theta + 0.5 > math.pi)
    _, grads, values = run_head(make_cfg("arcface", loss_s=s), f32(e), f32(y), {"fc7_weight": f32(w)})
    f = lambda x: ref.margin_loss(x, w, y, s, 1, 0.5, 0)  # noqa: E731
    assert_close(grads["data"], ref.numeric_grad(f, e))
    if f(e) < 80:
        assert_close(values["lossvalue"], f(e))
    else:  # the printed value saturates where the target probability underflows float32
        assert 80 < values["lossvalue"] <= -math.log(1e-37) + 1e-3
