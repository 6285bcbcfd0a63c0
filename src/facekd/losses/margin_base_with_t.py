"""Margin-based knowledge distillation with temperature (Nekhaev et al., SPIE 11433, 2020).

z^s: arcface logits of the student on its own trainable ``fc7_weight``;
z^t: the same margin formula on the teacher's normalised embedding (soft label)
and the teacher's row-normalised, frozen ``teacher_fc7_weight``.

    L = (1 − α)·CE(z^s, y) + α·T²·KL(softmax(z^t/T) || softmax(z^s/T))

The KD term is a SoftmaxOutput on z^s/T whose label is the (BlockGrad'ed)
probability matrix softmax(z^t/T). MXNet ignores ``normalization`` when the
label is a distribution (its gradient is grad_scale·(p − q), not divided by
B), so the weight is α·T²/B with B = per_batch_size; the graph is pinned to
that batch size so a different binding fails instead of mis-scaling. The
chain through z^s/T supplies the remaining 1/T: dL/dz^s = α·T·(p − q)/B.
"""
from . import common, register_loss
from .margin import classification, margin_config, margin_logits, student_margin_logits
from .metrics import monitor_metrics

MONITORS = ("acc", "lossvalue", "cos")
CENTRES = "teacher_fc7_weight"


def metrics(cfg):
    return monitor_metrics(2, MONITORS)


def kl_divergence(target_prob, prob):
    """Mean over rows of KL(target || prob) from two probability matrices (monitor only)."""
    import mxnet as mx

    def log(x):
        return mx.sym.log(mx.sym.maximum(x, common.PROB_FLOOR))

    return common.batch_mean(mx.sym.sum(target_prob * (log(target_prob) - log(prob)), axis=1))


@register_loss("margin_base_with_T", metrics, label="soft", teacher_centres=CENTRES,
               needs_teacher_dim=True)
def margin_base_with_t(embedding, label, cfg):
    import mxnet as mx

    alpha = float(common.require(cfg, "alpha", positive=False))
    temperature = float(common.require(cfg, "T"))
    batch = common.batch_size(cfg)
    num_classes = int(cfg.num_classes)
    s, m1, m2, m3 = margin_config(cfg)
    teacher, cls = common.soft_label(label, cfg)

    unit, student = student_margin_logits(embedding, cls, cfg)
    unit_teacher = common.l2_normalize(teacher)
    teacher_centres = common.frozen_centres(cfg, CENTRES, common.teacher_dim(cfg))
    teacher_logits = margin_logits(unit_teacher, teacher_centres, cls, num_classes, s, m1, m2, m3,
                                   name="teacher_fc7")
    target_prob = mx.sym.BlockGrad(mx.sym.softmax(teacher_logits / temperature, axis=1))

    prob, monitors = classification(student, cls, grad_scale=1.0 - alpha)
    student_t = mx.sym.reshape(student / temperature, shape=(batch, num_classes))
    kd_prob = mx.sym.SoftmaxOutput(student_t, target_prob, grad_scale=alpha * temperature ** 2 / batch,
                                   name="kd_softmax")
    kl = kl_divergence(target_prob, kd_prob)
    monitors["lossvalue"] = (1.0 - alpha) * monitors["lossvalue"] + alpha * temperature ** 2 * kl
    monitors["cos"] = common.mean_one_minus_cos(unit, unit_teacher)
    return common.head_outputs([prob, kd_prob], monitors)
