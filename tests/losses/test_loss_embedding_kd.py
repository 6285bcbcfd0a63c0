"""angular_distillation and template_kd: margin CE plus an embedding-matching term."""
import numpy as np
import pytest

import loss_reference as ref
from facekd.losses import get_loss
from loss_harness import assert_close, differs, f32, face_batch, make_cfg, run_head, soft_labels

CASES = {
    "angular_distillation": ("alpha", 1.0, ref.angular_loss),
    "template_kd": ("kd_lambda", 100.0, ref.template_loss),
}


@pytest.mark.parametrize("loss", sorted(CASES))
def test_registration(loss):
    spec = get_loss(loss)
    assert (spec.label, spec.needs_teacher_dim, spec.teacher_centres) == ("soft", True, None)
    key, weight, _ = CASES[loss]
    assert make_cfg(loss)[key] == weight


@pytest.mark.parametrize("loss", sorted(CASES))
@pytest.mark.parametrize("weight", [None, 0.3])
def test_value_gradient_and_metrics(loss, weight):
    key, default, reference = CASES[loss]
    weight = default if weight is None else weight
    w, _, y, e, t = face_batch(seed=11)
    cfg = make_cfg(loss, **{key: weight})
    outs, grads, values = run_head(cfg, f32(e), soft_labels(t, y), {"fc7_weight": f32(w)},
                                   grads=("data", "fc7_weight"))

    def f(x):
        return reference(x, w, t, y, 64.0, 0.5, weight)

    logits = ref.margin_logits(e, ref.normalize(w), y, 64.0, 1.0, 0.5, 0.0)
    assert_close(values["lossvalue"], f(e))
    assert_close(values["cos"], ref.one_minus_cos(e, t))
    assert values["acc"] == pytest.approx(ref.accuracy(logits, y))
    assert_close(grads["data"], ref.numeric_grad(f, e))
    assert_close(grads["fc7_weight"], ref.numeric_grad(lambda v: reference(e, v, t, y, 64.0, 0.5, weight), w))
    # a different weight would be caught
    assert differs(grads["data"], ref.numeric_grad(lambda x: reference(x, w, t, y, 64.0, 0.5, weight * 1.5), e))


@pytest.mark.parametrize("loss", sorted(CASES))
def test_student_equal_to_teacher_and_centre_is_finite(loss):
    key, weight, reference = CASES[loss]
    w, _, y, _, _ = face_batch(seed=12)
    e = 2.0 * w[y]
    t = 5.0 * w[y]  # cos(student, teacher) = 1 and cos(student, centre) = 1
    _, grads, values = run_head(make_cfg(loss), f32(e), soft_labels(t, y), {"fc7_weight": f32(w)})
    assert np.all(np.isfinite(grads["data"]))
    assert_close(values["lossvalue"], reference(e, w, t, y, 64.0, 0.5, weight), atol=1e-5)
    assert abs(values["cos"]) < 1e-6
