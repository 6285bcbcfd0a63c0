"""Template knowledge distillation (PocketNet, Boutros et al. 2022).

L = CE(arcface logits, y) + λ · mean over batch and dimensions of (ê − t̂)², λ = kd_lambda.
The teacher embeddings come from the soft labels; the multi-step schedule (a
different teacher per epoch) is a matter of which soft-labelled data is read.
"""
from . import common, register_loss
from .margin import classification, student_margin_logits




@register_loss("template_kd", label="soft", needs_teacher_dim=True, online_teacher=True, samples_centres=True)
def template_kd(embedding, label, cfg):
    import mxnet as mx

    weight = float(common.require(cfg, "kd_lambda", positive=False))
    teacher, cls = common.soft_label(label, cfg)
    unit, logits = student_margin_logits(embedding, cls, cfg)
    unit_teacher = common.l2_normalize(teacher)
    prob, ce, acc = classification(logits, cls)
    mse = common.batch_mean(mx.sym.square(unit - unit_teacher))
    distill = mx.sym.BlockGrad(mse, name="template_loss")
    return common.head_outputs([prob, distill], {"acc": acc, "lossvalue": ce + weight * mse,
                                                 "cos": common.mean_one_minus_cos(unit, unit_teacher)})
