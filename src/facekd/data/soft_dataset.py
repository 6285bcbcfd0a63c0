"""Streaming soft-label dataset builder: train.rec -> teacher -> soft train.rec in one pass.

Three stages run at once over bounded queues, so memory does not grow with the dataset:

* a reader thread walks ``IN/train.rec`` in key order and decodes batch k+1 into one of a
  few preallocated image buffers (so no image array is allocated per batch);
* the calling thread runs the teacher on batch k (batched inference over all contexts);
* a writer thread appends batch k-1 to the new record file, each image's bytes unchanged,
  its label ``[teacher fc1 output (d floats), class id]`` (:func:`facekd.data.labels.make_soft`).

Everything is written into ``OUT.partial/`` and renamed to ``OUT`` when complete
(:func:`facekd.data.outputs.staged_output`). An interrupted build leaves nothing under
``OUT``; rerun with the same arguments and it starts over, discarding ``OUT.partial`` (and
saying so). ``OUT`` carries the marker ``.facekd-output``; ``--overwrite`` replaces only such a
folder, never one this tool did not write, and ``OUT`` may neither contain nor lie inside ``IN``.
"""
import queue
import time
from collections import namedtuple

import numpy as np

from ..errors import FaceKDError
from . import labels as label_layout
from .prepare import (EMBED_TOOL, check_finite, check_output_folder, check_separate, check_teacher_args,
                      copy_targets, input_class_id, load_teacher, staged_output)
from .pipeline import END, Pipeline
from .recordio import RecordDataset, RecordDatasetWriter

BuildSummary = namedtuple("BuildSummary", "num_images num_identities emb_size seconds out_dir")



class _Batch:
    __slots__ = ("keys", "classes", "payloads", "images", "buffer", "vectors")

    def __init__(self, keys, classes, payloads):
        self.keys, self.classes, self.payloads = keys, classes, payloads
        self.images = self.buffer = self.vectors = None


def _decode_batch(batch, rec_path, image_size, buffer):
    """Decode the batch's payloads into ``buffer`` (B_max, H, W, 3); ``batch.images`` is its first rows."""
    from .images import decode

    images = buffer[:len(batch.payloads)]
    for i, (key, payload) in enumerate(zip(batch.keys, batch.payloads)):
        images[i] = decode(payload, f"{rec_path} record {key}", image_size)
    batch.images, batch.buffer = images, buffer
    return batch


def _read(pipe, dataset, batch_size, buffers, out_q):
    """Reader stage: batches of records, decoded into a free buffer taken from ``buffers``."""
    def send(batch):
        buffer = pipe.get(buffers)
        if buffer is END:
            return False
        return pipe.put(out_q, _decode_batch(batch, dataset.rec_path, dataset.image_size, buffer))

    batch = _Batch([], [], [])
    width, current, done = dataset.layout.width, None, set()
    for key, label, payload in dataset.iter_records():
        if pipe.stop.is_set():
            return
        cls = input_class_id(label, dataset.rec_path, key, dataset.num_classes, width)
        if cls != current:  # the output's identities are the runs of one class id
            if cls in done:
                raise FaceKDError(f"{dataset.rec_path} record {key}: class {cls} re-appears after other classes; "
                                  "the images of one class must be contiguous, rebuild the dataset with its "
                                  "images grouped by class (face2rec2.py)")
            done.add(current)
            current = cls
        batch.keys.append(key)
        batch.classes.append(cls)
        batch.payloads.append(payload)
        if len(batch.keys) == batch_size:
            if not send(batch):
                return
            batch = _Batch([], [], [])
    if batch.keys and not send(batch):
        return
    pipe.put(out_q, END)


def _write(pipe, writer, in_q, bar):
    while True:
        batch = pipe.get(in_q)
        if batch is END:
            return
        for label, payload in zip(label_layout.make_soft(batch.vectors, batch.classes), batch.payloads):
            writer.add(label, payload)
        bar.update(len(batch.payloads))


