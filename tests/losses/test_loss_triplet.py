"""triplet_distillation_L2 / _cos: A | P | N blocks, teacher-adaptive margins."""
import numpy as np
import pytest

import loss_reference as ref
from facekd.errors import FaceKDError
from facekd.losses import get_loss
from loss_harness import EMB, assert_close, differs, f32, make_cfg, run_head, soft_labels

KINDS = {"triplet_distillation_L2": "L2", "triplet_distillation_cos": "cos"}
TRIPLETS = 3


def triplet_batch(seed, teacher_dim):
    rng = np.random.default_rng(seed)
    e = rng.standard_normal((3 * TRIPLETS, EMB))
    t = rng.standard_normal((3 * TRIPLETS, teacher_dim))
    y = np.r_[np.arange(TRIPLETS), np.arange(TRIPLETS), np.arange(TRIPLETS) + 5]
    return e, t, y


def triplet_cfg(loss, **kw):
    return make_cfg(loss, **{"per_batch_size": 3 * TRIPLETS, **kw})


@pytest.mark.parametrize("loss", sorted(KINDS))
def test_registration(loss):
    spec = get_loss(loss)
    assert (spec.label, spec.iterator, spec.needs_teacher_dim) == ("soft", "triplet", False)
    cfg = make_cfg(loss)
    assert (cfg.Mmin, cfg.Mmax) == (0.2, 0.5)


@pytest.mark.parametrize("loss", sorted(KINDS))
@pytest.mark.parametrize("teacher_dim", [EMB, 5])
def test_value_gradient_and_metrics(loss, teacher_dim):
    kind = KINDS[loss]
    e, t, y = triplet_batch(seed=21, teacher_dim=teacher_dim)
    cfg = triplet_cfg(loss, teacher_dim=teacher_dim)
    outs, grads, values = run_head(cfg, f32(e), soft_labels(t, y))

    def f(x):
        return ref.triplet_loss(x, t, kind, 0.2, 0.5)

    d_ap, d_an = ref.triplet_distances(e, kind)
    hinge = d_ap - d_an + ref.triplet_margins(t, kind, 0.2, 0.5)
    assert np.all(np.abs(hinge) > 1e-3) and np.any(hinge > 0)  # away from the kink, loss active
    assert_close(values["lossvalue"], f(e))
    assert values["acc"] == pytest.approx(np.mean(d_ap < d_an))
    assert_close(grads["data"], ref.numeric_grad(f, e))
    assert differs(values["lossvalue"], ref.triplet_loss(e, t, kind, 0.2, 0.45))  # a wrong Mmax is caught
    assert differs(grads["data"], ref.numeric_grad(lambda x: TRIPLETS * f(x), e))  # a sum, not a mean


@pytest.mark.parametrize("loss", sorted(KINDS))
def test_all_teacher_gaps_zero_gives_min_margin(loss):
    kind = KINDS[loss]
    e, t, y = triplet_batch(seed=22, teacher_dim=EMB)
    t[2 * TRIPLETS:] = t[TRIPLETS:2 * TRIPLETS]  # teacher negatives == teacher positives: every gap 0
    _, grads, values = run_head(triplet_cfg(loss), f32(e), soft_labels(t, y))
    assert np.all(ref.triplet_margins(t, kind, 0.2, 0.5) == 0.2)
    f = lambda x: ref.triplet_loss(x, t, kind, 0.2, 0.5)  # noqa: E731
    assert np.isfinite(values["lossvalue"]) and np.all(np.isfinite(grads["data"]))
    assert_close(values["lossvalue"], f(e))
    assert_close(grads["data"], ref.numeric_grad(f, e))


@pytest.mark.parametrize("loss", sorted(KINDS))
def test_identical_anchor_and_positive_is_finite(loss):
    e, t, y = triplet_batch(seed=23, teacher_dim=EMB)
    e[TRIPLETS:2 * TRIPLETS] = e[:TRIPLETS]  # d_ap = 0 (cos = 1 for the arccos variant)
    t[TRIPLETS:2 * TRIPLETS] = t[:TRIPLETS]
    _, grads, values = run_head(triplet_cfg(loss), f32(e), soft_labels(t, y))
    assert np.isfinite(values["lossvalue"]) and np.all(np.isfinite(grads["data"]))
    assert_close(values["lossvalue"], ref.triplet_loss(e, t, KINDS[loss], 0.2, 0.5), atol=1e-5)


def test_batch_not_divisible_by_three_is_a_clear_error():
    cfg = triplet_cfg("triplet_distillation_L2", per_batch_size=8)
    with pytest.raises(FaceKDError, match="per-batch-size 8"):
        run_head(cfg, f32(np.ones((8, EMB))), f32(np.ones((8, EMB + 1))))
