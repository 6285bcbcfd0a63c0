"""Every distillation method trains on a soft dataset: loss finite and falling, checkpoint saved,
two CPU contexts work; teacher problems fail before any training step."""
import os

import mxnet as mx
import numpy as np
import pytest

from facekd import losses
from facekd.errors import FaceKDError
from facekd.training.args import parse_args
from facekd.training.trainer import Trainer, main

METHODS = ["angular_distillation", "triplet_distillation_L2", "triplet_distillation_cos",
           "margin_base_with_T", "margin_distillation", "template_kd"]


def _argv(method, soft_dir, teacher_prefix, root, contexts=1, *extra):
    return ["--network", "y1", "--loss", method, "--dataset", "synthetic_soft", "--data-dir", str(soft_dir),
            "--models-root", str(root), "--per-batch-size", "6", "--cpu-contexts", str(contexts),
            "--teacher", f"{teacher_prefix},1", "--seed", "0", "--triplet-bag-size", "36",
            "--images-per-identity", "6", "--frequent", "1", *extra]


def _lossvalue(metric):
    return dict(metric.get_name_value())["lossvalue"]


def _objective(trainer):
    """A fresh metric of the head's monitors (metrics accumulate over updates until reset)."""
    return mx.metric.CompositeEvalMetric(losses.head_metrics(trainer.symbol))


def _loss_and_step(module, batch, metric):
    """(objective on ``batch`` at the current weights, the weights before, the weights after one step)."""
    before = {k: v.asnumpy().astype(np.float64) for k, v in module.get_params()[0].items()}
    module.forward_backward(batch)
    module.update_metric(metric, batch.label)
    module.update()
    after = {k: v.asnumpy().astype(np.float64) for k, v in module.get_params()[0].items()}
    return _lossvalue(metric), before, after


@pytest.mark.slow
@pytest.mark.parametrize("method", METHODS)
def test_a_small_step_along_the_gradient_lowers_the_loss(method, soft_dir, teacher_prefix, tmp_path):
    """What gradient descent guarantees on any machine: on one fixed batch, a step of lr along
    -g lowers the objective by lr*|g|^2 to first order.

    The batch is fixed, so BatchNorm's batch statistics are a function of the weights only and
    the objective is one smooth (almost everywhere) function of them. A trial step with plain
    SGD (no momentum, no decay) measures g = -delta/lr; the step is then redone from the same
    weights with the lr that should lower the objective by 2%, large enough to stand far above
    float32 rounding at any thread count and small enough for the first order to dominate.
    """
    args, cfg = parse_args(_argv(method, soft_dir, teacher_prefix, tmp_path, 1,
                                 "--lr", "1e-4", "--mom", "0", "--wd", "0"))
    trainer = Trainer(cfg, args)
    module = trainer.module = trainer._make_module()
    trainer._start_epoch(0, resumed=False)  # the triplet iterator mines its bag with the module's weights
    batch = next(iter(trainer.train_iter))
    frozen = trainer.spec.teacher_centres
    loss0, start, trial = _loss_and_step(module, batch, _objective(trainer))
    grad_sq = sum((((trial[k] - start[k]) / 1e-4) ** 2).sum() for k in start)
    assert np.isfinite(loss0) and loss0 > 0 and grad_sq > 0, (loss0, grad_sq)
    lr = 0.02 * loss0 / grad_sq
    args, cfg = parse_args(_argv(method, soft_dir, teacher_prefix, tmp_path, 1,
                                 "--lr", repr(lr), "--mom", "0", "--wd", "0"))
    trainer = Trainer(cfg, args)
    module = trainer._make_module()
    module.set_params({k: mx.nd.array(v) for k, v in start.items()}, module.get_params()[1])
    again, _, after = _loss_and_step(module, batch, _objective(trainer))
    assert again == pytest.approx(loss0, rel=1e-4)  # same weights, same batch: same objective
    step_sq = sum(((after[k] - start[k]) ** 2).sum() for k in start)
    np.testing.assert_allclose(step_sq, lr ** 2 * grad_sq, rtol=0.05)  # the step was lr * g
    loss1 = _loss_at(module, batch, _objective(trainer))
    predicted = lr * grad_sq
    assert loss1 < loss0, (loss0, loss1)
    assert 0.75 * predicted < loss0 - loss1 < 1.25 * predicted, (loss0, loss1, predicted)
    if frozen:  # the teacher's centres are never updated
        np.testing.assert_array_equal(after[frozen], start[frozen])


