"""Plots leave out panels that carry nothing and keep their legends off the curves, with short names."""
import numpy as np
import pytest

from facekd.errors import FaceKDError
from facekd.evaluation import plots

from evalhelpers import load_script

# a soft-loss run: acc stays 0, lossvalue and cos move; verification after 40 steps
SOFT_LOG = """2026-12-02T01:23:45 config: tables from /x/recognition/config.py
2026-12-02T01:23:46 total steps: 80 (the smaller of --max-steps 80 and --end-epoch 10000 x 40 batches per epoch = 400000)
2026-12-02T01:23:47 Epoch[0] Batch [0-20]\tSpeed: 500.00 samples/sec\tacc=0.000000\tlossvalue=23.500\tcos=0.90\tTime left: 0:00:12
2026-12-02T01:23:48 Epoch[0] Batch [20-40]\tSpeed: 512.31 samples/sec\tacc=0.000000\tlossvalue=21.403\tcos=0.80\tTime left: 0:00:08
2026-12-02T01:23:49 [synth_easy][40]Accuracy-Flip: 0.61450+-0.02350
2026-12-02T01:23:50 Epoch[1] Batch [0-20]\tSpeed: 498.50 samples/sec\tacc=0.000000\tlossvalue=19.000\tcos=0.70\tTime left: 0:00:04
2026-12-02T01:23:51 Epoch[1] Batch [20-40]\tSpeed: 505.00 samples/sec\tacc=0.000000\tlossvalue=18.500\tcos=0.60\tTime left: 0:00:00
"""


def _ylabels(fig):
    return [ax.get_ylabel() for ax in fig.axes]


def test_train_log_with_time_stamps_parses():
    log = plots.parse_training_log(SOFT_LOG.splitlines())
    assert log.batches == [20, 40, 60, 80] and log.speeds == [500.0, 512.31, 498.5, 505.0]
    assert log.metrics["lossvalue"] == [(20, 23.5), (40, 21.403), (60, 19.0), (80, 18.5)]
    assert sorted(log.metrics) == ["acc", "cos", "lossvalue"]  # "Time left: ..." is not a metric
    assert log.accuracy == {"synth_easy": [(40, 0.6145, 0.0235)]}


def test_constant_acc_gets_no_panel():
    log = plots.parse_training_log(SOFT_LOG.splitlines())
    fig = plots.training_figure(log, title="y1-angular_distillation-synthetic/train.log")
    try:
        assert len(fig.axes) == 4
        assert _ylabels(fig) == ["lossvalue", "cos", "samples/sec", "Accuracy-Flip"]
        assert fig.axes[0].get_title() == ("y1-angular_distillation-synthetic/train.log\n"
                                           "constant, not drawn: acc = 0")
    finally:
        plots._pyplot().close(fig)


def test_panels_without_values_and_single_points():
    log = plots.parse_training_log([
        "Epoch[0] Batch [0-20]\tSpeed: 10.00 samples/sec\tacc=0.5\tlossvalue=nan",
        "Epoch[0] Batch [20-40]\tSpeed: 12.00 samples/sec\tacc=0.6\tlossvalue=nan",
        "Epoch[0] Batch [40-60]\tSpeed: 11.00 samples/sec\tacc=0.7\tlossvalue=inf\tcos=0.3",
    ])
    panels, left_out = plots.training_panels(log)
    assert panels == ["acc", "speed"]
    assert left_out == {"lossvalue": "no finite value", "cos": "0.3"}  # one value is no curve


def test_nothing_left_to_draw(tmp_path):
    log = plots.parse_training_log(["Epoch[0] Batch [0-20]\tSpeed: 10.00 samples/sec\tacc=0.000000"])
    with pytest.raises(FaceKDError, match=r"nothing to plot into .*every series of the log is constant "
                                          r"\(acc = 0, speed = 10\) and it has no verification round"):
        plots.plot_training_curves(log, str(tmp_path / "curves.png"))


def test_plot_training_script_on_a_train_log(tmp_path):
    folder = tmp_path / "y1-angular_distillation-synthetic"
    folder.mkdir()
    (folder / "train.log").write_text(SOFT_LOG)
    out = tmp_path / "curves.png"
    assert load_script("plot_training").main([str(folder / "train.log"), str(out)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_short_names():
    assert plots.short_names(["./models/y1-arcface-emore/model,1"]) == ["y1-arcface-emore/model,1"]
    assert plots.short_names(["/data/ckpt/r100,3", "/data/ckpt/y1md,1"]) == ["r100,3", "y1md,1"]
    assert plots.short_names(["/a/run/model,1", "/b/run/model,1", "/b/run/model,2"]) == \
        ["a/run/model,1", "b/run/model,1", "run/model,2"]
    assert plots.short_names(["model,1"]) == ["model,1"]


def _legend_texts(fig):
    return [t.get_text() for ax in fig.axes if ax.get_legend() for t in ax.get_legend().get_texts()]


def _outside(fig, ax):
    """The legend's box lies entirely below or to the right of the axes' box (no curve under it)."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    legend = ax.get_legend().get_window_extent(renderer)
    box = ax.get_window_extent(renderer)
    return legend.y1 <= box.y0 or legend.x0 >= box.x1


def test_roc_legend_short_and_outside():
    fpr = np.array([0.0, 1e-4, 1e-3, 0.01, 0.1, 1.0])
    models = ["/home/me/insightface/models/y1-arcface-emore/model,1",
              "/home/me/insightface/models/r100-arcface-emore/model,1"]
    labels = plots.roc_labels([(m, t) for m in models for t in ("lfw", "/data/faces_emore/cfp_fp")])
    assert labels == ["y1-arcface-emore/model,1 lfw", "y1-arcface-emore/model,1 cfp_fp",
                      "r100-arcface-emore/model,1 lfw", "r100-arcface-emore/model,1 cfp_fp"]
    fig = plots.roc_figure([(label, fpr, fpr ** (0.2 + 0.1 * i)) for i, label in enumerate(labels)])
    try:
        assert _legend_texts(fig) == labels
        assert _outside(fig, fig.axes[0])
    finally:
        plots._pyplot().close(fig)


def test_verification_legend_outside():
    log = plots.parse_training_log(SOFT_LOG.splitlines() + ["[synth_pose][80]Accuracy-Flip: 0.7+-0.01",
                                                            "[synth_pose][40]Accuracy-Flip: 0.6+-0.01"])
    fig = plots.training_figure(log)
    try:
        assert _legend_texts(fig) == ["synth_easy", "synth_pose"]
        assert _outside(fig, fig.axes[-1])
    finally:
        plots._pyplot().close(fig)
