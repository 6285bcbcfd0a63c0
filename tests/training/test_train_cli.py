"""recognition/train.py end to end on the tiny synthetic set, and its one-line errors."""
import os
import subprocess
import sys

import mxnet as mx
import pytest

from facekd.data.recordio import RecordDataset
from facekd.errors import FaceKDError
from facekd.training.trainer import main

from trainhelpers import link_training_files

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _argv(data_dir, models_root, *extra):
    return ["--network", "y1", "--loss", "arcface", "--dataset", "synthetic", "--data-dir", str(data_dir),
            "--models-root", str(models_root), "--per-batch-size", "4", "--frequent", "1",
            "--lr-steps", "2", "--seed", "1", *extra]


@pytest.mark.slow
def test_arcface_trains_verifies_and_saves(synthetic_dir, tmp_path, caplog):
    caplog.set_level("INFO")
    main(_argv(synthetic_dir, tmp_path, "--max-steps", "3", "--verbose", "3", "--ckpt", "2"))
    log = caplog.text
    assert "Network FLOPs: 44" in log  # 440.2M in networks.md, within 1%
    assert "Epoch[0] Batch [" in log and "Speed: " in log and "acc=" in log and "lossvalue=" in log
    assert "lr change to 0.01" in log
    for target in ("synth_easy", "synth_pose", "synth_age"):
        assert f"[{target}][3]XNorm: " in log and f"[{target}][3]Accuracy-Flip: " in log
    assert "[3]Accuracy-Highest: " in log and "saving 1" in log
    prefix = os.path.join(tmp_path, "y1-arcface-synthetic", "model")
    sym, args, aux = mx.model.load_checkpoint(prefix, 1)
    assert "fc1_output" in sym.get_internals().list_outputs()
    n_classes = RecordDataset(synthetic_dir).num_classes
    assert args["fc7_weight"].shape == (n_classes, 512)
    assert not [f for f in os.listdir(os.path.dirname(prefix)) if f.endswith(".tmp")]


@pytest.mark.slow
def test_saves_without_targets(synthetic_dir, tmp_path, caplog):
    caplog.set_level("INFO")
    data = link_training_files(synthetic_dir, str(tmp_path / "data"))
    main(_argv(data, tmp_path, "--max-steps", "2", "--verbose", "2", "--ckpt", "3"))
    assert "no verification targets" in caplog.text
    assert os.path.isfile(os.path.join(tmp_path, "y1-arcface-synthetic", "model-0001.params"))


def _error(argv):
    with pytest.raises(FaceKDError) as info:
        main(argv)
    return str(info.value)


def test_bad_inputs(synthetic_dir, soft_dir, tmp_path):
    assert "valid:" in _error(["--network", "y9", "--data-dir", str(synthetic_dir)])
    assert "valid:" in _error(["--loss", "arcfacez", "--data-dir", str(synthetic_dir)])
    assert "valid:" in _error(["--dataset", "nope"])
    assert "--data-dir" in _error(_argv(tmp_path / "missing", tmp_path))
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "train" in _error(_argv(empty, tmp_path))
    assert "pretrained" in _error(_argv(synthetic_dir, tmp_path, "--pretrained", str(tmp_path / "nope"))) \
        or "nope" in _error(_argv(synthetic_dir, tmp_path, "--pretrained", str(tmp_path / "nope")))
    assert "soft labels" in _error(_argv(soft_dir, tmp_path))  # soft dataset, hard-label loss
    msg = _error(["--network", "y1", "--loss", "angular_distillation", "--dataset", "synthetic",
                  "--data-dir", str(synthetic_dir)])
    assert "needs soft labels" in msg
    msg = _error(["--network", "y1", "--loss", "triplet_distillation_L2", "--dataset", "synthetic_soft",
                  "--data-dir", str(soft_dir), "--per-batch-size", "8"])
    assert "per" in msg and "3" in msg


def test_cli_prints_one_line_and_exits_nonzero(tmp_path):
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "recognition", "train.py"),
                           "--network", "nonet"], capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "unknown network 'nonet'" in lines[0] and "y1" in lines[0]


@pytest.mark.slow
def test_resume_continues_steps_schedule_and_numbering(synthetic_dir, tmp_path, caplog):
    caplog.set_level("INFO")
    data = link_training_files(synthetic_dir, str(tmp_path / "data"))
    main(_argv(data, tmp_path, "--max-steps", "2", "--verbose", "2", "--ckpt", "2"))
    prefix = os.path.join(tmp_path, "y1-arcface-synthetic", "model")
    _, first, _ = mx.model.load_checkpoint(prefix, 1)
    caplog.clear()
    main(_argv(data, tmp_path, "--max-steps", "4", "--verbose", "2", "--ckpt", "2", "--resume"))
    log = caplog.text
    assert f"resuming from {prefix}-resume at step 2" in log  # the latest state, with momentum
    assert "lr change to" not in log  # step 2 of --lr-steps passed before the resume: 0.01 throughout
    # the epoch goes on from its saved position: batches 2 and 3 of epoch 0
    assert "Epoch[0] Batch [2-3]" in log and "saving 2" in log and "finished 2 steps" in log
    _, second, _ = mx.model.load_checkpoint(prefix, 2)
    assert abs(second["fc7_weight"].asnumpy() - first["fc7_weight"].asnumpy()).max() > 0


def test_resume_without_checkpoint_fails(synthetic_dir, tmp_path):
    assert "--resume" in _error(_argv(synthetic_dir, tmp_path, "--resume"))


def test_optimizer_uses_the_resumed_learning_rate(synthetic_dir, tmp_path):
    """After a resume past an lr step the optimizer's rate is the decayed one, not decayed twice."""
    from facekd.training.args import parse_args
    from facekd.training.trainer import Trainer

    args, cfg = parse_args(_argv(synthetic_dir, tmp_path, "--lr", "0.1", "--lr-steps", "2,100"))
    trainer = Trainer(cfg, args)
    trainer.begin_step = 5
    module = trainer._make_module()
    assert module._optimizer.learning_rate == pytest.approx(0.01)
