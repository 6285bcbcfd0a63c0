"""Triplet bags for the triplet distillation losses (FaceNet semi-hard selection).

Per bag: shuffle the classes (grouped by class id, never by the whole label
vector), take at most ``images_per_identity`` random images of each until the
bag holds ``bag_size`` images; embed the bag with the current student
(``embed_fn``, inference); for every anchor/positive pair within a class pick
a random negative n with d_ap < d_an and d_an - d_ap < alpha (squared L2 on
normalised embeddings); shuffle the triplets and lay each device batch out as
A | P | N blocks. The total batch is the concatenation of the device batches
(Module splits it along axis 0).

One epoch of :class:`TripletIter` is one bag (more when a bag gives fewer
than ``min_batches`` batches), as in insightface: the trainer's ``reset()`` at
each epoch mines the next bag with the student as it is then.
"""
import logging
import time

import numpy as np

from ..errors import FaceKDError
from ..vectors import normalize_rows
from .images import decode
from .iterators import _BatchedIter, keys_by_class, shard

log = logging.getLogger(__name__)


# ----------------------------------------------------------------------------- bag sampling
class BagSampler:
    """Draws bags of image keys from class groups, walking a shuffled class order across bags.

    ``groups[i]`` are the image keys of class ``classes[i]``. A class contributes
    at most ``images_per_identity`` random images; the last class of a bag may
    be cut to fill it exactly. When the order is used up it is reshuffled.
    A bag never holds a class twice, so a dataset smaller than ``bag_size``
    gives bags of all its classes.
    """

    def __init__(self, classes, groups, bag_size, images_per_identity, rng):
        self.classes = np.asarray(classes, dtype=np.int64)
        self.groups = groups
        self.bag_size = int(bag_size)
        self.images_per_identity = int(images_per_identity)
        self.rng = rng
        self._order = np.zeros(0, dtype=np.int64)
        self._cursor = 0

    def _next_class(self):
        if self._cursor >= len(self._order):
            self._order = self.rng.permutation(len(self.classes))
            self._cursor = 0
        self._cursor += 1
        return int(self._order[self._cursor - 1])

    def next_bag(self):
        """(keys (n,), class ids (n,)) of the next bag, images of a class contiguous."""
        keys, cls, taken, size = [], [], set(), 0
        while size < self.bag_size and len(taken) < len(self.classes):
            c = self._next_class()
            if c in taken:
                continue
            taken.add(c)
            group = self.groups[c]
            count = min(len(group), self.images_per_identity, self.bag_size - size)
            keys.append(self.rng.choice(group, size=count, replace=False))
            cls.append(np.full(count, self.classes[c], dtype=np.int64))
            size += count
        return np.concatenate(keys), np.concatenate(cls)


# ----------------------------------------------------------------------------- semi-hard selection
_DIST_MAX = 4.01  # squared L2 of unit vectors is <= 4 (plus rounding)


