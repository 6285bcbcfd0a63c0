"""Long runs that survive: an interrupted and resumed run is the run it continues; signals stop
cleanly; a non-finite loss stops before it reaches the weights; damaged sets are skipped."""
import os
import signal
import subprocess
import sys
import time

import mxnet as mx
import numpy as np
import pytest

from facekd.errors import FaceKDError
from facekd.training.trainer import main

from trainhelpers import link_training_files

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _argv(data_dir, models_root, *extra):
    # 72 images / 4 = 18 batches an epoch: 24 steps cross an epoch boundary
    return ["--network", "y1", "--loss", "arcface", "--dataset", "synthetic", "--data-dir", str(data_dir),
            "--models-root", str(models_root), "--per-batch-size", "4", "--frequent", "4", "--seed", "5",
            "--lr", "0.05", "--lr-steps", "12", "--verbose", "8", "--ckpt", "2", *extra]


def _params(root, name="resume"):
    arrays = mx.nd.load(os.path.join(root, "y1-arcface-synthetic", f"model-{name}.params"))
    return {k: v.asnumpy() for k, v in arrays.items()}


@pytest.fixture
def data(synthetic_dir, tmp_path):
    return link_training_files(synthetic_dir, str(tmp_path / "data"))


@pytest.mark.slow
@pytest.mark.parametrize("contexts", [1, 2])
def test_interrupted_and_resumed_equals_uninterrupted(data, tmp_path, contexts, caplog):
    """Weights, momentum, lr schedule and data position are restored: bitwise on one context (MXNet
    is deterministic there), to float32 tolerance on two (the kvstore sums in another order)."""
    caplog.set_level("INFO")
    flags = ["--cpu-contexts", str(contexts), "--per-batch-size", str(4 // contexts)]
    main(_argv(data, tmp_path / "whole", "--max-steps", "24", *flags))
    main(_argv(data, tmp_path / "parts", "--max-steps", "16", *flags))
    caplog.clear()
    main(_argv(data, tmp_path / "parts", "--max-steps", "24", "--resume", *flags))
    log = caplog.text
    assert "resuming from" in log and "model-resume at step 16" in log and "finished 8 steps" in log
    assert "Epoch[1] Batch [4]" in log or "Epoch[1] Batch [0-4]" in log  # epoch 1 goes on, not epoch 0 again
    whole, parts = _params(tmp_path / "whole"), _params(tmp_path / "parts")
    assert whole.keys() == parts.keys()
    moved = _params(tmp_path / "whole", "0001")
    assert max(np.abs(whole[k] - moved[k]).max() for k in whole if k.startswith("arg:")) > 1e-3
    print(f"\n{contexts} context(s): max abs difference resumed vs uninterrupted: weights "
          f"{max(np.abs(parts[k] - whole[k]).max() for k in whole if k.startswith('arg:')):.3g}, BatchNorm "
          f"statistics {max(np.abs(parts[k] - whole[k]).max() for k in whole if k.startswith('aux:')):.3g}")
    for key in whole:  # weights and BatchNorm running statistics
        if contexts == 1:
            np.testing.assert_array_equal(parts[key], whole[key], err_msg=key)
        else:
            np.testing.assert_allclose(parts[key], whole[key], rtol=1e-4, atol=1e-5, err_msg=key)
    states = mx.nd.load(os.path.join(tmp_path / "parts", "y1-arcface-synthetic", "model-resume.states"))
    assert "mom:fc7_weight" in states and np.abs(states["mom:fc7_weight"].asnumpy()).max() > 0
    # resuming a run that already reached --max-steps trains nothing and rewrites nothing (its
    # train.log only gets the lines of this attempt appended)
    folder = os.path.join(tmp_path / "parts", "y1-arcface-synthetic")
    saved = [name for name in os.listdir(folder) if name != "train.log"]
    before = {name: open(os.path.join(folder, name), "rb").read() for name in saved}
    log_before = open(os.path.join(folder, "train.log"), "rb").read()
    caplog.clear()
    main(_argv(data, tmp_path / "parts", "--max-steps", "24", "--resume", *flags))
    assert "step 24 already reaches --max-steps 24" in caplog.text and "finished 0 steps" in caplog.text
    assert {name: open(os.path.join(folder, name), "rb").read() for name in os.listdir(folder)
            if name != "train.log"} == before
    log_after = open(os.path.join(folder, "train.log"), "rb").read()
    assert log_after.startswith(log_before) and b"nothing to train" in log_after[len(log_before):]


@pytest.mark.slow
def test_a_damaged_resume_set_is_skipped_for_the_last_intact_one(data, tmp_path, caplog):
    caplog.set_level("INFO")
    main(_argv(data, tmp_path, "--max-steps", "8"))
    path = os.path.join(tmp_path, "y1-arcface-synthetic", "model-resume.params")
    with open(path, "r+b") as f:  # 64 bytes in the middle of the weights
        f.seek(os.path.getsize(path) // 2)
        f.write(b"\xff" * 64)
    caplog.clear()
    main(_argv(data, tmp_path, "--max-steps", "10", "--resume"))
    assert "model-resume: model-resume.params does not match the checksum in model-resume.json" in caplog.text
    assert "model-0001 at step 8" in caplog.text and "has no optimizer state" in caplog.text


@pytest.mark.slow
def test_a_non_finite_loss_stops_before_the_update(data, tmp_path):
    # the loss turns non-finite (stopped before that step's update), or an update overflows first and
    # the verification round after it refuses to save the weights
    with pytest.raises(FaceKDError, match=r"(step \d+: the loss is (nan|inf).*before this step's update.*--lr "
                                          r"1e\+06 too high|refusing to write .*holds NaN or infinity.*--lr too high)"):
        main(_argv(data, tmp_path, "--max-steps", "20", "--lr", "1e6", "--verbose", "1"))
    folder = os.path.join(tmp_path, "y1-arcface-synthetic")
    for name in os.listdir(folder):  # whatever was saved before is finite
        if name.endswith(".params"):
            for key, value in mx.nd.load(os.path.join(folder, name)).items():
                assert np.isfinite(value.asnumpy()).all(), (name, key)


def test_no_checkpoint_with_non_finite_weights_is_written(tmp_path):
    from facekd.training.checkpoint import save_set

    sym = mx.sym.FullyConnected(mx.sym.Variable("data"), num_hidden=2, name="fc1")
    good = {"fc1_weight": mx.nd.ones((2, 3)), "fc1_bias": mx.nd.zeros(2)}
    save_set(str(tmp_path / "model"), 1, sym, good, {}, dict(step=1, rounds=1, highest_last=0.5, highest_sum=0.5))
    before = open(tmp_path / "model-0001.params", "rb").read()
    bad = dict(good, fc1_bias=mx.nd.array([np.nan, 0.0]))
    with pytest.raises(FaceKDError, match="refusing to write .*model-0001.params: arg fc1_bias holds NaN"):
        save_set(str(tmp_path / "model"), 1, sym, bad, {}, dict(step=2, rounds=2, highest_last=0.5, highest_sum=0.5))
    assert open(tmp_path / "model-0001.params", "rb").read() == before  # the last good one is kept


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_finishes_the_step_saves_and_exits_0(data, tmp_path, sig):
    log_path = tmp_path / "train.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen([sys.executable, os.path.join(ROOT, "recognition", "train.py"),
                                 *_argv(data, tmp_path / "models", "--max-steps", "100000", "--verbose", "1000",
                                        "--frequent", "1")], stdout=log, stderr=subprocess.STDOUT)
        deadline = time.time() + 240
        while log_path.read_text().count("Speed: ") < 3:  # a few steps in
            assert proc.poll() is None and time.time() < deadline, log_path.read_text()[-2000:]
            time.sleep(0.2)
        proc.send_signal(sig)
        assert proc.wait(timeout=120) == 0, log_path.read_text()[-2000:]
    text = log_path.read_text()
    assert "stopping after this step" in text and "resume with --resume" in text
    step = int(text.split("stopped at step ")[1].split(",")[0])
    import json
    meta = json.load(open(tmp_path / "models" / "y1-arcface-synthetic" / "model-resume.json"))
    assert meta["step"] == step and step < 1000  # between two verification rounds
    main(_argv(data, tmp_path / "models", "--max-steps", str(step + 2), "--resume", "--verbose", "1000"))
