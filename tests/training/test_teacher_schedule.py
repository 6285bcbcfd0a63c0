"""template_kd's multi-step KD: epoch k embeds with the k-th teacher checkpoint, online."""
import mxnet as mx
import numpy as np
import pytest

from facekd.data.iterators import FaceImageIter
from facekd.data.labels import split_soft
from facekd.data.recordio import RecordDataset
from facekd.errors import FaceKDError
from facekd.embedder import Embedder
from facekd.training.online_teacher import ScheduledTeacherIter
from facekd.training.trainer import main


@pytest.fixture(scope="module")
def two_epoch_teacher(teacher_prefix, tmp_path_factory):
    """Teacher checkpoints 1 and 2 (epoch 2 = epoch 1 with pre_fc1 weights scaled: other vectors)."""
    prefix = str(tmp_path_factory.mktemp("sched") / "model")
    sym, arg_params, aux_params = mx.model.load_checkpoint(teacher_prefix, 1)
    mx.model.save_checkpoint(prefix, 1, sym, arg_params, aux_params)
    scaled = dict(arg_params, pre_fc1_weight=arg_params["pre_fc1_weight"] * 3.0)
    mx.model.save_checkpoint(prefix, 2, sym, scaled, aux_params)
    return prefix


def test_epochs_follow_the_schedule(synthetic_dir, two_epoch_teacher):
    ctx = [mx.cpu()]
    base = FaceImageIter(RecordDataset(synthetic_dir), batch_size=8, shuffle=False, rand_mirror=False)
    it = ScheduledTeacherIter(base, f"{two_epoch_teacher},1|2", ctx, 8, (112, 112))
    assert it.provide_label[0].shape == (8, 513)
    expected = {e: Embedder.from_checkpoint(two_epoch_teacher, e, ctx, 8) for e in (1, 2)}
    for epoch, teacher_epoch in enumerate([1, 2, 2]):  # the last teacher stays after the schedule ends
        it.reset()
        batch = it.next()
        teacher, cls = split_soft(batch.label[0].asnumpy())
        images = batch.data[0].asnumpy()
        np.testing.assert_allclose(teacher, expected[teacher_epoch].embed(images), rtol=1e-5, atol=1e-5)
        base_labels = RecordDataset(synthetic_dir)
        assert list(cls) == [int(base_labels.read(k)[0][0]) for k in range(1, 9)]
    other = expected[1].embed(images)
    assert np.abs(other - teacher).max() > 1e-3  # the two teachers differ, so the check can fail


@pytest.mark.slow
def test_template_kd_trains_from_class_labels(synthetic_dir, two_epoch_teacher, tmp_path, caplog):
    caplog.set_level("INFO")
    main(["--network", "y1", "--loss", "template_kd", "--dataset", "synthetic", "--data-dir",
          str(synthetic_dir), "--models-root", str(tmp_path), "--per-batch-size", "8", "--max-steps", "2",
          "--verbose", "2", "--ckpt", "2", "--lr", "0.01", "--frequent", "1", "--teacher-schedule", f"{two_epoch_teacher},1|2"])
    assert f"embeds with teacher {two_epoch_teacher}-0001" in caplog.text
    assert "lossvalue=" in caplog.text


def test_schedule_only_for_online_losses(synthetic_dir, two_epoch_teacher, tmp_path):
    with pytest.raises(FaceKDError, match="--teacher-schedule"):
        main(["--network", "y1", "--loss", "arcface", "--dataset", "synthetic", "--data-dir",
              str(synthetic_dir), "--models-root", str(tmp_path), "--teacher-schedule",
              f"{two_epoch_teacher},1|2"])
