"""recognition/eval/verification.py: rows per model and target, ROC file, one-line errors."""
import os
import subprocess
import sys

import cv2
import mxnet as mx
import numpy as np
import pytest

from facekd.errors import FaceKDError
from facekd.evaluation import verification as V
from facekd.teacher import Embedder

from evalhelpers import ROOT, SIZE, load_script, tiny_params, tiny_symbol, write_target


@pytest.fixture
def setup(tmp_path, checkpoint):
    prefix, _ = checkpoint
    arg, aux = tiny_params(seed=1)
    mx.model.save_checkpoint(prefix, 2, tiny_symbol(), arg, aux)
    rng = np.random.RandomState(0)
    data = tmp_path / "data"
    data.mkdir()
    write_target(data / "synth_easy.bin", rng, n_pairs=10)
    write_target(data / "synth_pose.bin", rng, n_pairs=12)
    return prefix, str(data)


def test_rows_per_model_and_target(setup, tmp_path, capsys):
    prefix, data = setup
    roc = str(tmp_path / "roc.png")
    script = load_script("verification")
    assert script.main(["--data-dir", data, "--model", f"{prefix},1|2", "--target", "synth_easy,synth_pose",
                        "--batch-size", "4", "--image-size", "8,8", "--roc", roc]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if "Accuracy-Flip" in line]
    assert len(rows) == 4
    for row, (epoch, target) in zip(rows, [(1, "synth_easy"), (1, "synth_pose"), (2, "synth_easy"),
                                           (2, "synth_pose")]):
        emb = Embedder.from_checkpoint(prefix, epoch, [mx.cpu()], 4, SIZE)
        res = V.evaluate(emb, V.load_target(os.path.join(data, f"{target}.bin"), SIZE))
        assert row.startswith(f"[{target}]{prefix},{epoch}\t")
        assert f"XNorm: {res.xnorm:f}" in row
        assert f"Accuracy-Flip: {res.acc:1.5f}+-{res.std:1.5f}" in row
    png = cv2.imread(roc)
    assert png is not None and png.shape[0] > 100


def test_errors(setup):
    prefix, data = setup
    script = load_script("verification")
    with pytest.raises(FaceKDError, match=r"lfw\.bin not found.*present: synth_easy, synth_pose"):
        script.main(["--data-dir", data, "--model", f"{prefix},1", "--target", "lfw,synth_easy"])
    with pytest.raises(FaceKDError, match=r"model-0003\.params not found"):
        script.main(["--data-dir", data, "--model", f"{prefix},1|3", "--target", "synth_easy"])
    with pytest.raises(FaceKDError, match="--model"):
        script.main(["--data-dir", data, "--model", prefix, "--target", "synth_easy"])


def test_command_line_error_is_one_line(setup):
    prefix, data = setup
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "recognition", "eval", "verification.py"),
                           "--data-dir", data, "--model", f"{prefix},7", "--target", "synth_easy"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "model-0007.params not found" in lines[0]
