"""Partial FC in the trainer: each step's sampled classes, the same on every device and worker.

With ``--sample-ratio r`` < 1 (``losses/partial_fc.py`` builds the head) every step

1. takes the class ids of the **global** batch: the labels of all contexts of this worker
   and, under ``dist_sync``, of every worker (:class:`LabelExchange`: each worker writes
   its ids into its own row of a (workers x batch) array, the parameter servers sum the
   pushes, every worker pulls the same array);
2. draws the k = round(r·C) classes (:class:`ClassSampler`): every class of the batch,
   then negatives uniformly without replacement from the other classes, with a generator
   seeded by (run seed, global step) only, so every worker draws the same set, and a
   resumed run the sets of the run it continues;
3. gives the head the sorted ids as the input ``fc7_sample`` (replicated on every
   device: its DataDesc layout has no batch axis) and the labels' class ids as positions
   in that sample.

The gradient of ``fc7_weight`` is then row_sparse over the k rows. MXNet's Module sums it
over the devices correctly when the kvstore runs the update (several devices of one
machine) and needs no sum with one device; when the devices update their own copies
(``dist_sync``, or ``MXNET_UPDATE_ON_KVSTORE=0``) it pushes the rows but ``pull`` ignores
row_sparse outputs, and a parameter server fails on row_sparse pushes to the dense key of
the weight. :class:`RowSumStore` stands between the Module and the kvstore in that case:
it sums the rows itself (over devices, and over workers through a dense (k x d) key the
servers sum) and writes the sum back into every device's gradient, so each device applies
the same lazy SGD update to the same rows.
"""
import logging

import numpy as np

import mxnet as mx
from mxnet.kvstore import KVStoreBase

from ..data import labels as label_rows
from ..errors import FaceKDError
from ..losses import check_sampling, partial_fc as head
from .optimizer import updates_on_kvstore

LABEL_KEY = "partial_fc:labels"
ROWS_PREFIX = "partial_fc:rows:"
CENTRES = "fc7_weight"  # the student's class centres (losses.common.class_centres)
SAMPLE_LAYOUT = "C"  # no "N": Module copies the whole array to every device instead of slicing it
FLOAT_EXACT = 1 << 24  # class ids travel as float32, exact below 2**24


class ClassSampler:
    """The k classes of one step: all of ``positives``, then uniform negatives without replacement.

    Deterministic in (``seed``, step): the generator is seeded by both and by nothing else.
    """

    def __init__(self, num_classes, size, seed=0):
        if not 1 <= size <= num_classes:
            raise ValueError(f"sample size {size} outside 1..{num_classes}")
        self.num_classes, self.size, self.seed = int(num_classes), int(size), int(seed) & 0xFFFFFFFF

    def draw(self, positives, step):
        """Sorted int64 class ids (k,) containing every class id in ``positives``."""
        chosen = np.zeros(self.num_classes, dtype=bool)
        chosen[np.asarray(positives, dtype=np.int64)] = True
        missing = self.size - int(chosen.sum())
        if missing < 0:
            raise FaceKDError(f"{head.FLAG}: a batch holds {self.size - missing} classes, more than the "
                              f"{self.size} sampled centres; raise {head.FLAG}")
        rest = np.flatnonzero(~chosen)
        rng = np.random.default_rng([self.seed, int(step)])
        chosen[rest[rng.choice(rest.size, missing, replace=False, shuffle=False)]] = True
        return np.flatnonzero(chosen)


def positions(sample, cls):
    """Positions of the class ids ``cls`` in the sorted ``sample`` (every id must be in it)."""
    where = np.searchsorted(sample, cls)
    if not np.array_equal(sample[np.minimum(where, sample.size - 1)], cls):
        raise ValueError("a class id of the batch is not in the sample")
    return where


class LabelExchange:
    """The class ids of every worker's batch, through the parameter servers, which only sum."""

    def __init__(self, kv, batch):
        self.kv, self.batch = kv, int(batch)
        self._rows = np.zeros((kv.num_workers, self.batch), dtype=np.float32)
        self._summed = mx.nd.zeros(self._rows.shape)
        kv.init(LABEL_KEY, self._summed)

    def gather(self, cls):
        """All workers' class ids of this step (the same array on every worker)."""
        self._rows[:] = 0
        self._rows[self.kv.rank] = cls
        self.kv.push(LABEL_KEY, mx.nd.array(self._rows))
        self.kv.pull(LABEL_KEY, out=self._summed)
        return self._summed.asnumpy().astype(np.int64).ravel()


