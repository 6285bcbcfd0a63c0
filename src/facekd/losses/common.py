"""Symbolic building blocks shared by every loss head.

Conventions (docs/fidelity.md): every loss is averaged over the device batch.
A head's outputs are its fixed slots (e.g. the probability matrix) followed by
its monitors (``acc``, ``lossvalue``, ``cos``), scalars. ``lossvalue`` is the
whole weighted objective and is the one ``MakeLoss`` of the head: the weights
of its terms act on the gradients because they are part of the differentiated
expression, and the printed value is the trained objective. Everything else is
BlockGrad'ed.
"""
from ..data.labels import split_soft_symbol
from ..errors import FaceKDError

# cos θ is clipped into [-1 + COS_EPS, 1 - COS_EPS] before arccos (float32: 1 - 1e-6 < 1).
COS_EPS = 1e-6
# Largest printed cross-entropy of a row: -log(1e-37), where a probability underflows float32.
CE_CEIL = 85.19564844077969
# Guard of divisions by a batch maximum that may be zero.
DIV_FLOOR = 1e-12


def require(cfg, key, positive=True):
    """``cfg[key]``, or a FaceKDError naming the configuration key."""
    value = cfg.get(key)
    if value is None or (positive and not value > 0):
        raise FaceKDError(f"loss {cfg.get('loss')!r} needs config key {key!r} "
                          f"{'> 0' if positive else 'set'} (got {value!r}); set it in config.py")
    return value


def teacher_dim(cfg):
    """Width of the teacher vector in the soft labels (the run's settings take it from the data)."""
    return int(require(cfg, "teacher_dim"))


def soft_label(label, cfg):
    """(teacher vectors (B, d_t), class ids (B,)) of the soft-label variable."""
    return split_soft_symbol(label, teacher_dim(cfg))


def l2_normalize(x, name=None):
    """Rows of ``x`` divided by their L2 norm."""
    import mxnet as mx

    return mx.sym.L2Normalization(x, mode="instance", name=name)


def clip_cos(x):
    """Cosines clipped into [-1 + eps, 1 - eps], so arccos and its gradient stay finite."""
    import mxnet as mx

    return mx.sym.clip(x, -1.0 + COS_EPS, 1.0 - COS_EPS)


def safe_arccos(x):
    """arccos of clipped cosines."""
    import mxnet as mx

    return mx.sym.arccos(clip_cos(x))


def class_centres(cfg, name="fc7_weight"):
    """The trainable (C x d) class-centre matrix, with the fc7 learning-rate and decay multipliers."""
    import mxnet as mx

    num_classes = int(require(cfg, "num_classes"))
    return mx.sym.Variable(name, shape=(num_classes, int(cfg.emb_size)),
                           lr_mult=cfg.get("fc7_lr_mult", 1.0), wd_mult=cfg.get("fc7_wd_mult", 1.0),
                           init=mx.init.Normal(0.01))


def frozen_centres(cfg, name, dim):
    """A teacher's row-normalised (C x dim) class centres, loaded by the trainer and never trained.

    Not BlockGrad'ed, which would copy the (C x dim) matrix every forward: the trainer binds
    the centres as fixed parameters (LossSpec.teacher_centres), so no gradient is computed
    for them, and ``lr_mult = wd_mult = 0`` keeps them unchanged even where they are not.
    """
    import mxnet as mx

    num_classes = int(require(cfg, "num_classes"))
    return mx.sym.Variable(name, shape=(num_classes, int(dim)), lr_mult=0.0, wd_mult=0.0)


def gather_rows(matrix, ids):
    """Rows ``matrix[ids]`` (B x d) without a (B x C) one-hot product."""
    import mxnet as mx

    return mx.sym.take(matrix, ids, axis=0, mode="clip")


def class_products(x, centres, batch, name=None):
    """``x · centresᵀ`` (B x C) for a (B x d) batch and a (C x d) class matrix.

    Computed as the transpose of ``centres · xᵀ``: oneDNN's FullyConnected then takes the
    large matrix as its data, as it is laid out, and the small batch as its weight. The
    other way round it reorders the (C x d) weight every forward; at C = 85,742, d = 512,
    B = 64 the forward takes 17 ms instead of 28 and forward + backward 46 ms instead of
    55 (docs/performance.md). ``batch`` is the per-device batch the head is bound with.
    """
    import mxnet as mx

    return mx.sym.transpose(mx.sym.FullyConnected(centres, x, no_bias=True, num_hidden=int(batch), name=name))


