"""Partial FC's per-step class sample: every positive, exactly round(r·C) rows, uniform negatives,
deterministic in (seed, step); labels remapped into it; settings no run can use refused."""
from types import SimpleNamespace

import mxnet as mx
import numpy as np
import pytest

from facekd.errors import FaceKDError
from facekd.losses import get_loss
from facekd.training.partial_fc import AllClasses, ClassSampler, SampledClasses, class_sampler
from facekd.training.settings import Settings


def settings(num_classes=100, ratio=0.2, batch=8, emb=16, loss="arcface"):
    return Settings(dict(num_classes=num_classes, sample_ratio=ratio, per_batch_size=batch, emb_size=emb, loss=loss))


LOCAL = SimpleNamespace(type="device", num_workers=1, rank=0)


@pytest.mark.parametrize("num_classes,ratio", [(100, 0.2), (85742, 0.1), (1000, 0.333), (37, 0.5)])
def test_sample_holds_every_positive_and_round_r_c_rows(num_classes, ratio):
    classes = SampledClasses(settings(num_classes, ratio, batch=16), get_loss("arcface"), 1, LOCAL, seed=3)
    assert classes.sample_size == round(ratio * num_classes)
    rng = np.random.default_rng(0)
    for step in range(1, 30):
        positives = rng.integers(0, num_classes, 16)  # repeated classes included
        sample = classes.sample(positives, step)
        assert sample.size == round(ratio * num_classes)
        assert np.all(np.diff(sample) > 0) and sample[0] >= 0 and sample[-1] < num_classes  # sorted, unique
        assert np.isin(positives, sample).all()


def test_sample_is_a_function_of_seed_step_and_positives():
    a, b = ClassSampler(1000, 100, seed=5), ClassSampler(1000, 100, seed=5)
    positives = [3, 3, 999, 0]
    np.testing.assert_array_equal(a.draw(positives, 7), b.draw(positives, 7))  # another sampler, same draw
    assert not np.array_equal(a.draw(positives, 7), a.draw(positives, 8))
    assert not np.array_equal(a.draw(positives, 7), ClassSampler(1000, 100, seed=6).draw(positives, 7))
    np.testing.assert_array_equal(a.draw(positives, 7), a.draw(list(reversed(positives)), 7))


def test_negatives_are_uniform_without_replacement():
    """Over 4000 steps each non-positive class is drawn (k - P)/(C - P) of the time."""
    num_classes, size, steps = 50, 10, 4000
    positives = np.array([0, 1, 2, 3])
    sampler = ClassSampler(num_classes, size, seed=1)
    counts = np.zeros(num_classes)
    for step in range(steps):
        counts[sampler.draw(positives, step)] += 1
    assert np.all(counts[positives] == steps)
    rate = (size - positives.size) / (num_classes - positives.size)
    negatives = counts[positives.size:]
    # binomial std of a count: sqrt(n p (1-p)) ~ 23; 5 std is far from chance, tight enough to catch a bias
    assert np.abs(negatives - steps * rate).max() < 5 * np.sqrt(steps * rate * (1 - rate))
    assert negatives.sum() == steps * (size - positives.size)


@pytest.mark.parametrize("label_shape", ["hard", "soft"])
def test_prepare_adds_the_sample_and_remaps_the_labels(label_shape):
    classes = SampledClasses(settings(100, 0.2, batch=8), get_loss("arcface"), 1, LOCAL, seed=0)
    rng = np.random.default_rng(1)
    cls = rng.integers(0, 100, 8).astype(np.float32)
    teacher = rng.standard_normal((8, 5)).astype(np.float32)
    label = cls if label_shape == "hard" else np.concatenate([teacher, cls[:, None]], axis=1)
    data = mx.nd.array(rng.standard_normal((8, 3)))
    batch = classes.prepare(mx.io.DataBatch(data=[data], label=[mx.nd.array(label)]), step=4)
    assert len(batch.data) == 2 and batch.data[0] is data
    sample = batch.data[1].asnumpy()
    np.testing.assert_array_equal(sample, classes.sample(cls.astype(np.int64), 4))
    new = batch.label[0].asnumpy()
    remapped = new if label_shape == "hard" else new[:, -1]
    np.testing.assert_array_equal(sample[remapped.astype(int)], cls)  # positions in the sample
    if label_shape == "soft":
        np.testing.assert_array_equal(new[:, :-1], teacher)  # the teacher vectors are untouched
    descs = classes.data_shapes([mx.io.DataDesc("data", (8, 3))])
    assert descs[1].name == "fc7_sample" and descs[1].shape == (20,)
    assert mx.io.DataDesc.get_batch_axis(descs[1].layout) == -1  # copied whole to every device


def test_ratio_one_changes_nothing():
    classes = class_sampler(settings(ratio=1.0), get_loss("triplet_distillation_L2"), 2, LOCAL)
    assert isinstance(classes, AllClasses)
    batch = mx.io.DataBatch(data=[mx.nd.zeros((2, 3))], label=[mx.nd.zeros(2)])
    assert classes.prepare(batch, 1) is batch and classes.kvstore(LOCAL, 2) is LOCAL
    assert classes.data_names(["data"]) == ["data"]


def test_too_small_a_sample_for_the_global_batch_is_refused():
    with pytest.raises(FaceKDError, match=r"--sample-ratio 0.01 keeps round\(0.01 x 1000\) = 10 class centres, "
                                          r"fewer than the 32 images of a global batch.*at least 0.032"):
        class_sampler(settings(1000, 0.01, batch=16), get_loss("arcface"), 2, LOCAL)
    # a batch's classes always fit when the sample is as large as the global batch
    assert class_sampler(settings(1000, 0.032, batch=16), get_loss("arcface"), 2, LOCAL).sample_size == 32


def test_asynchronous_kvstore_is_refused():
    async_kv = SimpleNamespace(type="dist_async", num_workers=2, rank=0)
    with pytest.raises(FaceKDError, match="--sample-ratio 0.2 needs every worker .*--kvstore dist_async is "
                                          "asynchronous: use dist_sync"):
        class_sampler(settings(), get_loss("arcface"), 1, async_kv)


def test_a_head_without_centres_is_refused_with_the_flag_named():
    with pytest.raises(FaceKDError, match="--sample-ratio 0.2 samples class centres, but --loss "
                                          "triplet_distillation_cos has no margin-softmax class-centre matrix"):
        class_sampler(settings(loss="triplet_distillation_cos"), get_loss("triplet_distillation_cos"), 1, LOCAL)
