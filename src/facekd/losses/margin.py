"""Margin softmax heads (softmax, nsoftmax, arcface, cosface, combined) and the
margin-logit builder every margin-based method reuses.

Target logit: s·(cos(m1·θ + m2) − m3), other logits s·cos θ. Guards (not in the
reference): cos θ is clipped into [−1+ε, 1−ε] before arccos, and where
m1·θ + m2 > π the target follows the continuous, decreasing fallback
cos θ − cos θ0 − 1 − m3 with θ0 = (π − m2)/m1 (so it never exceeds the
margin-free logit). Elsewhere the value is the unguarded formula.

Cost at 85,742 classes (docs/performance.md): the trainable centres are normalised
by ``facekd_unit_rows`` (``facekd.native``, setting ``native_unit_rows``) where it is
available, else in the (B x C) output, 1/||W_j|| coming from a matrix-vector product,
instead of an ``L2Normalization`` of the (C x d) matrix, whose backward is slow; the
cross-entropy is ``log_softmax`` + ``pick`` instead of ``SoftmaxOutput``.
"""
import math

from .. import native as native_ops
from . import common, partial_fc
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


def apply_margin(logits, cls, num_classes, s, m1=1.0, m2=0.0, m3=0.0):
    """``logits`` (s·cos θ, B x C) with the margin applied to each row's target class."""
    import mxnet as mx

    if m1 == 1.0 and _is_zero(m2) and m3 == 0:
        return logits
    cos_t = mx.sym.pick(logits, cls, axis=1) / s
    target = margin_target(cos_t, m1, m2, m3) * s
    return replace_targets(logits, cls, target, num_classes)


def margin_logits(unit_embedding, unit_centres, cls, num_classes, batch, s, m1=1.0, m2=0.0, m3=0.0,
                  name="fc7"):
    """Margin logits on row-normalised centres (a frozen teacher's, normalised once by the trainer).

    ``unit_embedding`` (B x d, B = ``batch``) and ``unit_centres`` (C x d) must be row-normalised.
    """
    logits = common.class_products(unit_embedding * s, unit_centres, batch, name=name)
    return apply_margin(logits, cls, num_classes, s, m1, m2, m3)


NORM_EPS = 1e-10  # as L2Normalization: ||w|| = sqrt(sum w² + eps)
NATIVE = "native_unit_rows"  # setting: normalise the centres with facekd.native's operator


def cosine_logits(unit_embedding, weight, cls, num_classes, dim, batch, s, name="fc7", native=False):
    """s·ê_i·W_j/||W_j|| (B x C) for a trainable (C x d) ``weight``, value and gradient exact.

    ``native``: the rows are normalised by ``facekd_unit_rows`` (``facekd.native``, CPU), one
    pass over the matrix forward and one backward, and the product is taken with the unit
    rows as the FullyConnected weight, giving (B x C) without a transpose.

    Otherwise, with stock operators only: normalising the (C x d) matrix costs a (C x d)
    temporary forward and a slow backward, so the column scale 1/||W_j|| is applied to the
    (B x C) product instead. ||W_j||² is a matrix-vector product with squares of W, and the
    scale is broadcast over the batch by a rank-one product (ones (B x 1) · scale (1 x C)):
    their gradients are then matrix products too, where a broadcast multiply would reduce
    its gradient with MXNet's slow CPU reduction.
    """
    import mxnet as mx

    num_classes, dim = int(num_classes), int(dim)
    if native:
        unit_centres = native_ops.unit_rows(weight)
        return mx.sym.FullyConnected(unit_embedding * s, unit_centres, no_bias=True, num_hidden=num_classes,
                                     name=name)
    squares = mx.sym.FullyConnected(mx.sym.ones(shape=(1, dim)), mx.sym.square(weight), no_bias=True,
                                    num_hidden=num_classes)
    inverse_norm = mx.sym.reshape(mx.sym.rsqrt(squares + NORM_EPS), shape=(num_classes, 1))
    ones = mx.sym.ones_like(mx.sym.reshape(cls, shape=(-1, 1)))  # (B, 1), no gradient
    column_scale = mx.sym.FullyConnected(ones, inverse_norm, no_bias=True, num_hidden=num_classes)
    raw = common.class_products(unit_embedding * s, weight, batch, name=name)
    return raw * column_scale


def margin_config(cfg):
    """(s, m1, m2, m3) of a config."""
    return (float(common.require(cfg, "loss_s")), float(cfg.get("loss_m1", 1.0)),
            float(cfg.get("loss_m2", 0.0)), float(cfg.get("loss_m3", 0.0)))


def student_margin_logits(embedding, cls, cfg, name="fc7", classes=None):
    """(row-normalised embedding, margin logits on the trainable ``fc7_weight``), over every class
    or over the sampled ones (``classes``: the head's ``partial_fc.HeadClasses``; when sampled,
    ``cls`` holds positions in the sample)."""
    s, m1, m2, m3 = margin_config(cfg)
    classes = classes or partial_fc.HeadClasses(cfg)
    unit = common.l2_normalize(embedding)
    logits = cosine_logits(unit, classes.student(), cls, classes.count, cfg.emb_size,
                           common.batch_size(cfg), s, name=name, native=bool(cfg.get(NATIVE, False)))
    return unit, apply_margin(logits, cls, classes.count, s, m1, m2, m3)


def classification(logits, cls):
    """(probability output (B x C, BlockGrad'ed), mean cross-entropy, accuracy) of ``logits``.

    The cross-entropy is a plain symbol: the head adds it into its objective (the
    ``lossvalue`` monitor, emitted as the MakeLoss), which gives the gradient of
    ``SoftmaxOutput`` (normalization 'valid') for weight 1.
    """
    log_prob = common.log_softmax(logits)
    return (common.probabilities(logits), common.cross_entropy(log_prob, cls),
            common.accuracy(logits, cls))


@register_loss("softmax")
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
    prob, ce, acc = classification(logits, label)
    return common.head_outputs([prob], {"acc": acc, "lossvalue": ce})


@register_loss("nsoftmax", samples_centres=True)
@register_loss("arcface", samples_centres=True)
@register_loss("cosface", samples_centres=True)
@register_loss("combined", samples_centres=True)
def margin_softmax(embedding, label, cfg):
    """Normalised softmax with the (m1, m2, m3) margins of the config (s = loss_s)."""
    _, logits = student_margin_logits(embedding, label, cfg)
    prob, ce, acc = classification(logits, label)
    return common.head_outputs([prob], {"acc": acc, "lossvalue": ce})