def select_triplets(embeddings, class_ids, alpha, rng, max_ap=0.0, block_rows=1024, value_bits=None):
    """FaceNet semi-hard triplets of a bag: int64 (T, 3) rows (anchor, positive, negative), shuffled.

    For every pair i < j of images of one class (anchor i, positive j), a
    negative is drawn uniformly among the images of other classes with
    d_ap < d_an and d_an - d_ap < alpha, d the squared L2 distance of the
    normalised embeddings (float32, 1-ulp agreement with a float64 loop);
    pairs without one give no triplet. ``max_ap`` > 0 also skips pairs with
    d_ap > max_ap (insightface's triplet_max_ap). Vectorised: one matrix
    product and one row sort per block of about ``block_rows`` anchors, then
    binary searches per pair (see :func:`_pick_negatives`); no loop over pairs.
    ``value_bits`` (tests only) coarsens the sort keys.
    """
    emb = normalize_rows(embeddings, np.float32)
    class_ids = np.asarray(class_ids, dtype=np.int64).reshape(-1)
    n = len(emb)
    if n != len(class_ids):
        raise FaceKDError(f"select_triplets: {n} embeddings but {len(class_ids)} class ids")
    col_bits = max(1, int(n - 1).bit_length())
    value_bits = 32 - col_bits if value_bits is None else int(value_bits)
    if not 2 <= value_bits <= 32 - col_bits:
        raise FaceKDError(f"a bag of {n} images is too large for triplet selection; lower triplet_bag_size")
    keys = _KeySpace(col_bits, value_bits, alpha)
    order = np.argsort(class_ids, kind="stable")
    _, starts, counts = np.unique(class_ids[order], return_index=True, return_counts=True)
    keep = counts >= 2
    starts, counts = starts[keep], counts[keep]
    found = []
    block = 0
    while block < len(starts):  # whole classes per block, about block_rows rows
        stop = block + max(1, int(np.searchsorted(np.cumsum(counts[block:]), block_rows, side="right")))
        members = [order[a:a + c] for a, c in zip(starts[block:stop], counts[block:stop])]
        rows = np.concatenate(members)
        # scaled squared distances s * ||a - b||^2 = 2s - 2s a.b, computed in place
        dist = (emb[rows] * np.float32(-2.0 * keys.scale)) @ emb.T
        dist += np.float32(2.0 * keys.scale)
        np.maximum(dist, 0.0, out=dist)
        anchors, positives, d_ap = _class_pairs(dist, members, max_ap * keys.scale, keys.top)
        if len(anchors):
            pair, negative = _pick_negatives(dist, anchors, d_ap, class_ids[rows], class_ids, keys, rng)
            found.append(np.stack([rows[anchors[pair]], positives[pair], negative], axis=1))
        block = stop
    triplets = np.concatenate(found) if found else np.zeros((0, 3), dtype=np.int64)
    return triplets[rng.permutation(len(triplets))].astype(np.int64)


class _KeySpace:
    """Sort keys ``floor(scaled distance) << col_bits | column`` in a uint32.

    Distances are scaled by ``scale`` so that 0..4 spans ``0..top - 1``; the
    value ``top`` marks same-class columns. ``alpha`` is scaled the same way.
    """

    def __init__(self, col_bits, value_bits, alpha):
        self.col_bits = col_bits
        self.col_mask = (1 << col_bits) - 1
        self.top = (1 << value_bits) - 1
        self.scale = (self.top - 1) / _DIST_MAX
        self.alpha = np.float32(alpha * self.scale)


def _class_pairs(dist, members, max_ap, same_class_value):
    """Anchor rows, positive columns and d_ap of all pairs i < j within each class of a block.

    Then sets the block's same-class distances to ``same_class_value``.
    """
    anchors, positives, d_ap = [], [], []
    offset = 0
    for m in members:
        ai, pi = np.triu_indices(len(m), 1)
        anchors.append(offset + ai)
        positives.append(m[pi])
        d_ap.append(dist[offset + ai, m[pi]])
        dist[offset:offset + len(m), m[:, None]] = same_class_value
        offset += len(m)
    anchors, positives, d_ap = np.concatenate(anchors), np.concatenate(positives), np.concatenate(d_ap)
    if max_ap > 0:
        keep = d_ap <= max_ap
        anchors, positives, d_ap = anchors[keep], positives[keep], d_ap[keep]
    return anchors, positives, d_ap