def _loss_at(module, batch, metric):
    """The objective on ``batch`` at the current weights, without updating them."""
    module.forward(batch, is_train=True)
    module.update_metric(metric, batch.label)
    return _lossvalue(metric)


@pytest.mark.slow
@pytest.mark.parametrize("contexts", [1, 2])
@pytest.mark.parametrize("method", METHODS)
def test_method_trains_and_saves(method, contexts, soft_dir, teacher_prefix, tmp_path, caplog):
    caplog.set_level("INFO")
    main(_argv(method, soft_dir, teacher_prefix, tmp_path, contexts,
               "--max-steps", "2", "--verbose", "2", "--ckpt", "2", "--lr", "0.01"))
    prefix = os.path.join(tmp_path, f"y1-{method}-synthetic_soft", "model")
    sym, arg_params, _ = mx.model.load_checkpoint(prefix, 1)
    assert "fc1_output" in sym.get_internals().list_outputs()
    assert "teacher_fc7_weight" not in arg_params  # the teacher's matrix is not the student's
    assert "lossvalue=" in caplog.text
    assert "[synth_easy][2]Accuracy-Flip" in caplog.text  # verification binds before any weights exist
    for line in caplog.text.splitlines():
        if "lossvalue=" in line:
            assert np.isfinite(float(line.split("lossvalue=")[1].split()[0]))


def _error(argv):
    with pytest.raises(FaceKDError) as info:
        main(argv)
    return str(info.value)


def test_teacher_problems_fail_before_training(soft_dir, teacher_prefix, synthetic_dir, tmp_path, caplog):
    caplog.set_level("INFO")
    base = _argv("margin_distillation", soft_dir, teacher_prefix, tmp_path)
    # missing teacher
    argv = base[:base.index("--teacher")] + base[base.index("--teacher") + 2:]
    assert "--teacher" in _error(argv + ["--teacher", ""])
    assert "missing-symbol.json" in _error(base + ["--teacher", str(tmp_path / "missing") + ",1"]) or \
        "missing" in _error(base + ["--teacher", str(tmp_path / "missing") + ",1"])
    # a teacher without fc7_weight (an embedding-only cut)
    sym, arg_params, aux_params = mx.model.load_checkpoint(teacher_prefix, 1)
    cut = str(tmp_path / "cut")
    mx.model.save_checkpoint(cut, 1, sym, {k: v for k, v in arg_params.items() if k != "fc7_weight"},
                             aux_params)
    assert "has no fc7_weight" in _error(base + ["--teacher", cut + ",1"])
    # class-count mismatch
    wrong = str(tmp_path / "wrong")
    bigger = dict(arg_params, fc7_weight=mx.nd.ones((arg_params["fc7_weight"].shape[0] + 1, 512)))
    mx.model.save_checkpoint(wrong, 1, sym, bigger, aux_params)
    assert "fc7_weight has shape" in _error(base + ["--teacher", wrong + ",1"])
    # teacher dimension of the soft labels differs from the student's embedding
    assert "--emb-size" in _error(base + ["--emb-size", "128"])
    # hard-label dataset given to a distillation loss
    assert "needs soft labels" in _error(_argv("margin_distillation", synthetic_dir, teacher_prefix, tmp_path))
    assert "Epoch[" not in caplog.text  # nothing trained


@pytest.mark.slow
def test_triplet_fine_tunes_from_pretrained_arcface(soft_dir, teacher_prefix, tmp_path, caplog):
    """As in the seed README: --pretrained ./models/y1-arcface-.../model (its fc7 is not used)."""
    caplog.set_level("INFO")
    main(_argv("triplet_distillation_L2", soft_dir, teacher_prefix, tmp_path, 1, "--max-steps", "2",
               "--verbose", "2", "--ckpt", "2", "--lr", "0.001", "--pretrained", teacher_prefix,
               "--pretrained-epoch", "1"))
    assert f"loaded pretrained {teacher_prefix}-0001" in caplog.text
    _, start, _ = mx.model.load_checkpoint(teacher_prefix, 1)
    _, tuned, _ = mx.model.load_checkpoint(
        os.path.join(tmp_path, "y1-triplet_distillation_L2-synthetic_soft", "model"), 1)
    delta = np.abs(tuned["conv_1_conv2d_weight"].asnumpy() - start["conv_1_conv2d_weight"].asnumpy()).max()
    assert 0 < delta < 0.5 * np.abs(start["conv_1_conv2d_weight"].asnumpy()).max()  # started from it
