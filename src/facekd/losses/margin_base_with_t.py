"""Margin-based knowledge distillation with temperature (Nekhaev et al., SPIE 11433, 2020).

z^s: arcface logits of the student on its own trainable ``fc7_weight``;
z^t: the same margin formula on the teacher's normalised embedding (soft label)
and the teacher's row-normalised, frozen ``teacher_fc7_weight``.

    L = (1 − α)·CE(z^s, y) + α·T²·KL(softmax(z^t/T) || softmax(z^s/T))

Both terms are batch means in one objective (the ``lossvalue`` monitor, the
head's MakeLoss), so dL/dz^s = (1 − α)(p − onehot)/B + α·T·(p_T − q)/B. The KL
is Σ q·(log q − log p_T) / B with q = softmax(z^t/T) BlockGrad'ed (z^t/T built
directly at scale s/T), log p_T = log_softmax(z^s/T), and the (B x C) sum is
one BLAS dot of the flattened matrices.
The graph is pinned to ``per_batch_size`` (binding another batch fails).
"""
from . import common, partial_fc, register_loss
from .margin import classification, margin_config, margin_logits, student_margin_logits

CENTRES = "teacher_fc7_weight"



def kl_divergence(teacher_logits, student_logits, temperature, batch):
    """Mean over the batch of KL(softmax(teacher) || softmax(student / T)); gradient to the student only.

    ``teacher_logits`` are already divided by T. The student's are multiplied by 1/T explicitly:
    the ``temperature`` argument of ``log_softmax`` leaves oneDNN for a much slower kernel, and
    MXNet's scalar multiply is faster than its divide (forward + backward with the log_softmax
    at 64 x 85,742: 8.6 ms against 12.2). One inner product of the flattened (B x C) matrices
    (``common.flat_dot``) sums the batch.
    """
    import mxnet as mx

    log_q = mx.sym.BlockGrad(common.log_softmax(teacher_logits))
    q = mx.sym.BlockGrad(mx.sym.softmax(teacher_logits, axis=1))
    log_p = common.log_softmax(student_logits * (1.0 / float(temperature)))
    return mx.sym.reshape(common.flat_dot(q, log_q - log_p), shape=(1,)) / batch


@register_loss("margin_base_with_T", label="soft", teacher_centres=CENTRES,
               needs_teacher_dim=True, samples_centres=True)
def margin_base_with_t(embedding, label, cfg):
    import mxnet as mx

    alpha = float(common.require(cfg, "alpha", positive=False))
    temperature = float(common.require(cfg, "T"))
    batch = common.batch_size(cfg)
    classes = partial_fc.HeadClasses(cfg)  # sampled: student and teacher over the same classes
    num_classes = classes.count
    s, m1, m2, m3 = margin_config(cfg)
    teacher, cls = common.soft_label(label, cfg)

    unit, student = student_margin_logits(embedding, cls, cfg, classes=classes)
    student = mx.sym.reshape(student, shape=(batch, num_classes))  # pinned batch size
    unit_teacher = common.l2_normalize(teacher)
    # the teacher's logits reach the loss only through BlockGrad'ed q and log q
    teacher_centres = classes.teacher(CENTRES, common.teacher_dim(cfg))
    # z^t / T directly: the margin logits at scale s / T
    teacher_logits = margin_logits(unit_teacher, teacher_centres, cls, num_classes, batch, s / temperature,
                                   m1, m2, m3, name="teacher_fc7")

    prob, ce, acc = classification(student, cls)
    kl = kl_divergence(teacher_logits, student, temperature, batch)
    distill = mx.sym.BlockGrad(kl, name="kd_loss")
    objective = (1.0 - alpha) * ce + alpha * temperature ** 2 * kl
    return common.head_outputs([prob, distill], {"acc": acc, "lossvalue": objective,
                                                 "cos": common.mean_one_minus_cos(unit, unit_teacher)})
