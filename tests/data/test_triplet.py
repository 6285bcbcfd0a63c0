"""Semi-hard triplet selection, bag sampling, A|P|N layout and the triplet iterator."""
import logging

import mxnet as mx
import numpy as np
import pytest

from datahelpers import face_like, png_bytes
from facekd.data.labels import make_soft
from facekd.data.recordio import RecordDatasetWriter
from facekd.data.triplet import BagSampler, TripletIter, apn_layout, select_triplets
from facekd.errors import FaceKDError

SIZE = 32
SHAPE = (3, SIZE, SIZE)
TOL = 1e-5  # float32 distances vs the float64 reference


# ----------------------------------------------------------------------------- brute-force reference
def brute_force(emb, classes, alpha, max_ap=0.0):
    """{(a, p): (strict negatives, loose negatives)} by plain loops in float64, a < p same class."""
    e = np.asarray(emb, np.float64)
    e = e / np.linalg.norm(e, axis=1, keepdims=True)
    n = len(e)
    out = {}
    for a in range(n):
        for p in range(a + 1, n):
            if classes[a] != classes[p]:
                continue
            d_ap = float(np.sum((e[a] - e[p]) ** 2))
            if max_ap > 0 and d_ap > max_ap + TOL:
                continue
            tight, loose = set(), set()
            for m in range(n):
                if classes[m] == classes[a]:
                    continue
                d_an = float(np.sum((e[a] - e[m]) ** 2))
                if d_an - d_ap > TOL and d_an - d_ap < alpha - TOL:
                    tight.add(m)
                if d_an - d_ap > -TOL and d_an - d_ap < alpha + TOL:
                    loose.add(m)
            if max_ap > 0 and d_ap > max_ap - TOL:
                tight = set()  # at the max_ap boundary either answer is right
            out[(a, p)] = (tight, loose)
    return out


def random_bag(seed, sizes=(5, 4, 6, 3, 1, 5, 2), dim=6, shuffle=True):
    rng = np.random.default_rng(seed)
    classes = np.repeat(np.arange(10, 10 + len(sizes)), sizes)
    if shuffle:  # images of one class need not be contiguous: grouping is by class id
        classes = classes[rng.permutation(len(classes))]
    centres = rng.normal(size=(len(sizes), dim))
    emb = centres[classes - 10] + 0.8 * rng.normal(size=(len(classes), dim))
    return emb.astype(np.float32), classes


# value_bits coarsens the sort keys so that most candidates fall in the exactly-checked boundary buckets
@pytest.mark.parametrize("seed,alpha,max_ap,value_bits", [
    (0, 0.35, 0.0, None), (1, 0.35, 0.0, None), (2, 1.0, 0.0, None), (3, 0.5, 0.8, None),
    (4, 0.35, 0.0, 3), (5, 0.35, 0.0, 6), (6, 3.0, 0.0, 4), (7, 0.35, 0.0, 2)])
def test_selection_matches_brute_force(seed, alpha, max_ap, value_bits):
    emb, classes = random_bag(seed)
    ref = brute_force(emb, classes, alpha, max_ap)
    triplets = select_triplets(emb, classes, alpha, np.random.default_rng(seed), max_ap,
                               block_rows=8, value_bits=value_bits)
    assert triplets.dtype == np.int64 and triplets.shape[1] == 3
    pairs = [(int(a), int(p)) for a, p, _ in triplets]
    assert len(set(pairs)) == len(pairs)  # one triplet per pair
    for a, p, n in triplets:
        assert (int(a), int(p)) in ref  # same class, anchor before positive
        assert int(n) in ref[(int(a), int(p))][1]
    must = {pair for pair, (tight, _) in ref.items() if tight}
    may = {pair for pair, (_, loose) in ref.items() if loose}
    assert must <= set(pairs) <= may
    assert len(must) > 5  # the case is not vacuous


def test_negative_is_uniform_among_valid():
    emb, classes = random_bag(4, sizes=(2, 10, 10, 10), shuffle=False)
    ref = brute_force(emb, classes, 2.0)
    tight, loose = ref[(0, 1)]
    assert tight == loose and len(tight) >= 5
    counts = {}
    for seed in range(600):
        triplets = select_triplets(emb, classes, 2.0, np.random.default_rng(seed), value_bits=[None, 4][seed % 2])
        n = int(triplets[(triplets[:, 0] == 0) & (triplets[:, 1] == 1), 2][0])
        counts[n] = counts.get(n, 0) + 1
    assert set(counts) == tight
    expected = 600 / len(tight)
    assert all(abs(c - expected) < 5 * np.sqrt(expected) for c in counts.values())


def test_selection_edge_cases():
    rng = np.random.default_rng(0)
    assert select_triplets(np.eye(3, dtype=np.float32), [0, 1, 2], 0.35, rng).shape == (0, 3)
    same = np.ones((4, 3), np.float32)  # all distances 0: no d_an > d_ap
    assert select_triplets(same, [0, 0, 1, 1], 0.35, rng).shape == (0, 3)
    with pytest.raises(FaceKDError):
        select_triplets(same, [0, 0, 1], 0.35, rng)


