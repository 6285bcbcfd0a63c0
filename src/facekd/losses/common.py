"""Symbolic building blocks shared by every loss head.

Conventions (spec/losses.md): every loss is averaged over the device batch;
weights act on gradients through ``grad_scale``; monitors (``acc``,
``lossvalue``, ``cos``) are BlockGrad'ed scalars placed after the loss outputs.
"""
from ..data.labels import split_soft_symbol
from ..errors import FaceKDError

# cos θ is clipped into [-1 + COS_EPS, 1 - COS_EPS] before arccos (float32: 1 - 1e-6 < 1).
COS_EPS = 1e-6
# Smallest probability whose log is taken for the printed cross-entropy (log -> -85.2).
PROB_FLOOR = 1e-37
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
    """Width of the teacher vector in the soft labels (set by the trainer from the data)."""
    return int(cfg.get("teacher_dim", cfg.emb_size))


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
    """A teacher's row-normalised (C x dim) class centres, loaded by the trainer and never trained."""
    import mxnet as mx

    num_classes = int(require(cfg, "num_classes"))
    var = mx.sym.Variable(name, shape=(num_classes, int(dim)), lr_mult=0.0, wd_mult=0.0)
    return mx.sym.BlockGrad(var)


def gather_rows(matrix, ids):
    """Rows ``matrix[ids]`` (B x d) without a (B x C) one-hot product."""
    import mxnet as mx

    return mx.sym.take(matrix, ids, axis=0, mode="clip")


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


def cross_entropy(prob, cls):
    """Mean cross-entropy read from a softmax output by picking the target column (no second B x C pass)."""
    import mxnet as mx

    picked = mx.sym.pick(prob, cls, axis=1)
    return batch_mean(-mx.sym.log(mx.sym.maximum(picked, PROB_FLOOR)))


def accuracy(prob, cls):
    """Fraction of rows whose argmax is the class id: shape (1,)."""
    import mxnet as mx

    return batch_mean(mx.sym.argmax(prob, axis=1) == cls)


def softmax_ce(logits, cls, grad_scale=1.0, name="softmax"):
    """SoftmaxOutput with class ids, gradient averaged over the device batch."""
    import mxnet as mx

    return mx.sym.SoftmaxOutput(logits, cls, normalization="valid", grad_scale=grad_scale, name=name)


def mean_loss(value, grad_scale, name):
    """MakeLoss of a batch-mean term; ``grad_scale`` is its weight (acts on the gradient)."""
    import mxnet as mx

    return mx.sym.MakeLoss(value, grad_scale=float(grad_scale), normalization="null", name=name)


MONITOR_PREFIX = "monitor_"


def head_outputs(losses, monitors):
    """Loss outputs followed by BlockGrad'ed monitors, in the order of ``monitors`` (name -> symbol)."""
    import mxnet as mx

    return list(losses) + [mx.sym.BlockGrad(sym, name=MONITOR_PREFIX + name)
                           for name, sym in monitors.items()]


def batch_size(cfg):
    """The per-device batch size the head is bound with (``per_batch_size``)."""
    return int(require(cfg, "per_batch_size"))

