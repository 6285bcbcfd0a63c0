"""FaceImageIter and the augmentations, against MXNet's own reader of the same records."""
import threading

import mxnet as mx
import numpy as np
import pytest

from datahelpers import face_like, png_bytes, write_raw_dataset
from facekd.data import augment
from facekd.data import iterators as it
from facekd.data.iterators import FaceImageIter, keys_by_class
from facekd.data.labels import make_soft
from facekd.data.recordio import RecordDataset, RecordDatasetWriter
from facekd.errors import FaceKDError

SIZE = 32
SHAPE = (3, SIZE, SIZE)
CLASS_SIZES = [4, 3, 5]  # 12 images, keys 1..12


def _classes():
    return np.repeat(np.arange(len(CLASS_SIZES)), CLASS_SIZES)


def _identities(classes):
    bounds = np.flatnonzero(np.diff(np.r_[-1, classes, -1])) + 1
    return [[int(a), int(b)] for a, b in zip(bounds[:-1], bounds[1:])]


def _write(folder, labels, payloads=None):
    classes = np.array([int(np.ravel(lab)[-1] if np.size(lab) > 2 else np.ravel(lab)[0]) for lab in labels])
    payloads = payloads or [png_bytes(face_like(i, SIZE)) for i in range(len(labels))]
    write_raw_dataset(str(folder), labels, payloads, _identities(classes),
                      prop=f"{classes.max() + 1},{SIZE},{SIZE}")
    return str(folder)


@pytest.fixture
def hard_dir(tmp_path):
    return _write(tmp_path / "hard", [float(c) for c in _classes()])


def mxnet_reference(folder):
    """{key: (label, CHW float32 image)} read with MXNet's reader and decoder only."""
    rec = mx.recordio.MXIndexedRecordIO(f"{folder}/train.idx", f"{folder}/train.rec", "r")
    header0, _ = mx.recordio.unpack(rec.read_idx(0))
    out = {}
    for key in range(1, int(header0.label[0])):
        header, payload = mx.recordio.unpack(rec.read_idx(key))
        img = mx.image.imdecode(payload).asnumpy()  # RGB HWC uint8
        out[key] = (np.atleast_1d(np.asarray(header.label, np.float32)), img.transpose(2, 0, 1).astype(np.float32))
    rec.close()
    return out


def epoch(iterator):
    datas, labels = [], []
    for batch in iterator:
        datas.append(batch.data[0].asnumpy())
        labels.append(batch.label[0].asnumpy())
    return np.concatenate(datas), np.concatenate(labels)


def match_keys(data, ref):
    """The record key of each image in ``data`` (exact pixel match against the reference)."""
    keys = []
    for img in data:
        hits = [k for k, (_, r) in ref.items() if np.array_equal(img, r)]
        assert len(hits) == 1
        keys.append(hits[0])
    return np.array(keys)


# ----------------------------------------------------------------------------- batches vs MXNet
def test_batches_match_mxnet_reader(hard_dir):
    ref = mxnet_reference(hard_dir)
    with FaceImageIter(hard_dir, 4, SHAPE, shuffle=False, rand_mirror=False) as data_iter:
        assert data_iter.provide_data[0].name == "data" and data_iter.provide_data[0].shape == (4,) + SHAPE
        assert data_iter.provide_label[0].name == "softmax_label" and data_iter.provide_label[0].shape == (4,)
        assert data_iter.num_classes == 3 and data_iter.label_layout.kind == "hard"
        batches = list(data_iter)
    assert len(batches) == 3
    for b, batch in enumerate(batches):
        data, label = batch.data[0], batch.label[0]
        assert data.dtype == np.float32 and data.shape == (4,) + SHAPE
        assert label.dtype == np.float32 and label.shape == (4,)
        for i in range(4):
            key = 4 * b + i + 1
            np.testing.assert_array_equal(data[i].asnumpy(), ref[key][1])
            assert label[i].asscalar() == ref[key][0][0]


def test_aligned_labels_give_class_ids(tmp_path):
    folder = _write(tmp_path / "aligned", [np.array([c, 1.0], np.float32) for c in _classes()])
    with FaceImageIter(folder, 6, SHAPE, shuffle=False, rand_mirror=False) as data_iter:
        assert data_iter.provide_label[0].shape == (6,)
        _, labels = epoch(data_iter)
    np.testing.assert_array_equal(labels, _classes().astype(np.float32))