def test_apn_layout_per_device():
    triplets = np.arange(3 * 10).reshape(10, 3)  # triplet t = (3t, 3t+1, 3t+2)
    batches = apn_layout(triplets, triplets_per_device=2, num_devices=2)
    assert batches.shape == (2, 12)  # 10 triplets -> 2 batches of 4, 2 left over
    expected0 = [0, 3, 1, 4, 2, 5, 6, 9, 7, 10, 8, 11]  # device 0: A A P P N N, device 1: same
    assert batches[0].tolist() == expected0
    assert batches[1].tolist() == [v + 12 for v in expected0]


def test_bag_sampler():
    groups = [np.arange(1, 6), np.arange(6, 8), np.arange(8, 20), np.arange(20, 21), np.arange(21, 30)]
    classes = np.array([5, 6, 7, 8, 9])
    sampler = BagSampler(classes, groups, bag_size=8, images_per_identity=4, rng=np.random.default_rng(0))
    seen = []
    for _ in range(6):
        keys, cls = sampler.next_bag()
        assert len(keys) == 8 and len(set(keys.tolist())) == 8
        starts = np.flatnonzero(np.diff(np.r_[-1, cls])) # each class contiguous, once
        assert len(set(cls[starts].tolist())) == len(starts)
        for c, g in zip(classes, groups):
            got = keys[cls == c]
            assert len(got) <= 4 and set(got.tolist()) <= set(g.tolist())
        seen.extend(cls[starts].tolist())
    # the class order is walked in rounds: the first 5 classes drawn are all different
    assert sorted(seen[:5]) == [5, 6, 7, 8, 9]
    small = BagSampler(classes, groups, bag_size=100, images_per_identity=4, rng=np.random.default_rng(1))
    keys, cls = small.next_bag()
    assert len(keys) == 4 + 2 + 4 + 1 + 4 and sorted(set(cls.tolist())) == [5, 6, 7, 8, 9]


# ----------------------------------------------------------------------------- the iterator
CLASS_SIZES = [6, 6, 5, 6, 4, 6]  # 33 images
TEACHER_DIM = 4


@pytest.fixture(scope="module")
def soft_dir(tmp_path_factory):
    folder = str(tmp_path_factory.mktemp("soft"))
    classes = np.repeat(np.arange(len(CLASS_SIZES)), CLASS_SIZES)
    teacher = np.random.default_rng(0).normal(size=(len(classes), TEACHER_DIM)).astype(np.float32)
    with RecordDatasetWriter(folder, image_size=(SIZE, SIZE)) as w:
        for i, row in enumerate(make_soft(teacher, classes)):
            w.add(row, png_bytes(face_like(i, SIZE)))
    return folder


class Embed:
    """A fixed random projection of the pixels; records the calls."""

    def __init__(self):
        self.proj = np.random.default_rng(1).normal(size=(SIZE * SIZE * 3, 8))
        self.calls = []

    def embed(self, images):
        self.calls.append((images.dtype, images.shape))
        return (images.reshape(len(images), -1).astype(np.float64) / 255.0) @ self.proj


class FnEmbed:
    """An embedder made of a function of the images."""

    def __init__(self, fn):
        self.embed = fn


def reference_images(folder):
    rec = mx.recordio.MXIndexedRecordIO(f"{folder}/train.idx", f"{folder}/train.rec", "r")
    out = {}
    for key in range(1, sum(CLASS_SIZES) + 1):
        header, payload = mx.recordio.unpack(rec.read_idx(key))
        out[key] = (np.asarray(header.label, np.float32), mx.image.imdecode(payload).asnumpy())
    rec.close()
    return out


