"""Training metrics that read the heads' monitor outputs.

Each head computes its monitors in the graph (``acc``: argmax of the
margin-adjusted logits against the class id, or the fraction of triplets with
d_ap < d_an; ``lossvalue``: the head's whole objective over the device batch,
which is also its MakeLoss; ``cos``: mean 1 - cos(student, teacher)) as
scalars, so a metric copies one number per device instead of a (B x C)
probability matrix.

The outputs of ``build_head`` are [embedding, the head's slots..., monitors...].
"""
import mxnet as mx


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


def monitor_metrics(num_losses, names):
    """Metrics for a head with ``num_losses`` loss outputs followed by monitors ``names``."""
    first = 1 + num_losses  # output 0 is the embedding
    return [OutputMean(name, first + k) for k, name in enumerate(names)]