class RowSumStore(KVStoreBase):
    """The kvstore as a Module that updates on its devices sees it: row_sparse gradient pushes
    are summed here and written back into the gradients, dense traffic goes to the real store.

    The sampled rows of every device have the same indices (the step's sample), so their
    values are summed as one dense (k x d) key per parameter: locally by the store, across
    workers by the servers. ``pull`` of row_sparse arrays then has nothing left to do.
    """

    def __init__(self, kv, rows, dim, names):
        self._kv = kv
        for name in names:
            kv.init(ROWS_PREFIX + name, mx.nd.zeros((int(rows), int(dim))))

    # what Module does with row_sparse gradients: push, then pull into the same arrays
    def push(self, key, value, priority=0):
        values = value if isinstance(value, (list, tuple)) else [value]
        if not isinstance(key, str) or values[0].stype != "row_sparse":
            return self._kv.push(key, value, priority=priority)
        rows = [v.data for v in values]  # (k, d) copies, one per device
        self._kv.pushpull(ROWS_PREFIX + key, rows, priority=priority)
        for v, summed in zip(values, rows):
            mx.nd.sparse.row_sparse_array((summed, v.indices), shape=v.shape, ctx=v.context).copyto(v)
        return None

    def pull(self, key, out=None, priority=0, ignore_sparse=True):
        outs = out if isinstance(out, (list, tuple)) else [out]
        if isinstance(key, str) and outs and outs[0] is not None and outs[0].stype == "row_sparse":
            return None  # summed in place by push
        return self._kv.pull(key, out=out, priority=priority, ignore_sparse=ignore_sparse)

    # everything else is the real store's
    def broadcast(self, key, value, out, priority=0):
        return self._kv.broadcast(key, value, out, priority=priority)

    def pushpull(self, key, value, out=None, priority=0):
        return self._kv.pushpull(key, value, out=out, priority=priority)

    def set_optimizer(self, optimizer):
        return self._kv.set_optimizer(optimizer)

    def is_capable(self, capability):
        return self._kv.is_capable(capability)

    def save_optimizer_states(self, fname, dump_optimizer=False):
        return self._kv.save_optimizer_states(fname, dump_optimizer=dump_optimizer)

    def load_optimizer_states(self, fname):
        return self._kv.load_optimizer_states(fname)

    @property
    def type(self):
        return self._kv.type

    @property
    def rank(self):
        return self._kv.rank

    @property
    def num_workers(self):
        return self._kv.num_workers

    def __getattr__(self, name):  # init, row_sparse_pull, set_gradient_compression, _barrier, ...
        return getattr(self._kv, name)


class AllClasses:
    """``--sample-ratio 1``: the full head; batches, inputs and kvstore as they are."""

    sample_size = None

    def data_names(self, names):
        return list(names)

    def data_shapes(self, descs):
        return list(descs)

    def prepare(self, batch, step):
        return batch

    def kvstore(self, kv, num_devices):
        return kv


class SampledClasses(AllClasses):
    """``--sample-ratio r`` < 1: each step's batch gets the sampled classes and remapped labels."""

    def __init__(self, settings, spec, num_devices, kv, seed=0):
        num_classes = int(settings.num_classes)
        r = head.ratio(settings)
        self.sample_size = k = head.sample_size(num_classes, r)
        self.emb_size = int(settings.emb_size)
        # the trainable centres read through the sampled Embedding (margin_distillation's are frozen)
        self.trainable = [name for name in (CENTRES,) if name != spec.teacher_centres]
        workers = kv.num_workers if "dist" in kv.type else 1
        batch = int(settings.per_batch_size) * int(num_devices)
        if "dist" in kv.type and "async" in kv.type:
            raise FaceKDError(f"{head.FLAG} {r:g} needs every worker at the same step to agree on the sampled "
                              f"classes; --kvstore {kv.type} is asynchronous: use dist_sync or dist_device_sync")
        if k < min(num_classes, batch * workers):
            raise FaceKDError(
                f"{head.FLAG} {r:g} keeps round({r:g} x {num_classes}) = {k} class centres, fewer than the "
                f"{batch * workers} images of a global batch, whose classes must all be in the sample; "
                f"raise it to at least {min(1.0, batch * workers / num_classes):.4g}")
        if num_classes >= FLOAT_EXACT:
            raise FaceKDError(f"{head.FLAG}: {num_classes} classes; class ids above 2**24 are not exact in "
                              "float32 labels")
        self.sampler = ClassSampler(num_classes, k, seed)
        self.exchange = LabelExchange(kv, batch) if "dist" in kv.type else None
        logging.info("Partial FC: %d of %d class centres a step (%s %g): the batch's classes and random others",
                     k, num_classes, head.FLAG, r)

    def data_names(self, names):
        return list(names) + [head.SAMPLE]

    def data_shapes(self, descs):
        return list(descs) + [mx.io.DataDesc(head.SAMPLE, (self.sample_size,), np.float32, SAMPLE_LAYOUT)]

    def sample(self, cls, step):
        """The sorted sampled class ids of ``step`` for this worker's class ids ``cls``."""
        everyone = self.exchange.gather(cls) if self.exchange is not None else cls
        return self.sampler.draw(everyone, step)

    def prepare(self, batch, step):
        """``batch`` with the sample as its last data input and class ids as positions in it."""
        label = batch.label[0].asnumpy()
        cls = label_rows.class_ids(label)
        sample = self.sample(cls, step)
        remapped = label_rows.with_class_ids(label, positions(sample, cls))
        return mx.io.DataBatch(data=list(batch.data) + [mx.nd.array(sample, dtype=np.float32)],
                               label=[mx.nd.array(remapped, dtype=np.float32)], pad=batch.pad, index=batch.index)

    def kvstore(self, kv, num_devices):
        """What the Module gets as its kvstore: the real one where it sums row_sparse gradients
        itself (one device, or the update on the kvstore), else a :class:`RowSumStore`."""
        if (num_devices == 1 and "dist" not in kv.type) or updates_on_kvstore(kv, num_devices) \
                or not self.trainable:
            return kv
        return RowSumStore(kv, self.sample_size, self.emb_size, self.trainable)


def class_sampler(settings, spec, num_devices, kv, seed=None):
    """:class:`AllClasses` for ``--sample-ratio 1``, else :class:`SampledClasses` (checked)."""
    check_sampling(spec, settings)
    if not head.is_sampled(settings):
        return AllClasses()
    return SampledClasses(settings, spec, num_devices, kv, 0 if seed is None else seed)
