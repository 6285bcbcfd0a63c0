"""Angular distillation (Duong et al., ShrinkTeaNet, arXiv 1905.10620).

L = CE(arcface logits, y) + α · mean_i (1 − ê_i·t̂_i); t from the soft labels.
"""
from . import common, register_loss
from .margin import classification, student_margin_logits




@register_loss("angular_distillation", label="soft", needs_teacher_dim=True, samples_centres=True)
def angular_distillation(embedding, label, cfg):
    import mxnet as mx

    alpha = float(common.require(cfg, "alpha", positive=False))
    teacher, cls = common.soft_label(label, cfg)
    unit, logits = student_margin_logits(embedding, cls, cfg)
    prob, ce, acc = classification(logits, cls)
    angle_term = common.mean_one_minus_cos(unit, common.l2_normalize(teacher))
    distill = mx.sym.BlockGrad(angle_term, name="angular_loss")
    return common.head_outputs([prob, distill], {"acc": acc, "lossvalue": ce + alpha * angle_term,
                                                 "cos": angle_term})
