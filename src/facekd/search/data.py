"""The search data: the training set split in two halves, one image iterator each.

DARTS trains the weights on one half and the architecture on the other. Here every
identity gives half of its images (shuffled by the seed; the odd one to the weights)
to each half, so that the margin head knows every identity on both sides; an identity
with a single image is seen by the weights only. The iterators are the trainer's
(``data.iterators.FaceImageIter``: decoded and mirrored in threads, batches prefetched,
the last partial batch dropped), each over a reader of its own (a ``RecordDataset`` reads
from one thread at a time).
"""
import os

import numpy as np

from ..data.iterators import FaceImageIter, keys_by_class
from ..errors import FaceKDError

HALVES = ("weights", "architecture")


def split_halves(dataset, seed=0):
    """(weight-half keys, architecture-half keys): per identity, a shuffled half of its images each."""
    rng = np.random.default_rng(seed)
    first, second = [], []
    for keys in keys_by_class(dataset)[1]:
        keys = rng.permutation(keys)
        cut = (len(keys) + 1) // 2
        first.append(keys[:cut])
        second.append(keys[cut:])
    return np.sort(np.concatenate(first)), np.sort(np.concatenate(second))


def half_iterators(dataset, batch_size, seed, rand_mirror=True, decode_threads=2):
    """(weight-half iterator, architecture-half iterator) of ``batch_size`` images per batch."""
    halves = split_halves(dataset, 0 if seed is None else seed)
    for name, keys in zip(HALVES, halves):
        if len(keys) < batch_size:
            raise FaceKDError(f"{dataset.folder}: the {name} half has {len(keys)} images, fewer than one batch "
                              f"of {batch_size}; lower --batch-size (each half holds about half of the "
                              f"{dataset.num_images} images)")
    iters = []
    try:
        for i, keys in enumerate(halves):
            # each half reads with a reader of its own: the two producer threads read at the same time
            iters.append(FaceImageIter(os.fspath(dataset.folder), batch_size=batch_size,
                                       data_shape=(3,) + tuple(dataset.image_size), shuffle=True,
                                       rand_mirror=rand_mirror, keys=keys, decode_threads=decode_threads,
                                       seed=None if seed is None else seed + 1 + i))
    except BaseException:
        for it in iters:
            it.close()
        raise
    return tuple(iters)