def row_dot(a, b):
    """Per-row dot products of two (B x d) symbols: shape (B,)."""
    import mxnet as mx

    return mx.sym.sum(a * b, axis=1)


def batch_mean(x):
    """Mean over every element: shape (1,)."""
    import mxnet as mx

    return mx.sym.mean(x)


def mean_one_minus_cos(a_hat, b_hat):
    """Mean over the batch of 1 - cos between two row-normalised (B x d) symbols."""
    return batch_mean(1.0 - row_dot(a_hat, b_hat))


def log_softmax(logits):
    """Row-wise log-probabilities (B x C): finite where a probability underflows float32."""
    import mxnet as mx

    return mx.sym.log_softmax(logits, axis=1)


def probabilities(logits):
    """BlockGrad'ed softmax of the logits (B x C), the head's probability output."""
    import mxnet as mx

    return mx.sym.BlockGrad(mx.sym.softmax(logits, axis=1))


def cross_entropy(log_prob, cls):
    """Mean cross-entropy: the target column picked from the log-probabilities (no second B x C pass).

    The gradient is that of the exact value. The value shown is each row's clipped into
    [0, CE_CEIL]: the CPU ``log_softmax`` (oneDNN) may return log p slightly above 0 for a
    certain target (about 1e-6), and the printed value saturates where p underflows float32.
    """
    import mxnet as mx

    nll = -mx.sym.pick(log_prob, cls, axis=1)
    shown = mx.sym.clip(nll, 0.0, CE_CEIL)
    return batch_mean(nll + mx.sym.BlockGrad(shown - nll))


def accuracy(logits, cls):
    """Fraction of rows whose largest logit is the class id: shape (1,).

    ``argmax`` over the (B x C) logits: one pass, 4.2 ms alone at 64 x 85,742 on two threads
    (``topk`` with k = 1: 5.6 ms); in a training step the two cost about the same.
    """
    import mxnet as mx

    top = mx.sym.argmax(logits, axis=1)
    return batch_mean(top == cls)


def flat_dot(a, b):
    """Sum over every element of ``a * b``, as one inner product of the flattened arrays: shape (1, 1).

    A oneDNN ``FullyConnected`` of the (1 x N) rows: at N = 64 x 85,742, forward + backward
    (the gradient to ``b``, a scaled copy of ``a``) take about 4 ms, against 14–17 ms for
    ``dot`` of the same rows and 29 ms for ``sum(a * b)`` (MXNet's CPU reductions are slow).
    Its float32 sum is good to about 1e-4 relative at that size (``dot``: 1e-6); the
    gradient does not depend on it.
    """
    import mxnet as mx

    return mx.sym.FullyConnected(mx.sym.reshape(a, shape=(1, -1)), mx.sym.reshape(b, shape=(1, -1)),
                                 no_bias=True, num_hidden=1)


MONITOR_PREFIX = "monitor_"
OBJECTIVE = "lossvalue"


def head_outputs(outputs, monitors, objective=OBJECTIVE):
    """``outputs`` (as given) followed by the monitors (name -> scalar symbol), in order.

    The monitor named ``objective`` is the whole loss of the head: it is emitted as the
    ``MakeLoss`` that carries the gradient (so the printed value and the trained objective
    are one symbol); the others are BlockGrad'ed.
    """
    import mxnet as mx

    out = list(outputs)
    for name, sym in monitors.items():
        if name == objective:
            out.append(mx.sym.MakeLoss(sym, normalization="null", name=MONITOR_PREFIX + name))
        else:
            out.append(mx.sym.BlockGrad(sym, name=MONITOR_PREFIX + name))
    return out


def batch_size(cfg):
    """The per-device batch size the head is bound with (``per_batch_size``)."""
    return int(require(cfg, "per_batch_size"))