def test_soft_labels_come_through(tmp_path):
    rng = np.random.default_rng(0)
    teacher = rng.normal(size=(12, 7)).astype(np.float32)
    folder = str(tmp_path / "soft")
    with RecordDatasetWriter(folder, num_classes=3, image_size=(SIZE, SIZE)) as w:
        for i, row in enumerate(make_soft(teacher, _classes())):
            w.add(row, png_bytes(face_like(i, SIZE)))
    ref = mxnet_reference(folder)
    with FaceImageIter(folder, 4, SHAPE, shuffle=True, rand_mirror=False, seed=3) as data_iter:
        assert data_iter.provide_label[0].shape == (4, 8)
        assert data_iter.label_layout.kind == "soft" and data_iter.label_layout.teacher_dim == 7
        data, labels = epoch(data_iter)
    keys = match_keys(data, ref)
    np.testing.assert_array_equal(labels[:, -1], _classes()[keys - 1])
    np.testing.assert_array_equal(labels[:, :-1], teacher[keys - 1])
    np.testing.assert_array_equal(labels, np.stack([ref[k][0] for k in keys]))


# ----------------------------------------------------------------------------- epochs, shuffle, shards
def test_every_image_once_per_epoch_in_key_order(hard_dir):
    ref = mxnet_reference(hard_dir)
    with FaceImageIter(hard_dir, 5, SHAPE, shuffle=False, rand_mirror=False) as data_iter:
        assert data_iter.batches_per_epoch == 2
        for _ in range(2):
            data, _ = epoch(data_iter)
            data_iter.reset()
            np.testing.assert_array_equal(match_keys(data, ref), np.arange(1, 11))  # 11, 12: partial batch dropped


def test_shuffle_changes_order_keeps_multiset(hard_dir):
    ref = mxnet_reference(hard_dir)
    with FaceImageIter(hard_dir, 3, SHAPE, shuffle=True, rand_mirror=False, seed=1) as data_iter:
        orders = []
        for _ in range(3):
            data, labels = epoch(data_iter)
            keys = match_keys(data, ref)
            np.testing.assert_array_equal(np.sort(keys), np.arange(1, 13))
            np.testing.assert_array_equal(labels, _classes()[keys - 1])
            orders.append(tuple(keys))
            data_iter.reset()
    assert len(set(orders + [tuple(range(1, 13))])) == 4


def test_seed_makes_batches_reproducible(hard_dir):
    runs = []
    for _ in range(2):
        with FaceImageIter(hard_dir, 4, SHAPE, seed=7, color_jitter=1, cutoff=True) as data_iter:
            runs.append(epoch(data_iter))
    np.testing.assert_array_equal(runs[0][0], runs[1][0])
    np.testing.assert_array_equal(runs[0][1], runs[1][1])


def test_mirror_flips_half(hard_dir):
    ref = mxnet_reference(hard_dir)
    with FaceImageIter(hard_dir, 12, SHAPE, shuffle=False, rand_mirror=True, seed=5) as data_iter:
        data, _ = epoch(data_iter)
    flipped = 0
    for i, img in enumerate(data):
        plain = ref[i + 1][1]
        if np.array_equal(img, plain):
            continue
        np.testing.assert_array_equal(img, np.flip(plain, axis=2))
        flipped += 1
    assert 0 < flipped < 12


def test_shards_partition_the_keys(hard_dir):
    ref = mxnet_reference(hard_dir)
    parts = []
    for part in range(3):
        with FaceImageIter(hard_dir, 2, SHAPE, shuffle=False, rand_mirror=False,
                           part_index=part, num_parts=3) as data_iter:
            parts.append(data_iter.keys)
            data, _ = epoch(data_iter)
            np.testing.assert_array_equal(match_keys(data, ref), data_iter.keys)
    assert sorted(np.concatenate(parts).tolist()) == list(range(1, 13))
    assert [len(p) for p in parts] == [4, 4, 4]


def test_images_filter_drops_small_classes(hard_dir):
    with FaceImageIter(hard_dir, 3, SHAPE, shuffle=False, rand_mirror=False, images_filter=4) as data_iter:
        np.testing.assert_array_equal(data_iter.keys, [1, 2, 3, 4, 8, 9, 10, 11, 12])
        _, labels = epoch(data_iter)
    np.testing.assert_array_equal(labels, [0, 0, 0, 0, 2, 2, 2, 2, 2])


