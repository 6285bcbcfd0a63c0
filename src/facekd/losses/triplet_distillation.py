"""Triplet distillation (Feng et al., arXiv 1905.04457), L2 and cos variants.

A device batch is three equal blocks A | P | N. With d the distance between
normalised embeddings (squared L2, or arccos of the clipped cosine) and dT the
same distance between the teachers' normalised embeddings (from the soft labels):

    D_i = relu(dT_an − dT_ap),  margin_i = Mmin + (Mmax − Mmin)·D_i / max_j D_j
    L = mean_i relu(d_ap − d_an + margin_i)

margin_i = Mmin when max_j D_j = 0 (the reference divided 0 by 0), and it
carries no gradient.
"""
from ..errors import FaceKDError
from . import common, register_loss



def squared_l2(a, b):
    """||a − b||² per row of two (T x d) symbols."""
    import mxnet as mx

    return mx.sym.sum(mx.sym.square(a - b), axis=1)


def angle(a, b):
    """arccos(clip(a·b)) per row of two row-normalised (T x d) symbols."""
    return common.safe_arccos(common.row_dot(a, b))


def triplet_blocks(x):
    """(anchors, positives, negatives): the three equal row blocks of ``x``, row-normalised."""
    import mxnet as mx

    parts = mx.sym.split(common.l2_normalize(x), num_outputs=3, axis=0)
    return parts[0], parts[1], parts[2]


def adaptive_margin(gap, m_min, m_max):
    """Mmin + (Mmax − Mmin)·gap / max(gap), Mmin where every gap is 0; gap >= 0, no gradient."""
    import mxnet as mx

    largest = mx.sym.maximum(mx.sym.max(gap), common.DIV_FLOOR)
    return mx.sym.BlockGrad(m_min + (m_max - m_min) * mx.sym.broadcast_div(gap, largest))


def triplet_loss(embedding, label, cfg, distance):
    import mxnet as mx

    if common.batch_size(cfg) % 3:
        raise FaceKDError(f"loss {cfg.loss!r} lays each device batch out as anchors|positives|"
                          f"negatives: --per-batch-size {cfg.per_batch_size} must be divisible by 3")
    m_min = float(common.require(cfg, "Mmin", positive=False))
    m_max = float(common.require(cfg, "Mmax", positive=False))
    teacher, _ = common.soft_label(label, cfg)
    a, p, n = triplet_blocks(embedding)
    ta, tp, tn = triplet_blocks(teacher)
    d_ap, d_an = distance(a, p), distance(a, n)
    gap = mx.sym.relu(distance(ta, tn) - distance(ta, tp))
    margin = adaptive_margin(gap, m_min, m_max)
    value = common.batch_mean(mx.sym.relu(d_ap - d_an + margin))
    loss = mx.sym.BlockGrad(value, name="triplet_loss")
    return common.head_outputs([loss], {"acc": common.batch_mean(d_ap < d_an), "lossvalue": value})



@register_loss("triplet_distillation_L2", label="soft", iterator="triplet")
def triplet_distillation_l2(embedding, label, cfg):
    return triplet_loss(embedding, label, cfg, squared_l2)


@register_loss("triplet_distillation_cos", label="soft", iterator="triplet")
def triplet_distillation_cos(embedding, label, cfg):
    return triplet_loss(embedding, label, cfg, angle)