def test_triplet_iter_batches(soft_dir, caplog):
    ref = reference_images(soft_dir)
    by_teacher = {tuple(lab[:-1]): key for key, (lab, _) in ref.items()}
    embed = Embed()
    alpha = 2.0
    with caplog.at_level(logging.INFO, logger="facekd.data.triplet"):
        with TripletIter(soft_dir, embed, batch_size=12, num_devices=2, bag_size=24, images_per_identity=5,
                         alpha=alpha, data_shape=SHAPE, rand_mirror=False, seed=0,
                         embed_batch_size=10) as data_iter:
            assert data_iter.provide_data[0].shape == (12,) + SHAPE
            assert data_iter.provide_label[0].shape == (12, TEACHER_DIM + 1)
            batches = list(data_iter)
            stats = dict(data_iter.stats)
    assert "triplets" in caplog.text and str(stats["triplets"]) in caplog.text
    assert stats["images"] == 24 and len(batches) == stats["triplets"] // 4 >= 2
    assert [c[1] for c in embed.calls] == [(10, SIZE, SIZE, 3), (10, SIZE, SIZE, 3), (4, SIZE, SIZE, 3)]
    assert all(c[0] == np.uint8 for c in embed.calls)
    seen = set()
    for batch in batches:
        data, label = batch.data[0].asnumpy(), batch.label[0].asnumpy()
        assert data.shape == (12,) + SHAPE and label.shape == (12, TEACHER_DIM + 1)
        keys = [by_teacher[tuple(row[:-1])] for row in label]
        for i, key in enumerate(keys):  # image i is the record its label belongs to
            np.testing.assert_array_equal(data[i], ref[key][1].transpose(2, 0, 1))
            np.testing.assert_array_equal(label[i], ref[key][0])
        for dev in range(2):  # each device batch: anchors | positives | negatives
            a, p, n = (np.array(keys[6 * dev + 2 * blk:6 * dev + 2 * blk + 2]) for blk in range(3))
            cls = label[6 * dev:6 * dev + 6, -1].reshape(3, 2)
            assert (cls[0] == cls[1]).all() and (cls[0] != cls[2]).all()
            e = embed.embed(np.stack([ref[k][1] for k in np.r_[a, p, n]]))
            e = e / np.linalg.norm(e, axis=1, keepdims=True)
            d_ap = ((e[0:2] - e[2:4]) ** 2).sum(1)
            d_an = ((e[0:2] - e[4:6]) ** 2).sum(1)
            assert (d_an > d_ap - TOL).all() and (d_an - d_ap < alpha + TOL).all()
            seen.update((int(x), int(y)) for x, y in zip(a, p))
    assert len(seen) == 4 * len(batches)  # each anchor/positive pair at most once


class WeightedEmbed(Embed):
    """Embed whose projection is scaled by the weights handed over with set_params."""

    def __init__(self):
        super().__init__()
        self.scale, self.handed = 1.0, []

    def set_params(self, arg_params, aux_params):
        self.scale = arg_params["scale"]
        self.handed.append((self.scale, len(self.calls)))

    def embed(self, images):
        return self.scale * super().embed(images)


def test_triplet_iter_reset_mines_a_new_bag_with_the_weights_handed_over(soft_dir):
    embed = WeightedEmbed()
    with TripletIter(soft_dir, embed, batch_size=6, bag_size=12, images_per_identity=4, alpha=2.0,
                     data_shape=SHAPE, seed=1) as data_iter:
        assert data_iter.needs_weights
        assert embed.calls == []  # nothing is mined before the first batch is asked for
        data_iter.set_weights({"scale": 2.0}, {})
        first = list(data_iter)
        calls = len(embed.calls)
        data_iter.set_weights({"scale": 3.0}, {})
        data_iter.reset()
        second = list(data_iter)
    assert first and second and len(embed.calls) > calls
    assert embed.handed == [(2.0, 0), (3.0, calls)]  # each bag is embedded with the weights handed before it


def test_triplet_iter_checks(soft_dir):
    embed = Embed()
    with pytest.raises(FaceKDError, match="triplet_bag_size"):
        TripletIter(soft_dir, embed, batch_size=12, num_devices=2, bag_size=30, data_shape=SHAPE)
    with pytest.raises(FaceKDError, match="--per-batch-size 4"):
        TripletIter(soft_dir, embed, batch_size=8, num_devices=2, bag_size=32, data_shape=SHAPE)
    with pytest.raises(FaceKDError, match="--per-batch-size 4"):
        TripletIter(soft_dir, embed, per_device_batch=4, num_devices=2, bag_size=32, data_shape=SHAPE)
    with TripletIter(soft_dir, embed, per_device_batch=6, num_devices=2, bag_size=24, data_shape=SHAPE) as ok:
        assert ok.batch_size == 12 and ok.triplets_per_device == 2
    with pytest.raises(FaceKDError, match="images_per_identity"):
        TripletIter(soft_dir, embed, batch_size=6, bag_size=12, images_per_identity=1, data_shape=SHAPE)
    constant = TripletIter(soft_dir, FnEmbed(lambda x: np.ones((len(x), 4))), batch_size=6, bag_size=12,
                           data_shape=SHAPE, max_empty_bags=2)
    with constant, pytest.raises(FaceKDError, match="no batch of triplets"):
        next(constant)
    wrong = TripletIter(soft_dir, FnEmbed(lambda x: np.ones((3, 4))), batch_size=6, bag_size=12, data_shape=SHAPE)
    with wrong, pytest.raises(FaceKDError, match="mining embedder returned shape"):
        next(wrong)


def test_triplet_iter_shards_classes(soft_dir):
    parts = []
    for part in range(2):
        with TripletIter(soft_dir, Embed(), batch_size=6, bag_size=12, data_shape=SHAPE,
                         part_index=part, num_parts=2) as data_iter:
            parts.append(set(data_iter.sampler.classes.tolist()))
            keys, cls = data_iter.sampler.next_bag()
            assert set(cls.tolist()) <= parts[-1]
    assert parts[0].isdisjoint(parts[1]) and parts[0] | parts[1] == set(range(len(CLASS_SIZES)))