def test_keys_by_class_groups_identities_of_one_class(tmp_path):
    # the reference soft-set builder wrote one identity per image: group them back by class id
    classes = np.array([2, 2, 0, 0, 0, 1])
    folder = str(tmp_path / "split")
    write_raw_dataset(folder, [float(c) for c in classes], [png_bytes(face_like(i, SIZE)) for i in range(6)],
                      [[k, k + 1] for k in range(1, 7)], prop=f"3,{SIZE},{SIZE}")
    with RecordDataset(folder) as ds:
        uniq, groups = keys_by_class(ds)
    assert uniq.tolist() == [0, 1, 2]
    assert [g.tolist() for g in groups] == [[3, 4, 5], [6], [1, 2]]


def test_decoding_runs_off_the_training_thread(hard_dir, monkeypatch):
    threads = set()
    real = it.decode

    def spy(payload, where, size=None):
        threads.add(threading.get_ident())
        return real(payload, where, size)

    monkeypatch.setattr(it, "decode", spy)
    with FaceImageIter(hard_dir, 4, SHAPE) as data_iter:
        epoch(data_iter)
    assert threads and threading.get_ident() not in threads


# ----------------------------------------------------------------------------- errors
def test_bad_payload_raises_in_training_thread(tmp_path):
    payloads = [png_bytes(face_like(i, SIZE)) for i in range(12)]
    payloads[4] = b"not an image"
    folder = _write(tmp_path / "bad", [float(c) for c in _classes()], payloads)
    with FaceImageIter(folder, 4, SHAPE, shuffle=False) as data_iter:
        next(data_iter)
        with pytest.raises(FaceKDError, match="record 5"):
            next(data_iter)


def test_bad_arguments(hard_dir):
    with pytest.raises(FaceKDError, match="image_shape"):
        FaceImageIter(hard_dir, 4, (3, 112, 112))
    with pytest.raises(FaceKDError, match="--per-batch-size"):
        FaceImageIter(hard_dir, 13, SHAPE)
    with pytest.raises(FaceKDError, match="part_index"):
        FaceImageIter(hard_dir, 2, SHAPE, part_index=3, num_parts=3)
    with pytest.raises(FaceKDError, match="data_images_filter"):
        FaceImageIter(hard_dir, 2, SHAPE, images_filter=6)
    with pytest.raises(FaceKDError, match="data_color"):
        FaceImageIter(hard_dir, 2, SHAPE, color_jitter=-1)
    with pytest.raises(FaceKDError, match="train.rec"):
        FaceImageIter(hard_dir + "/missing", 2, SHAPE)


# ----------------------------------------------------------------------------- augmentations
def test_color_jitter_matches_float64_formulas():
    img = face_like(3, SIZE).astype(np.float32)
    x = 0.125
    for seed in range(6):
        got = augment.color_jitter(img, np.random.default_rng(seed), x)
        rng = np.random.default_rng(seed)  # the same draws: order, then one factor per step
        out = img.astype(np.float64)
        luma = np.array([0.299, 0.587, 0.114])
        for step in rng.permutation(3):
            a = 1.0 + rng.uniform(-x, x)
            if step == 0:
                out = out * a
            elif step == 1:
                out = out * a + (1 - a) * (out @ luma).mean()
            else:
                out = out * a + (1 - a) * (out @ luma)[..., None]
        np.testing.assert_allclose(got, np.clip(out, 0, 255), atol=1e-3)


def test_cutoff_greys_one_clipped_square():
    size = 10
    for seed in range(20):
        img = np.zeros((SIZE, SIZE, 3), np.float32)
        augment.cutoff(img, size, np.random.default_rng(seed))
        rows = np.flatnonzero((img == 127.5).all(axis=2).any(axis=1))
        cols = np.flatnonzero((img == 127.5).all(axis=2).any(axis=0))
        assert len(rows) and len(cols) and len(rows) <= size and len(cols) <= size
        assert (np.diff(rows) == 1).all() and (np.diff(cols) == 1).all()
        box = np.zeros_like(img, bool)
        box[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1] = True
        assert (img[box] == 127.5).all() and (img[~box] == 0).all()
        assert (len(rows) == size or rows[0] == 0 or rows[-1] == SIZE - 1)


def test_cutoff_size_option():
    assert augment.cutoff_size(False, 112) == 0 and augment.cutoff_size(True, 112) == 56
    assert augment.cutoff_size(24, 112) == 24
    with pytest.raises(FaceKDError, match="data_cutoff"):
        augment.cutoff_size(2.5, 112)


def test_jpeg_compress_keeps_shape_and_changes_pixels():
    img = face_like(1, SIZE)
    out = augment.jpeg_compress(img, np.random.default_rng(0))
    assert out.shape == img.shape and out.dtype == np.uint8 and not np.array_equal(out, img)


# ----------------------------------------------------------------------------- every label checked as read
BIG = 60  # more images than the labels sampled when the dataset opens


