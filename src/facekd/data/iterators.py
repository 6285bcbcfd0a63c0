"""Training iterators over a RecordDataset: decode off the training thread, augment, batch, prefetch.

:class:`FaceImageIter` is the plain image iterator (insightface's), an
``mx.io.DataIter`` yielding ``data`` float32 (B, 3, H, W) raw 0..255 RGB and
``softmax_label`` (B,) class ids, or (B, d+1) soft rows for soft-labelled sets.

Batches are built by a background thread (:class:`BatchProducer`): it reads
the records, decodes and augments them in a thread pool (OpenCV and NumPy
release the GIL) and keeps up to ``prefetch`` finished batches in a bounded
queue, so the next batch is ready while the network trains.

The last partial batch of an epoch is dropped (as insightface does); every
image still appears once per epoch up to that remainder, and shuffling moves
a different remainder out each epoch.
"""
import copy
import logging
import queue
from concurrent.futures import ThreadPoolExecutor

import mxnet as mx
import numpy as np

from ..errors import FaceKDError
from . import labels as L
from .augment import Augmenter
from .images import decode
from .pipeline import END, Pipeline
from .recordio import RecordDataset

DATA_NAME = "data"
LABEL_NAME = "softmax_label"


# ----------------------------------------------------------------------------- dataset helpers
def as_dataset(dataset):
    """(RecordDataset, owned) from a RecordDataset or a dataset folder path."""
    if isinstance(dataset, RecordDataset):
        return dataset, False
    if isinstance(dataset, str):
        return RecordDataset(dataset), True
    raise FaceKDError(f"expected a RecordDataset or a dataset folder, got {type(dataset).__name__}")


def keys_by_class(dataset):
    """(class ids (C,), list of C int64 key arrays): the images of each class, from the identity records.

    Identities are grouped by class id, so a set written with one identity per
    image (the reference soft-set builder) still groups correctly.
    """
    idents = np.asarray(dataset.identities, dtype=np.int64).reshape(-1, 2)
    if len(idents) == 0:
        raise FaceKDError(f"{dataset.rec_path}: the dataset has no identity records; rebuild it with face2rec2.py")
    classes = np.asarray(dataset.class_of_identity, dtype=np.int64)
    order = np.lexsort((idents[:, 0], classes))
    uniq, starts = np.unique(classes[order], return_index=True)
    bounds = np.append(starts, len(order))
    groups = [np.concatenate([np.arange(a, b, dtype=np.int64) for a, b in idents[order[s:e]]])
              for s, e in zip(bounds[:-1], bounds[1:])]
    return uniq, groups


def shard(items, part_index, num_parts, what="image keys"):
    """Part ``part_index`` of ``num_parts`` near-equal contiguous parts of ``items`` (dist workers)."""
    if num_parts < 1 or not 0 <= part_index < num_parts:
        raise FaceKDError(f"part_index {part_index} / num_parts {num_parts} is invalid "
                          "(need 0 <= part_index < num_parts; set from the kvstore rank and worker count)")
    if len(items) < num_parts:
        raise FaceKDError(f"{len(items)} {what} cannot be split over {num_parts} workers")
    return np.array_split(np.asarray(items), num_parts)[part_index]


def batch_labels(raw, layout):
    """The ``softmax_label`` of a batch of raw label rows (B, w): soft rows, or class ids (B,)."""
    raw = np.asarray(raw, dtype=np.float32)
    if layout.kind == L.SOFT:
        return raw
    return L.class_ids(raw).astype(np.float32)


def label_shape(batch_size, layout):
    return (batch_size, layout.width) if layout.kind == L.SOFT else (batch_size,)


def check_data_shape(data_shape, dataset):
    """Validate (3, H, W) against the dataset's image size."""
    data_shape = tuple(int(v) for v in data_shape)
    if len(data_shape) != 3 or data_shape[0] != 3:
        raise FaceKDError(f"data_shape {data_shape} is invalid; expected (3, H, W)")
    if tuple(data_shape[1:]) != tuple(dataset.image_size):
        raise FaceKDError(f"data_shape {data_shape[1]}x{data_shape[2]} does not match the images of "
                          f"{dataset.folder} ({dataset.image_size[0]}x{dataset.image_size[1]}, from its "
                          "property file); set image_shape in config.py to match")
    return data_shape


