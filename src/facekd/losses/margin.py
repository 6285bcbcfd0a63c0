"""Margin softmax heads (softmax, nsoftmax, arcface, cosface, combined) and the
margin-logit builder every margin-based method reuses.

Target logit: s·(cos(m1·θ + m2) − m3), other logits s·cos θ. Guards (not in the
reference): cos θ is clipped into [−1+ε, 1−ε] before arccos, and where
m1·θ + m2 > π the target follows the continuous, decreasing fallback
cos θ − cos θ0 − 1 − m3 with θ0 = (π − m2)/m1 (so it never exceeds the
margin-free logit). Elsewhere the value is the unguarded formula.
"""
import math

from . import common
from .metrics import monitor_metrics
from . import register_loss


def _is_zero(x):
    return isinstance(x, (int, float)) and x == 0


def margin_target(cos_t, m1=1.0, m2=0.0, m3=0.0):
    """Margin-adjusted target cosine cos(m1·θ + m2) − m3 of a (B,) symbol of cosines.

    ``m2`` is a number or a (B,) symbol (per-sample margins).
    """
    import mxnet as mx

    if m1 == 1.0 and _is_zero(m2):
        return cos_t - m3 if m3 else cos_t
    theta = common.safe_arccos(cos_t)
    angle = theta * m1 + m2
    normal = mx.sym.cos(angle)
    bound = (math.pi - m2) / m1
    bound_cos = math.cos(bound) if isinstance(bound, (int, float)) else mx.sym.cos(bound)
    fallback = cos_t - bound_cos - 1.0
    target = mx.sym.where(angle > math.pi, fallback, normal)
    return target - m3 if m3 else target


def replace_targets(logits, cls, target, num_classes):
    """``logits`` (B x C) with entry (i, cls_i) replaced by ``target[i]``, without a one-hot matrix.

    The gradient of the replaced entries flows through ``target`` only.
    """
    import mxnet as mx

    rows = mx.sym.cast(mx.sym.contrib.arange_like(cls), dtype="int64")
    flat_index = rows * int(num_classes) + mx.sym.cast(cls, dtype="int64")
    flat = mx.sym.contrib.index_copy(mx.sym.reshape(logits, shape=(-1, 1)), flat_index,
                                     mx.sym.reshape(target, shape=(-1, 1)))
    return mx.sym.reshape(flat, shape=(-1, int(num_classes)))


def margin_logits(unit_embedding, unit_centres, cls, num_classes, s, m1=1.0, m2=0.0, m3=0.0,
                  name="fc7"):
    """Scaled cosine logits s·cos θ (B x C) with the margin applied to each row's target class.

    ``unit_embedding`` (B x d) and ``unit_centres`` (C x d) must be row-normalised.
    """
    import mxnet as mx

    logits = mx.sym.FullyConnected(unit_embedding * s, unit_centres, no_bias=True,
                                   num_hidden=int(num_classes), name=name)
    if m1 == 1.0 and _is_zero(m2) and m3 == 0:
        return logits
    cos_t = mx.sym.pick(logits, cls, axis=1) / s
    target = margin_target(cos_t, m1, m2, m3) * s
    return replace_targets(logits, cls, target, num_classes)


def margin_config(cfg):
    """(s, m1, m2, m3) of a config."""
    return (float(common.require(cfg, "loss_s")), float(cfg.get("loss_m1", 1.0)),
            float(cfg.get("loss_m2", 0.0)), float(cfg.get("loss_m3", 0.0)))


def student_margin_logits(embedding, cls, cfg, name="fc7"):
    """(row-normalised embedding, margin logits on the trainable ``fc7_weight``)."""
    s, m1, m2, m3 = margin_config(cfg)
    unit = common.l2_normalize(embedding)
    centres = common.l2_normalize(common.class_centres(cfg))
    return unit, margin_logits(unit, centres, cls, cfg.num_classes, s, m1, m2, m3, name=name)


def classification(logits, cls, grad_scale=1.0):
    """(softmax output, monitors {acc, lossvalue=mean CE}) of a cross-entropy on ``logits``."""
    prob = common.softmax_ce(logits, cls, grad_scale=grad_scale)
    return prob, {"acc": common.accuracy(prob, cls), "lossvalue": common.cross_entropy(prob, cls)}


MONITORS = ("acc", "lossvalue")


def classification_metrics(cfg):
    return monitor_metrics(1, MONITORS)


@register_loss("softmax", classification_metrics)
def softmax(embedding, label, cfg):
    """Plain softmax: FullyConnected with bias on the unnormalised embedding."""
    import mxnet as mx

    num_classes = int(common.require(cfg, "num_classes"))
    weight = common.class_centres(cfg)
    if cfg.get("fc7_no_bias", False):
        logits = mx.sym.FullyConnected(embedding, weight, no_bias=True, num_hidden=num_classes,
                                       name="fc7")
    else:
        bias = mx.sym.Variable("fc7_bias", lr_mult=2.0, wd_mult=0.0)
        logits = mx.sym.FullyConnected(embedding, weight, bias, num_hidden=num_classes, name="fc7")
    prob, monitors = classification(logits, label)
    return common.head_outputs([prob], monitors)


@register_loss("nsoftmax", classification_metrics)
@register_loss("arcface", classification_metrics)
@register_loss("cosface", classification_metrics)
@register_loss("combined", classification_metrics)
def margin_softmax(embedding, label, cfg):
    """Normalised softmax with the (m1, m2, m3) margins of the config (s = loss_s)."""
    _, logits = student_margin_logits(embedding, label, cfg)
    prob, monitors = classification(logits, label)
    return common.head_outputs([prob], monitors)
