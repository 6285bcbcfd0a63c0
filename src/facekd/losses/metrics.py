"""Training metrics that read the heads' monitor outputs, found by name.

Each head computes its monitors in the graph (``acc``: argmax of the
margin-adjusted logits against the class id, or the fraction of triplets with
d_ap < d_an; ``lossvalue``: the head's whole objective over the device batch,
which is also its MakeLoss; ``cos``: mean 1 - cos(student, teacher)) as
scalars named ``monitor_<name>`` (``losses.common.head_outputs``), so a metric copies
one number per device instead of a (B x C) probability matrix.
"""
import mxnet as mx

from .common import MONITOR_PREFIX, OBJECTIVE

_OUTPUT_SUFFIX = "_output"


class OutputMean(mx.metric.EvalMetric):
    """Running mean (weighted by batch size) of the scalar head output at ``index``."""

    def __init__(self, name, index):
        super().__init__(name)
        self.index = index

    def update(self, labels, preds):
        value = float(preds[self.index].asnumpy().mean())
        weight = int(labels[0].shape[0]) if labels else 1
        self.sum_metric += value * weight
        self.global_sum_metric += value * weight
        self.num_inst += weight
        self.global_num_inst += weight


def objective_index(symbol):
    """Index of the output that is the head's whole objective (``monitor_lossvalue``)."""
    return symbol.list_outputs().index(MONITOR_PREFIX + OBJECTIVE + _OUTPUT_SUFFIX)


def head_metrics(symbol):
    """One :class:`OutputMean` per monitor output of a training symbol, in output order."""
    metrics = []
    for index, output in enumerate(symbol.list_outputs()):
        if output.startswith(MONITOR_PREFIX) and output.endswith(_OUTPUT_SUFFIX):
            metrics.append(OutputMean(output[len(MONITOR_PREFIX):-len(_OUTPUT_SUFFIX)], index))
    return metrics
