"""Partial FC: the margin heads on a sampled subset of the class centres (``--sample-ratio r``).

With ``sample_ratio`` r < 1 a head does not see the whole (C x d) matrix. Each step the
trainer (``facekd.training.partial_fc``) chooses k = round(r·C) classes: every class of
the global batch plus negatives drawn uniformly without replacement, sorted, and gives
their ids as the input :data:`SAMPLE` (shape (k,), the same on every device), with the
labels' class ids replaced by their positions in it. The head then runs unchanged on
the k gathered rows, as if the dataset had k classes:

* the trainable ``fc7_weight`` stays the full (C x d) parameter (checkpoints are those of
  the full head) and is read through ``Embedding(..., sparse_grad=True)``, so its gradient
  is ``row_sparse`` over the sampled rows and MXNet's lazy SGD update moves only those
  rows, their momentum and their weight decay;
* frozen teacher centres (margin_distillation's ``fc7_weight``, margin_base_with_T's
  ``teacher_fc7_weight``) are gathered with the same ids by ``take`` (no gradient).

With r = 1 (the default) nothing here enters the graph: it is the full head.
"""
from . import common

SAMPLE = "fc7_sample"  # input: the sorted class ids of this step's sample, (k,)
RATIO = "sample_ratio"  # the config key (flag --sample-ratio)
FLAG = "--sample-ratio"


def ratio(cfg):
    """The configured sampling ratio r (1.0 when the key is absent: the full head)."""
    return float(cfg.get(RATIO, 1.0))


def is_sampled(cfg):
    return ratio(cfg) < 1.0


def sample_size(num_classes, r):
    """k = round(r·C) (Python's round), at least 1: the rows a sampled head sees each step."""
    return max(1, int(round(float(r) * int(num_classes))))


class HeadClasses:
    """The classes one head's logits run over: all C, or the k of the step's sample.

    One per head build: every sampled matrix of the head (the student's, a teacher's) is
    gathered with the same :data:`SAMPLE` input variable.
    """

    def __init__(self, cfg):
        self.cfg = cfg
        num_classes = int(common.require(cfg, "num_classes"))
        self.sampled = is_sampled(cfg)
        self.count = sample_size(num_classes, ratio(cfg)) if self.sampled else num_classes
        self._ids = None

    def ids(self):
        """The :data:`SAMPLE` input; its shape attribute lets shape inference run without it."""
        import mxnet as mx

        if self._ids is None:
            self._ids = mx.sym.Variable(SAMPLE, shape=(self.count,))
        return self._ids

    def student(self):
        """The trainable class centres the head reads: ``fc7_weight`` (C x d), or its sampled
        (k x d) rows with a row_sparse gradient."""
        import mxnet as mx

        weight = common.class_centres(self.cfg)
        if not self.sampled:
            return weight
        return mx.sym.Embedding(self.ids(), weight, input_dim=int(self.cfg.num_classes),
                                output_dim=int(self.cfg.emb_size), sparse_grad=True, name="fc7_sampled")

    def teacher(self, name, dim):
        """A teacher's frozen row-normalised centres (C x dim), or their sampled (k x dim) rows."""
        centres = common.frozen_centres(self.cfg, name, dim)
        if not self.sampled:
            return centres
        return common.gather_rows(centres, self.ids())


def head_classes(cfg):
    """The class count a head of ``cfg`` computes its logits over: k when sampled, else C."""
    return HeadClasses(cfg).count
