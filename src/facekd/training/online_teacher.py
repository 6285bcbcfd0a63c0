"""Teacher vectors computed on the fly by a scheduled teacher (PocketNet's multi-step KD).

``--teacher-schedule 'prefix,e1|e2|...'``: epoch k of the student embeds its
(augmented) batches with checkpoint ``e_{k+1}`` of the teacher, the last one for
every later epoch; the label row becomes ``[teacher vector, class id]`` through
the one label-layout module.
"""
import logging

import mxnet as mx

from ..data import labels
from ..checkpoints import load_checkpoint, load_symbol, parse_model_list
from ..embedder import Embedder, embedding_size


def schedule_teacher_dim(schedule_text, image_size):
    """Dimension of the scheduled teachers' embeddings (their first graph, weights not loaded)."""
    prefix, _ = parse_model_list(schedule_text, flag="--teacher-schedule")[0]
    return embedding_size(load_symbol(prefix), image_size, name=f"--teacher-schedule {schedule_text}")


class ScheduledTeacherIter(mx.io.DataIter):
    """Wraps a training iterator; replaces each batch's label by scheduled-teacher soft labels."""

    needs_weights = False  # its teacher is a checkpoint, not the student

    def __init__(self, base, schedule_text, contexts, batch_size, image_size):
        super().__init__(batch_size)
        self.base = base
        self.schedule = parse_model_list(schedule_text, flag="--teacher-schedule")
        self.epoch = 0
        self._started = False
        self._current = None
        self._embedder = None
        self._contexts, self._batch_size, self._image_size = contexts, batch_size, image_size
        self._use(0)
        label_shape = (batch_size, self._embedder.emb_size + 1)
        self._provide_label = [mx.io.DataDesc("softmax_label", label_shape)]

    @property
    def teacher_dim(self):
        return self._embedder.emb_size

    @property
    def batches_per_epoch(self):
        return self.base.batches_per_epoch

    @property
    def provide_data(self):
        return self.base.provide_data

    @property
    def provide_label(self):
        return self._provide_label

    def _use(self, epoch):
        prefix, number = self.schedule[min(epoch, len(self.schedule) - 1)]
        if (prefix, number) == self._current:
            return
        if self._embedder is None:
            self._embedder = Embedder.from_checkpoint(prefix, number, self._contexts, self._batch_size,
                                                      image_size=self._image_size)
        else:
            _, arg_params, aux_params = load_checkpoint(prefix, number)
            self._embedder.set_params(arg_params, aux_params)
        self._current = (prefix, number)
        logging.info("template_kd: epoch %d embeds with teacher %s-%04d", epoch, prefix, number)

    def position(self, batches_done):
        return self.base.position(batches_done)

    def restore(self, epoch, position):
        """Continue epoch ``epoch`` (its scheduled teacher) where the base iterator stopped."""
        self.epoch, self._started = epoch, True
        self._use(epoch)
        self.base.restore(epoch, position)

    def reset(self):
        """Called at the start of every epoch after the first: advance the schedule."""
        if self._started:
            self.epoch += 1
        self._started = True
        self._use(self.epoch)
        self.base.reset()

    def next(self):
        batch = self.base.next()
        images = batch.data[0].asnumpy()
        cls = labels.class_ids(batch.label[0].asnumpy())
        soft = labels.make_soft(self._embedder.embed(images), cls)
        return mx.io.DataBatch(data=batch.data, label=[mx.nd.array(soft)], pad=batch.pad,
                               provide_data=self.provide_data, provide_label=self.provide_label)