def check_build_args(data_dir, out_dir, overwrite):
    """Cheap checks before the teacher is loaded: input and output apart (neither inside the other),
    leftovers of a killed run cleared, the output policy (``--overwrite`` replaces only a soft dataset
    this tool wrote) and a writable ``--out``."""
    check_separate(data_dir, "--data-dir", out_dir)
    check_output_folder(out_dir, overwrite, EMBED_TOOL)


def build_soft_dataset(data_dir, out_dir, embedder, overwrite=False, queue_depth=2, progress=True):
    """Write ``out_dir`` = ``data_dir`` with soft labels from ``embedder`` (a facekd.embedder.Embedder).

    Images keep their record keys and bytes; identities are the runs of equal class id;
    ``property`` keeps the input's class count and image size; ``*.bin`` targets are copied.
    Returns a :class:`BuildSummary`.
    """
    from tqdm import tqdm

    check_build_args(data_dir, out_dir, overwrite)
    if embedder.emb_size < 3:
        raise FaceKDError(f"teacher embedding has {embedder.emb_size} dims; soft labels need d >= 3 (--model)")
    start = time.time()
    with RecordDataset(data_dir) as dataset, \
            staged_output(out_dir, overwrite, tool=EMBED_TOOL, kind="soft-dataset") as staged:
        pipe = Pipeline()
        decoded, embedded = queue.Queue(queue_depth), queue.Queue(queue_depth)
        h, w = dataset.image_size
        # one buffer being decoded, queue_depth decoded and waiting, one being embedded
        buffers = queue.Queue()
        for _ in range(queue_depth + 2):
            buffers.put(np.empty((embedder.batch_size, h, w, 3), dtype=np.uint8))
        writer = RecordDatasetWriter(staged, num_classes=dataset.num_classes, image_size=(h, w))
        bar = tqdm(total=dataset.num_images, desc="soft labels", unit="img", disable=not progress, smoothing=0.1)
        threads = [pipe.thread(_read, pipe, dataset, embedder.batch_size, buffers, decoded, name="facekd-read"),
                   pipe.thread(_write, pipe, writer, embedded, bar, name="facekd-write")]
        try:
            while not pipe.stop.is_set():
                batch = pipe.get(decoded)
                if batch is END:
                    pipe.put(embedded, END)
                    break
                batch.vectors = embedder.embed(batch.images)
                buffers.put(batch.buffer)  # the teacher has copied the pixels: the reader may reuse it
                batch.images = batch.buffer = None
                check_finite(batch.vectors, batch.keys, "teacher")
                pipe.put(embedded, batch)
        except BaseException as exc:
            pipe.fail(exc)
        finally:
            pipe.join(threads)
            bar.close()
        if pipe.error is not None:
            writer.abort()
            raise pipe.error
        if writer.num_images != dataset.num_images:
            writer.abort()
            raise FaceKDError(f"{dataset.rec_path}: read {writer.num_images} of {dataset.num_images} images; "
                              "the file is truncated or changed while reading")
        copy_targets(data_dir, staged)
        num_images, num_identities = writer.commit()
    return BuildSummary(num_images, num_identities, embedder.emb_size, time.time() - start, out_dir)


def build_from_checkpoint(data_dir, out_dir, model, batch_size=64, cpu_contexts=1, overwrite=False, progress=True):
    """:func:`build_soft_dataset` with the teacher ``model`` ("prefix,epoch"), after the cheap checks."""
    check_teacher_args(model, batch_size)
    check_build_args(data_dir, out_dir, overwrite)
    with RecordDataset(data_dir) as dataset:
        image_size = dataset.image_size
    embedder = load_teacher(model, batch_size, cpu_contexts, image_size)
    return build_soft_dataset(data_dir, out_dir, embedder, overwrite=overwrite, progress=progress)
