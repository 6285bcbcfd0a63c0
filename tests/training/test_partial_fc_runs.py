"""train.py with --sample-ratio: every supported method trains and saves the full fc7; an interrupted
and resumed run is the run it continues; flags no run can use fail before training.
(dist_sync: test_partial_fc_dist.py.)"""
import os

import mxnet as mx
import numpy as np
import pytest

from facekd.errors import FaceKDError
from facekd.training.args import parse_args
from facekd.training.trainer import main

from trainhelpers import link_training_files

HARD = ["arcface", "cosface", "combined", "nsoftmax"]
SOFT = ["angular_distillation", "margin_base_with_T", "margin_distillation", "template_kd"]


def _argv(loss, data, models, *extra):
    dataset = "synthetic_soft" if loss in SOFT else "synthetic"
    return ["--network", "y1", "--loss", loss, "--dataset", dataset, "--data-dir", str(data),
            "--models-root", str(models), "--per-batch-size", "4", "--frequent", "1", "--seed", "5",
            "--sample-ratio", "0.5", *extra]


def _params(models, loss, name):
    dataset = "synthetic_soft" if loss in SOFT else "synthetic"
    arrays = mx.nd.load(os.path.join(models, f"y1-{loss}-{dataset}", f"model-{name}.params"))
    return {k: v.asnumpy() for k, v in arrays.items()}


@pytest.mark.slow
@pytest.mark.parametrize("loss", HARD + SOFT)
def test_every_method_trains_with_sampled_centres(loss, synthetic_dir, soft_dir, teacher_prefix, tmp_path,
                                                  caplog):
    caplog.set_level("INFO")
    data = link_training_files(soft_dir if loss in SOFT else synthetic_dir, str(tmp_path / "data"))
    teacher = ["--teacher", f"{teacher_prefix},1"] if loss in SOFT else []
    main(_argv(loss, data, tmp_path, "--max-steps", "2", "--verbose", "2", "--ckpt", "2", "--lr", "0.01", *teacher))
    assert "Partial FC: 6 of 12 class centres a step (--sample-ratio 0.5)" in caplog.text
    values = [float(line.split("lossvalue=")[1].split()[0])
              for line in caplog.text.splitlines() if "lossvalue=" in line]
    assert values and np.isfinite(values).all()
    saved = _params(tmp_path, loss, "0001")
    assert saved["arg:fc7_weight"].shape == (12, 512)  # the checkpoint holds the full matrix
    assert "arg:teacher_fc7_weight" not in saved and "arg:fc7_sample" not in saved


@pytest.mark.slow
def test_resumed_sampled_run_equals_the_uninterrupted_one(synthetic_dir, tmp_path, caplog):
    """The sample of a step depends on the seed and the step only: resuming redraws the same ones
    (one context: bitwise)."""
    data = link_training_files(synthetic_dir, str(tmp_path / "data"))
    flags = ("--lr", "0.05", "--verbose", "4", "--ckpt", "2")
    main(_argv("arcface", data, tmp_path / "whole", "--max-steps", "8", *flags))
    main(_argv("arcface", data, tmp_path / "parts", "--max-steps", "4", *flags))
    caplog.set_level("INFO")
    main(_argv("arcface", data, tmp_path / "parts", "--max-steps", "8", "--resume", *flags))
    assert "model-resume at step 4" in caplog.text
    whole, parts = _params(tmp_path / "whole", "arcface", "resume"), _params(tmp_path / "parts", "arcface", "resume")
    first = _params(tmp_path / "parts", "arcface", "0001")
    assert np.abs(whole["arg:fc7_weight"] - first["arg:fc7_weight"]).max() > 0  # steps 5-8 moved it
    for key in whole:
        if key.startswith("arg:"):  # BatchNorm running statistics: docs/decisions.md
            np.testing.assert_array_equal(parts[key], whole[key], err_msg=key)


@pytest.mark.parametrize("value", ["0", "1.5", "nan", "-0.1"])
def test_a_ratio_outside_zero_one_is_refused(value):
    with pytest.raises(FaceKDError, match=rf"--sample-ratio {value}\S* is invalid: it must be a number in \(0, 1\]"):
        parse_args(["--sample-ratio", value])


def test_bad_sampling_fails_before_training(synthetic_dir, soft_dir, teacher_prefix, tmp_path, caplog):
    caplog.set_level("INFO")
    with pytest.raises(FaceKDError, match="--sample-ratio 0.5 samples class centres, but --loss "
                                          "triplet_distillation_L2"):
        main(_argv("triplet_distillation_L2", soft_dir, tmp_path, "--teacher", f"{teacher_prefix},1"))
    with pytest.raises(FaceKDError, match=r"--sample-ratio 0.1 keeps round\(0.1 x 12\) = 1 class centres, fewer "
                                          r"than the 4 images of a global batch"):
        main(_argv("arcface", synthetic_dir, tmp_path, "--sample-ratio", "0.1"))
    assert "Epoch[" not in caplog.text
