"""Training-log parsing and the PNG plots."""
import cv2
import numpy as np
import pytest

from facekd.errors import FaceKDError
from facekd.evaluation import plots

from evalhelpers import load_script

LOG = """called with {'network': 'y1'}
Epoch[0] Batch [0-20]\tSpeed: 500.00 samples/sec\tacc=0.001000\tlossvalue=23.500
INFO:root:Epoch[0] Batch [20-40]\tSpeed: 512.31 samples/sec\tacc=0.012500\tlossvalue=21.403
lr-batch-epoch: 0.1 39 0
[synth_easy][40]XNorm: 21.354530
[synth_easy][40]Accuracy-Flip: 0.61450+-0.02350
[synth_pose][40]Accuracy-Flip: 0.55000+-0.04000
[40]Accuracy-Highest: 0.55000
Epoch[1] Batch [0-20]\tSpeed: 498.5 samples/sec\tacc=0.050000\tlossvalue=19.000\tcos=0.250
2024-01-01 10:00:00 Epoch[1] Batch [20-40]\tSpeed: 505.0 samples/sec\tacc=0.060000\tlossvalue=18.500\tcos=0.200
[synth_easy][80]Accuracy-Flip: 0.70000+-0.01000
"""


def test_parse_training_log():
    log = plots.parse_training_log(LOG.splitlines())
    assert log.batches == [20, 40, 60, 80]  # epoch 1 continues after the 40 batches of epoch 0
    assert log.epochs == [0, 0, 1, 1]
    assert log.speeds == [500.0, 512.31, 498.5, 505.0]
    assert log.metrics["acc"] == [(20, 0.001), (40, 0.0125), (60, 0.05), (80, 0.06)]
    assert log.metrics["lossvalue"] == [(20, 23.5), (40, 21.403), (60, 19.0), (80, 18.5)]
    assert log.metrics["cos"] == [(60, 0.25), (80, 0.2)]
    assert log.accuracy == {"synth_easy": [(40, 0.6145, 0.0235), (80, 0.7, 0.01)],
                            "synth_pose": [(40, 0.55, 0.04)]}
    assert log.xnorm == {"synth_easy": [(40, 21.35453)]}


def test_training_curve_png(tmp_path, capsys):
    path = tmp_path / "train.log"
    path.write_text(LOG)
    out = str(tmp_path / "curves.png")
    assert load_script("plot_training").main([str(path), out]) == 0
    img = cv2.imread(out)
    assert img is not None and img.shape[0] > 300
    assert not [p for p in tmp_path.iterdir() if ".tmp" in p.name]
    # an existing output is kept unless --overwrite (here: the log itself given as the PNG)
    with pytest.raises(FaceKDError, match=r"already exists.*--overwrite"):
        load_script("plot_training").main([str(path), out])
    with pytest.raises(FaceKDError, match=r"ending in \.png"):
        load_script("plot_training").main([str(path), str(path)])
    assert path.read_text() == LOG
    assert load_script("plot_training").main([str(path), out, "--overwrite"]) == 0


def test_roc_png(tmp_path):
    out = str(tmp_path / "roc.png")
    fpr = np.array([0.0, 1e-4, 1e-3, 0.01, 0.1, 1.0])
    plots.plot_roc([("a", fpr, np.sqrt(fpr)), ("b", fpr, fpr ** 0.25)], out)
    assert cv2.imread(out) is not None


def test_errors(tmp_path):
    with pytest.raises(FaceKDError, match="not found"):
        plots.read_training_log(str(tmp_path / "missing.log"))
    (tmp_path / "other.txt").write_text("hello\n")
    with pytest.raises(FaceKDError, match="is it a training log"):
        plots.read_training_log(str(tmp_path / "other.txt"))
    with pytest.raises(FaceKDError, match="does not exist"):
        plots.plot_roc([("a", [0, 1], [0, 1])], str(tmp_path / "no" / "roc.png"))
    with pytest.raises(FaceKDError, match="no ROC curves"):
        plots.plot_roc([], str(tmp_path / "roc.png"))