# ----------------------------------------------------------------------------- background batching
class BatchProducer:
    """A background thread that turns lists of record positions into (data, label) NDArray batches.

    ``fetch(positions) -> (raw labels (B, w) float32, payloads, names)`` reads
    the records (called only from the producer thread; ``names`` label each
    image in errors); images are decoded and augmented in ``pool``; finished
    batches wait in a queue of ``prefetch``. An error in the thread is raised by
    :meth:`get` once the batches made before it are consumed. The first ``skip`` batches
    are passed over (their augmentation draws are made, their images never read): an
    epoch resumed where it stopped gets the very batches it would have had.
    """

    def __init__(self, fetch, batches, augmenter, data_shape, layout, pool, seed, prefetch=2, skip=0):
        self.fetch = fetch
        self.batches = batches
        self.augmenter = augmenter
        self.data_shape = data_shape
        self.layout = layout
        self.pool = pool
        self.seed = seed
        self.skip = int(skip)
        self.queue = queue.Queue(maxsize=max(1, prefetch))
        self.pipe = Pipeline()
        self._done = False
        self.thread = self.pipe.thread(self._run, name="facekd-batches")

    def _image(self, payload, seed, out, where):
        img = decode(payload, where, self.data_shape[1:])
        img = self.augmenter(img, np.random.default_rng(seed)) if not self.augmenter.is_identity else img
        out[...] = np.transpose(img, (2, 0, 1))

    def _run(self):
        rng = np.random.default_rng(self.seed)
        for number, positions in enumerate(self.batches):
            if self.pipe.stop.is_set():
                return
            seeds = rng.integers(0, 2 ** 63 - 1, size=len(positions))
            if number < self.skip:
                continue
            raw, payloads, names = self.fetch(positions)
            data = np.empty((len(positions),) + tuple(self.data_shape), dtype=np.float32)
            list(self.pool.map(self._image, payloads, seeds, data, names))
            batch = (mx.nd.array(data, dtype=np.float32),
                     mx.nd.array(batch_labels(raw, self.layout), dtype=np.float32))
            if not self.pipe.put(self.queue, batch):
                return
        self.pipe.put(self.queue, END)

    def get(self):
        item = END if self._done else self.pipe.get(self.queue)
        if item is END:
            self._done = True  # stay exhausted
            if self.pipe.error is not None:
                raise self.pipe.error
            raise StopIteration
        return item

    def stop(self):
        self.pipe.stop.set()
        self.pipe.join([self.thread])


class _BatchedIter(mx.io.DataIter):
    """Shared plumbing of the image and triplet iterators: descriptors, producer, pool, close."""

    needs_weights = False  # True for iterators that run the student itself (triplet mining)

    def __init__(self, dataset, batch_size, data_shape, rand_mirror, color_jitter, cutoff,
                 seed, decode_threads, prefetch):
        super().__init__(batch_size)
        self._producer = self._pool = None
        self._closed = False
        self.dataset, self._owns_dataset = as_dataset(dataset)
        try:
            if int(batch_size) < 1:
                raise FaceKDError(f"--per-batch-size gives a batch of {batch_size}; it must be >= 1")
            self.batch_size = int(batch_size)
            self.data_shape = check_data_shape(data_shape, self.dataset)
            self.label_layout = self.dataset.layout
            self.num_classes = self.dataset.num_classes
            self.augmenter = Augmenter(rand_mirror, color_jitter, cutoff, width=self.data_shape[2])
            if int(decode_threads) < 1:
                raise FaceKDError(f"decode_threads {decode_threads} must be >= 1")
        except BaseException:
            self.close()
            raise
        self._threads = int(decode_threads)
        self._pool = ThreadPoolExecutor(self._threads, thread_name_prefix="facekd-decode")
        self._prefetch = prefetch
        self._rng = np.random.default_rng(seed)

    @property
    def provide_data(self):
        return [mx.io.DataDesc(DATA_NAME, (self.batch_size,) + self.data_shape, np.float32)]

    @property
    def provide_label(self):
        return [mx.io.DataDesc(LABEL_NAME, label_shape(self.batch_size, self.label_layout), np.float32)]

    def _start(self, fetch, batches, skip=0):
        self._stop()
        self._producer = BatchProducer(fetch, batches, self.augmenter, self.data_shape, self.label_layout,
                                       self._pool, int(self._rng.integers(0, 2 ** 63 - 1)), self._prefetch,
                                       skip)

    def position(self, batches_done):
        """What :meth:`restore` needs to continue this epoch after ``batches_done`` batches, as
        plain data (JSON); None when the iterator cannot resume mid-epoch."""
        return None

    def record_name(self, key):
        """How errors name an image record."""
        return f"{self.dataset.rec_path} record {int(key)}"

    def _stop(self):
        if self._producer is not None:
            self._producer.stop()
            self._producer = None

    def next(self):
        if self._producer is None:
            raise StopIteration
        data, label = self._producer.get()
        return mx.io.DataBatch(data=[data], label=[label], pad=0,
                               provide_data=self.provide_data, provide_label=self.provide_label)

    def close(self):
        """Stop the background threads (and close the dataset when this iterator opened it)."""
        if self._closed:
            return
        self._closed = True
        self._stop()
        if self._pool is not None:
            self._pool.shutdown(wait=True)
        if self._owns_dataset:
            self.dataset.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:  # interpreter shutdown: best effort
            pass