def _ranges(starts, lengths):
    """Concatenation of arange(s, s + l) over the pairs (s, l)."""
    total = int(lengths.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    first = np.cumsum(lengths) - lengths
    return np.repeat(starts - first, lengths) + np.arange(total, dtype=np.int64)


def _pick_negatives(dist, anchors, d_ap, row_class, class_ids, keys, rng):
    """(pair indices that found one, their negative columns): one uniform valid negative per pair.

    Each row of (scaled) distances becomes sort keys ``floor(d) << col_bits |
    column`` (floor is monotone) and is sorted once. A pair's candidates are a
    range of its anchor's sorted row: the buckets strictly between floor(d_ap)
    and floor(d_ap + alpha - 1) are valid for sure; the few in the boundary
    buckets are checked exactly. A random rank over (interior + valid
    boundary) picks the negative uniformly.
    """
    rows, n = dist.shape
    cb = keys.col_bits
    sort_keys = dist.astype(np.uint32)                       # floor of non-negative values
    sort_keys <<= np.uint32(cb)
    sort_keys |= np.arange(n, dtype=np.uint32)
    sort_keys.sort(axis=1)                                   # uint32 sort: fast
    flat = sort_keys.astype(np.int64)
    flat += (np.arange(rows, dtype=np.int64) << 32)[:, None]  # rows in order: one searchable array
    flat = flat.ravel()

    base = anchors.astype(np.int64) << 32
    d64 = d_ap.astype(np.float64)
    q_ap = np.floor(d64).astype(np.int64)
    q_in = np.clip(np.floor(d64 + float(keys.alpha) - 1.0), 0, keys.top).astype(np.int64)
    q_out = np.minimum(np.floor(d64 + float(keys.alpha) + 1.0), keys.top).astype(np.int64)
    a = np.searchsorted(flat, base + (q_ap << cb))           # first with floor(d) >= floor(d_ap)
    b = np.searchsorted(flat, base + ((q_ap + 1) << cb))     # first with floor(d) > floor(d_ap): d > d_ap
    c = np.searchsorted(flat, base + (q_in << cb))           # first with d >= floor(d_ap + alpha - 1)
    d = np.searchsorted(flat, base + ((q_out + 1) << cb))    # first with d > d_ap + alpha + 1
    split = c > b
    inner = np.where(split, c - b, 0)                        # [b, c): valid for sure
    # boundary ranges, checked exactly: [a, b) and [c, d) when split, else all of [a, d)
    starts = np.concatenate([a, np.where(split, c, d)])
    lengths = np.concatenate([np.where(split, b, d) - a, d - np.where(split, c, d)])
    owner = np.repeat(np.tile(np.arange(len(anchors)), 2), lengths)
    cols = flat[_ranges(starts, lengths)] & keys.col_mask
    diff = dist[anchors[owner], cols] - d_ap[owner]
    ok = (diff > 0) & (diff < keys.alpha) & (class_ids[cols] != row_class[anchors[owner]])
    owner, cols = owner[ok], cols[ok]
    by_pair = np.argsort(owner, kind="stable")
    owner, cols = owner[by_pair], cols[by_pair]
    num_edge = np.bincount(owner, minlength=len(anchors))

    total = inner + num_edge
    pair = np.flatnonzero(total > 0)
    rank = (rng.random(len(pair)) * total[pair]).astype(np.int64)
    negative = np.empty(len(pair), dtype=np.int64)
    from_inner = rank < inner[pair]
    negative[from_inner] = flat[b[pair][from_inner] + rank[from_inner]] & keys.col_mask
    edge_first = np.cumsum(num_edge) - num_edge
    rest = ~from_inner
    negative[rest] = cols[edge_first[pair[rest]] + rank[rest] - inner[pair[rest]]]
    return pair, negative


def apn_layout(triplets, triplets_per_device, num_devices):
    """Bag positions of whole batches, int64 (num_batches, 3 * triplets_per_device * num_devices).

    Each device's slice of a batch is [anchors | positives | negatives] of its
    own ``triplets_per_device`` triplets; leftover triplets are dropped.
    """
    triplets = np.asarray(triplets, dtype=np.int64).reshape(-1, 3)
    per_batch = triplets_per_device * num_devices
    num_batches = len(triplets) // per_batch
    used = triplets[:num_batches * per_batch].reshape(num_batches, num_devices, triplets_per_device, 3)
    return np.ascontiguousarray(used.transpose(0, 1, 3, 2)).reshape(num_batches, 3 * per_batch)


def check_triplet_batch(batch_size, num_devices, bag_size):
    """Validate the batch geometry; returns the triplets per device batch."""
    if num_devices < 1 or batch_size % num_devices:
        raise FaceKDError(f"batch of {batch_size} does not split over {num_devices} devices; "
                          "the batch must be --per-batch-size x contexts")
    per_device = batch_size // num_devices
    if per_device % 3:
        raise FaceKDError(f"--per-batch-size {per_device} must be divisible by 3 for triplet losses "
                          "(each device batch is anchors | positives | negatives), e.g. 180")
    if bag_size < 1 or bag_size % batch_size:
        raise FaceKDError(f"triplet_bag_size {bag_size} must be a positive multiple of the total batch "
                          f"size {batch_size} (--per-batch-size {per_device} x {num_devices} contexts); "
                          "change triplet_bag_size in config.py or --per-batch-size")
    return per_device // 3


def total_batch(batch_size, per_device_batch, num_devices):
    """The total batch from either ``batch_size`` or ``per_device_batch`` x ``num_devices``."""
    if per_device_batch is None:
        if batch_size is None:
            raise FaceKDError("TripletIter needs batch_size (total) or per_device_batch (--per-batch-size)")
        return int(batch_size)
    total = int(per_device_batch) * int(num_devices)
    if batch_size is not None and int(batch_size) != total:
        raise FaceKDError(f"batch_size {batch_size} != per_device_batch {per_device_batch} "
                          f"x {num_devices} devices")
    return total


# ----------------------------------------------------------------------------- the iterator
class TripletIter(_BatchedIter):
    """Batches of semi-hard triplets, A | P | N per device, mined per bag with ``embedder``.

    ``embedder.embed(images) -> (n, d)`` embeds uint8 RGB (n, H, W, 3) images with the
    current student (inference); it is called in chunks of ``embed_batch_size``
    (default: ``batch_size``) during ``reset()``, or on the first ``next()`` when no
    reset came first. The trainer hands the student's current weights over with
    :meth:`set_weights` before each bag (``needs_weights``): the iterator never reaches
    back into the trainer. ``batch_size`` is the total batch (per_batch_size x
    num_devices); ``per_device_batch`` may be given instead. Labels are those of the
    selected images: soft rows (B, d+1) for a soft-labelled set, else class ids (B,).
    ``part_index`` / ``num_parts`` keep one shard of the classes (dist workers).
    """

    needs_weights = True  # mining embeds with the student as it is at each bag

    def __init__(self, dataset, embedder, batch_size=None, num_devices=1, bag_size=7200,
                 images_per_identity=18,
                 alpha=0.35, max_ap=0.0, data_shape=(3, 112, 112), rand_mirror=True, color_jitter=0,
                 cutoff=False, part_index=0, num_parts=1, seed=None, decode_threads=2,
                 embed_batch_size=None, min_batches=1, max_empty_bags=5, prefetch=2, per_device_batch=None):
        batch_size = total_batch(batch_size, per_device_batch, num_devices)
        super().__init__(dataset, batch_size, data_shape, rand_mirror, color_jitter, cutoff,
                         seed, decode_threads, prefetch)
        try:
            self.triplets_per_device = check_triplet_batch(self.batch_size, int(num_devices), int(bag_size))
            self.num_devices = int(num_devices)
            if images_per_identity < 2:
                raise FaceKDError(f"images_per_identity {images_per_identity} must be >= 2 "
                                  "(anchors need positives of their class)")
            if alpha <= 0:
                raise FaceKDError(f"triplet_alpha {alpha} must be > 0")
            self.embedder = embedder
            self.bag_size = int(bag_size)
            self.alpha = float(alpha)
            self.max_ap = float(max_ap)
            self.embed_batch_size = int(embed_batch_size or self.batch_size)
            self.min_batches = max(1, int(min_batches))
            self.max_empty_bags = max(1, int(max_empty_bags))
            classes, groups = keys_by_class(self.dataset)
            part = shard(np.arange(len(classes)), part_index, num_parts, "classes")
            classes, groups = classes[part], [groups[i] for i in part]
            if max((len(g) for g in groups), default=0) < 2:
                raise FaceKDError(f"{self.dataset.folder}: no class has 2 or more images; "
                                  "triplet losses need positives")
            self.sampler = BagSampler(classes, groups, self.bag_size, images_per_identity, self._rng)
            self.stats = {}
            self._batches = np.zeros((0, self.batch_size), dtype=np.int64)
            self._keys = self._labels = self._payloads = None
        except BaseException:
            self.close()
            raise

    # ---------------------------------------------------------------- one bag
    def _read_bag(self, keys):
        return self.dataset.read_images(keys)

    def _decode_chunk(self, payloads, keys, lo, hi):
        """Start decoding bag images lo..hi-1 (un-augmented) in the pool: (uint8 array, futures)."""
        out = np.empty((hi - lo,) + self.data_shape[1:] + (3,), dtype=np.uint8)

        def work(part):
            for i in part:
                out[i - lo] = decode(payloads[i], self.record_name(keys[i]), self.data_shape[1:])

        parts = [p for p in np.array_split(np.arange(lo, hi), self._threads) if len(p)]
        return out, [self._pool.submit(work, p) for p in parts]

    def _embed_bag(self, payloads, keys):
        """Embeddings (n, d) of the bag, decoding the next chunk while the embedder runs on this one."""
        n, step = len(payloads), self.embed_batch_size
        chunks = [(lo, min(lo + step, n)) for lo in range(0, n, step)]
        pending = self._decode_chunk(payloads, keys, *chunks[0])
        out, embed_time = [], 0.0
        for i, (lo, hi) in enumerate(chunks):
            images, futures = pending
            for f in futures:
                f.result()
            if i + 1 < len(chunks):
                pending = self._decode_chunk(payloads, keys, *chunks[i + 1])
            t0 = time.perf_counter()
            emb = np.asarray(self.embedder.embed(images), dtype=np.float32)
            embed_time += time.perf_counter() - t0
            if emb.ndim != 2 or emb.shape[0] != hi - lo:
                raise FaceKDError(f"the mining embedder returned shape {emb.shape} for {hi - lo} images; "
                                  "expected (n, emb_size)")
            out.append(emb)
        return np.concatenate(out), embed_time

    def mine_bag(self):
        """Sample, embed and mine one bag.

        Returns (keys (n,), labels (n, w), payloads, batch positions (b, batch_size)).
        """
        t0 = time.perf_counter()
        keys, cls = self.sampler.next_bag()
        labels, payloads = self._read_bag(keys)
        emb, embed_time = self._embed_bag(payloads, keys)
        t1 = time.perf_counter()
        triplets = select_triplets(emb, cls, self.alpha, self._rng, self.max_ap)
        batches = apn_layout(triplets, self.triplets_per_device, self.num_devices)
        t2 = time.perf_counter()
        self.stats = dict(images=len(keys), classes=len(np.unique(cls)), triplets=len(triplets),
                          batches=len(batches), embed_seconds=embed_time, read_seconds=t1 - t0 - embed_time,
                          select_seconds=t2 - t1, total_seconds=t2 - t0)
        log.info("triplet bag: %d images of %d classes, %d triplets -> %d batches "
                 "(embed %.1fs, read+decode %.1fs, select %.1fs)", len(keys), self.stats["classes"],
                 len(triplets), len(batches), embed_time, self.stats["read_seconds"], t2 - t1)
        return keys, labels, payloads, batches

    # ---------------------------------------------------------------- epochs
    def set_weights(self, arg_params, aux_params):
        """The student's current weights, for the bags mined from now on."""
        self.embedder.set_params(arg_params, aux_params)

    def next(self):
        if self._producer is None:  # no reset() yet: mine the first bag on first use
            self.reset()
        return super().next()

    def _fetch(self, positions):
        return (self._labels[positions], [self._payloads[p] for p in positions],
                [self.record_name(self._keys[p]) for p in positions])

    def reset(self):
        """Mine the next bag(s) with the embedder's current weights and start prefetching its batches."""
        self._stop()
        keys, labels, payloads, batches, empty = [], [], [], [], 0
        while sum(len(b) for b in batches) < self.min_batches:
            key, lab, pay, bat = self.mine_bag()
            if len(bat) == 0:
                empty += 1
                if empty >= self.max_empty_bags:
                    raise FaceKDError(f"no batch of triplets in {empty} bags (alpha {self.alpha}, "
                                      f"bag of {self.stats['images']} images gave {self.stats['triplets']} "
                                      "triplets); raise triplet_alpha, triplet_bag_size or images_per_identity")
                continue
            offset = sum(len(p) for p in payloads)
            keys.append(key)
            labels.append(lab)
            payloads.extend(pay)
            batches.append(bat + offset)
        self._keys = np.concatenate(keys)
        self._labels = np.concatenate(labels)
        self._payloads = payloads
        self._batches = np.concatenate(batches)
        self.batches_per_epoch = len(self._batches)
        self._start(self._fetch, self._batches)