def _label_set(soft=False):
    """Labels, payloads and class ids of 60 images of 10 classes (6 each)."""
    classes = np.repeat(np.arange(10), 6)
    rng = np.random.default_rng(0)
    labels = [make_soft(rng.normal(size=(1, 4)), [c])[0] if soft else float(c) for c in classes]
    return labels, [png_bytes(face_like(i % 7, SIZE)) for i in range(BIG)], classes


def _sampled_keys(folder, labels, payloads, classes):
    """Keys that opening the dataset reads (found by opening a good copy and watching its reads)."""
    write_raw_dataset(str(folder), labels, payloads, _identities(classes), prop=f"10,{SIZE},{SIZE}")
    seen = []
    original = RecordDataset.read

    def spy(self, key):
        seen.append(int(key))
        return original(self, key)

    RecordDataset.read = spy
    try:
        RecordDataset(str(folder)).close()
    finally:
        RecordDataset.read = original
    return set(seen)


@pytest.mark.parametrize("soft, bad_label, message", [
    (False, 15.0, r"class id 15 is not an integer in 0\.\.9"),
    (False, -1.0, r"class id -1 is not an integer in 0\.\.9"),
    (False, 2.5, r"class id 2\.5 is not an integer in 0\.\.9"),
    (False, float("nan"), r"the label contains NaN"),
    (False, np.array([3, 1], np.float32), r"label of width 2, the dataset's labels have width 1"),
    (True, np.array([np.nan, 0, 1, 2, 3], np.float32), r"the teacher vector contains NaN"),
    (True, np.array([1, 2, 3, 4, 10], np.float32), r"class id 10 is not an integer in 0\.\.9"),
    (True, np.array([1, 2, 3], np.float32), r"label of width 3, the dataset's labels have width 5"),
])
def test_every_label_is_checked_as_the_iterator_reads_it(tmp_path, soft, bad_label, message):
    labels, payloads, classes = _label_set(soft)
    sampled = _sampled_keys(tmp_path / "good", labels, payloads, classes)
    key = next(k for k in range(BIG // 2, BIG + 1) if k not in sampled)  # a record the open does not read
    labels[key - 1] = bad_label
    folder = str(tmp_path / "bad")
    write_raw_dataset(folder, labels, payloads, _identities(classes), prop=f"10,{SIZE},{SIZE}")
    with RecordDataset(folder) as ds:  # the sampled labels are fine: it opens
        with FaceImageIter(ds, batch_size=6, data_shape=SHAPE, shuffle=False, seed=0) as data:
            with pytest.raises(FaceKDError, match=rf"train\.rec: image record {key}: {message}"):
                for _ in data:
                    pass


def test_restore_continues_an_epoch_with_the_same_batches(hard_dir):
    """An iterator restored at (epoch, batch) yields what the uninterrupted one yields next,
    augmentation included, and a position survives JSON (it is saved in the checkpoint meta)."""
    import json

    def run(it, n):
        return [(b.data[0].asnumpy(), b.label[0].asnumpy()) for _, b in zip(range(n), it)]

    kwargs = dict(batch_size=2, data_shape=SHAPE, rand_mirror=True, color_jitter=1, seed=3)
    with FaceImageIter(hard_dir, **kwargs) as whole:
        whole.reset()
        epoch0 = run(whole, 6)
        whole.reset()
        epoch1 = run(whole, 6)
    with FaceImageIter(hard_dir, **kwargs) as first:
        first.reset()
        run(first, 2)
        saved = json.loads(json.dumps(first.position(2)))
        first.reset()
        saved_next_epoch = json.loads(json.dumps(first.position(0)))
    with FaceImageIter(hard_dir, **kwargs) as resumed:
        resumed.restore(0, saved)
        again = run(resumed, 6)
        resumed.reset()
        after = run(resumed, 6)
    assert len(again) == 4  # the rest of epoch 0
    for (d, l), (d0, l0) in zip(again + after, epoch0[2:] + epoch1):
        np.testing.assert_array_equal(d, d0)
        np.testing.assert_array_equal(l, l0)
    with FaceImageIter(hard_dir, **kwargs) as other:
        other.restore(1, saved_next_epoch)
        np.testing.assert_array_equal(run(other, 1)[0][0], epoch1[0][0])
        with pytest.raises(FaceKDError, match="batch 99 of an epoch of 6"):
            other.restore(0, dict(saved, batch=99))
        with pytest.raises(FaceKDError, match="data position"):
            other.restore(0, {"rng": "nonsense", "batch": 1})