# ----------------------------------------------------------------------------- the image iterator
class FaceImageIter(_BatchedIter):
    """Shuffled, augmented, prefetched batches of a RecordDataset (or a dataset folder).

    ``images_filter`` > 0 drops classes with fewer images; ``keys`` (image keys) draws
    from those images only (the architecture search's halves); ``part_index`` /
    ``num_parts`` keep one contiguous shard of the image keys (one per dist
    worker). The last partial batch is dropped. ``.label_layout`` and
    ``.num_classes`` describe the labels; ``.keys`` are this shard's image keys.
    """

    def __init__(self, dataset, batch_size, data_shape=(3, 112, 112), shuffle=True, rand_mirror=True,
                 color_jitter=0, cutoff=False, images_filter=0, part_index=0, num_parts=1, seed=None,
                 decode_threads=2, prefetch=2, keys=None):
        super().__init__(dataset, batch_size, data_shape, rand_mirror, color_jitter, cutoff,
                         seed, decode_threads, prefetch)
        try:
            self.shuffle = bool(shuffle)
            if keys is not None:
                keys = np.sort(np.asarray(keys, dtype=np.int64))
                if len(keys) and (keys[0] < 1 or keys[-1] > self.dataset.num_images):
                    raise FaceKDError(f"image keys {keys[0]}..{keys[-1]} lie outside the "
                                      f"{self.dataset.num_images} images of {self.dataset.folder}")
            elif images_filter and images_filter > 0:
                _, groups = keys_by_class(self.dataset)
                kept = [g for g in groups if len(g) >= images_filter]
                if not kept:
                    raise FaceKDError(f"data_images_filter {images_filter} removes every class of "
                                      f"{self.dataset.folder}; lower it")
                keys = np.sort(np.concatenate(kept))
                logging.info("images_filter %d: kept %d of %d classes, %d images", images_filter,
                             len(kept), len(groups), len(keys))
            else:
                keys = np.arange(1, self.dataset.num_images + 1, dtype=np.int64)
            self.keys = shard(keys, part_index, num_parts)
            if len(self.keys) < self.batch_size:
                raise FaceKDError(f"{self.dataset.folder}: {len(self.keys)} images (this worker's shard) are "
                                  f"fewer than one batch of {self.batch_size}; lower --per-batch-size")
            self.batches_per_epoch = len(self.keys) // self.batch_size
            self.reset()
        except BaseException:
            self.close()
            raise

    def _fetch(self, keys):
        labels, payloads = self.dataset.read_images(keys)
        return labels, payloads, [self.record_name(k) for k in keys]

    def reset(self, skip=0):
        """Start a new epoch: reshuffle (when ``shuffle``) and start prefetching (from batch ``skip``)."""
        self._stop()
        self._epoch_rng = copy.deepcopy(self._rng.bit_generator.state)  # where this epoch's draws start
        order = self._rng.permutation(self.keys) if self.shuffle else self.keys
        used = self.batches_per_epoch * self.batch_size
        batches = order[:used].reshape(self.batches_per_epoch, self.batch_size)
        self._start(self._fetch, batches, skip)

    def position(self, batches_done):
        """The shuffle generator's state at the start of this epoch and the batches done."""
        return {"rng": self._epoch_rng, "batch": int(batches_done)}

    def restore(self, epoch, position):
        """Continue the epoch of :meth:`position`: same order, same augmentation, next batch."""
        try:
            self._rng.bit_generator.state = position["rng"]
            skip = int(position["batch"])
        except (KeyError, TypeError, ValueError) as exc:
            raise FaceKDError(f"the saved data position is not one of this iterator's ({exc!r}); "
                              "resume from a checkpoint of the same run") from None
        if not 0 <= skip <= self.batches_per_epoch:
            raise FaceKDError(f"the saved data position is batch {skip} of an epoch of "
                              f"{self.batches_per_epoch}; the dataset or the batch size changed")
        self.reset(skip)
