"""MarginDistillation (Svitov & Alyamkin, arXiv 2003.02586).

The class centres are the teacher's row-normalised ``fc7_weight`` (frozen). Per sample

    c_i = t̂_i · Ŵ_{y_i},  m_i = Mmin + (Mmax − Mmin)·c_i / max_j c_j,
    target logit s·cos(θ_{i,y_i} + m_i),  softmax cross-entropy on y.

Guards: m_i is clipped into [0, Mmax] (a negative c_i would give a margin below
Mmin, even negative) and the batch maximum is floored at a tiny positive value
(all c_j <= 0 then gives m_i = 0, or Mmin where c_i = 0); m_i carries no gradient.
"""
from . import common, partial_fc, register_loss
from .margin import classification, margin_logits

CENTRES = "fc7_weight"


def sample_margins(teacher_cos, m_min, m_max):
    """Per-sample margins in [0, Mmax] from the teachers' cosines to their class centres."""
    import mxnet as mx

    largest = mx.sym.maximum(mx.sym.max(teacher_cos), common.DIV_FLOOR)
    margin = m_min + (m_max - m_min) * mx.sym.broadcast_div(teacher_cos, largest)
    return mx.sym.BlockGrad(mx.sym.clip(margin, 0.0, m_max))



@register_loss("margin_distillation", label="soft", teacher_centres=CENTRES,
               needs_teacher_dim=True, samples_centres=True)
def margin_distillation(embedding, label, cfg):
    s = float(common.require(cfg, "loss_s"))
    m_min = float(common.require(cfg, "Mmin", positive=False))
    m_max = float(common.require(cfg, "Mmax", positive=False))
    teacher, cls = common.soft_label(label, cfg)
    classes = partial_fc.HeadClasses(cfg)  # when sampled, cls indexes the sampled rows
    centres = classes.teacher(CENTRES, common.teacher_dim(cfg))
    unit_teacher = common.l2_normalize(teacher)
    teacher_cos = common.row_dot(unit_teacher, common.gather_rows(centres, cls))
    margins = sample_margins(teacher_cos, m_min, m_max)
    unit = common.l2_normalize(embedding)
    logits = margin_logits(unit, centres, cls, classes.count, common.batch_size(cfg), s, 1.0, margins, 0.0)
    prob, ce, acc = classification(logits, cls)
    return common.head_outputs([prob], {"acc": acc, "lossvalue": ce,
                                        "cos": common.mean_one_minus_cos(unit, unit_teacher)})
