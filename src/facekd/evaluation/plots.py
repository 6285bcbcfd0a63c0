"""PNG plots: ROC curves, and training curves parsed from a training log (matplotlib, Agg)."""
import os
import re
from dataclasses import dataclass, field

import numpy as np

from ..errors import FaceKDError
from ..atomic import atomic_path

_SPEED = re.compile(r"Epoch\[(\d+)\]\s+Batch\s*\[(\d+)-(\d+)\]\s+Speed:\s*([0-9.eE+-]+)\s*samples/sec(.*)")
_METRIC = re.compile(r"([A-Za-z_][\w-]*)=([-+0-9.eE]+|nan|inf)")
_ACC = re.compile(r"\[([^\]\[]+)\]\[(\d+)\]Accuracy-Flip:\s*([0-9.]+)\+-([0-9.]+)")
_XNORM = re.compile(r"\[([^\]\[]+)\]\[(\d+)\]XNorm:\s*([-+0-9.eE]+|nan|inf)")


@dataclass
class TrainingLog:
    """Parsed log: speed rows (global batch, epoch, samples/s, metrics) and verification points."""
    batches: list = field(default_factory=list)      # global batch index at each Speedometer line
    epochs: list = field(default_factory=list)
    speeds: list = field(default_factory=list)
    metrics: dict = field(default_factory=dict)      # name -> list of (global batch, value)
    accuracy: dict = field(default_factory=dict)     # target -> list of (step, acc, std)
    xnorm: dict = field(default_factory=dict)        # target -> list of (step, xnorm)


def parse_training_log(lines):
    """Parse Speedometer and ``[target][step]Accuracy-Flip`` lines from an iterable of lines."""
    log = TrainingLog()
    offset, last_epoch, last_end = 0, None, 0
    for line in lines:
        m = _SPEED.search(line)
        if m:
            epoch, end = int(m.group(1)), int(m.group(3))
            if last_epoch is not None and epoch != last_epoch:
                offset += last_end  # batches restart at each epoch: continue the global count
            last_epoch, last_end = epoch, end
            step = offset + end
            log.batches.append(step)
            log.epochs.append(epoch)
            log.speeds.append(float(m.group(4)))
            for name, value in _METRIC.findall(m.group(5)):
                log.metrics.setdefault(name, []).append((step, float(value)))
            continue
        m = _ACC.search(line)
        if m:
            log.accuracy.setdefault(m.group(1), []).append(
                (int(m.group(2)), float(m.group(3)), float(m.group(4))))
            continue
        m = _XNORM.search(line)
        if m:
            log.xnorm.setdefault(m.group(1), []).append((int(m.group(2)), float(m.group(3))))
    return log


def read_training_log(path):
    """parse_training_log of a file, with a clear error when it is missing or holds nothing useful."""
    if not os.path.isfile(path):
        raise FaceKDError(f"training log {path} not found")
    with open(path, errors="replace") as f:
        log = parse_training_log(f)
    if not log.batches and not log.accuracy:
        raise FaceKDError(f"{path}: no 'Epoch[..] Batch [..] Speed:' or '[target][step]Accuracy-Flip:' "
                          f"lines; is it a training log?")
    return log


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def check_parent_folder(path):
    """Fail early when the folder of an output file does not exist."""
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise FaceKDError(f"cannot write {path}: folder {folder} does not exist")


def check_png_output(path, flag, overwrite=False):
    """Fail before any work when the PNG ``path`` (the value of ``flag``) cannot be written:
    not a .png name, an existing folder or special file, an existing file without
    ``overwrite``, a file in the way of its folder, a folder that is missing or not writable."""
    from ..atomic import check_writable_dir

    if os.path.isdir(path):
        raise FaceKDError(f"{flag} {path} is a folder; give a file name such as {os.path.join(path, 'roc.png')}")
    if not path.lower().endswith(".png"):
        raise FaceKDError(f"{flag} {path}: the plot is written as PNG; give a file name ending in .png")
    if os.path.lexists(path):
        if os.path.exists(path) and not os.path.isfile(path):
            raise FaceKDError(f"{flag} {path} is not a regular file; choose another file name")
        if not overwrite:
            raise FaceKDError(f"{flag} {path} already exists; pass --overwrite to replace it, "
                              "or choose another file name")
    folder = os.path.dirname(os.path.abspath(path))
    ancestor = folder
    while not os.path.exists(ancestor) and os.path.dirname(ancestor) != ancestor:
        ancestor = os.path.dirname(ancestor)
    if not os.path.isdir(ancestor):
        raise FaceKDError(f"{flag} {path}: {ancestor} is a file, not a folder; choose another path")
    if ancestor != folder:
        raise FaceKDError(f"{flag} {path}: folder {folder} does not exist; create it or choose another path")
    check_writable_dir(folder, flag)


def _save(fig, path):
    """Write the figure as PNG under a temporary name, then rename it into place."""
    plt = _pyplot()
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png", dpi=100, bbox_inches="tight")
    finally:
        plt.close(fig)
    return path


def short_names(models):
    """Legend names of checkpoints ``prefix,epoch``: the shortest tails of their paths that still
    tell them apart. train.py names every checkpoint ``model`` inside its run folder, so a tail
    ending in ``model`` keeps that folder: ``./models/y1-arcface-emore/model,1`` ->
    ``y1-arcface-emore/model,1``; ``/x/r100.0/model,1`` and ``/y/r100.0/model,1`` keep ``x``/``y``."""
    parts = [[p for p in str(m).replace(os.sep, "/").split("/") if p not in ("", ".")] or [str(m)]
             for m in models]
    keep = [2 if len(p) > 1 and p[-1].rpartition(",")[0] == "model" else 1 for p in parts]
    while True:
        tails = ["/".join(p[-k:]) for p, k in zip(parts, keep)]
        grow = [i for i, t in enumerate(tails) if keep[i] < len(parts[i])
                and any(t == u and str(models[i]) != str(models[j]) for j, u in enumerate(tails))]
        if not grow:
            return tails
        for i in grow:
            keep[i] += 1


def roc_labels(pairs):
    """Legend labels ``<short model name> <target>`` of ``[(model, target), ...]``."""
    names = short_names([model for model, _ in pairs])
    return [f"{name} {os.path.basename(str(target))}" for name, (_, target) in zip(names, pairs)]


def roc_figure(curves, title="ROC", log_fpr=True):
    """The figure of :func:`plot_roc`; the legend sits below the axes, clear of the curves."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 5))
    floor = 1.0
    for label, fpr, tpr in curves:
        fpr = np.asarray(fpr, dtype=np.float64)
        tpr = np.asarray(tpr, dtype=np.float64)
        order = np.argsort(fpr, kind="stable")
        fpr, tpr = fpr[order], tpr[order]
        positive = fpr[fpr > 0]
        if positive.size:
            floor = min(floor, positive.min())
        ax.plot(fpr, tpr, label=label, linewidth=1.5)
    if log_fpr:
        ax.set_xscale("log")
        ax.set_xlim(min(max(floor, 1e-6), 1e-1), 1.0)
    else:
        ax.set_xlim(0.0, 1.0)
    ax.set_ylim(0.0, 1.01)
    ax.set_xlabel("False positive rate (FAR)")
    ax.set_ylabel("True positive rate (TAR)")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=2 if len(curves) > 1 else 1, fontsize=8,
              frameon=False)
    return fig


def plot_roc(curves, path, title="ROC", log_fpr=True):
    """ROC curves ``[(label, fpr, tpr), ...]`` into one PNG (log-scale FAR by default); short
    labels (:func:`roc_labels`) keep the legend readable."""
    if not curves:
        raise FaceKDError(f"no ROC curves to plot into {path}")
    check_parent_folder(path)
    return _save(roc_figure(curves, title, log_fpr), path)


def _constant(points):
    """The one value of a series that carries no curve (no finite value, or a single distinct
    one: ``acc`` stays 0 for soft losses over a short run), as text; None when it varies."""
    values = np.array([v for _, v in points], dtype=np.float64)
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return "no finite value"
    if finite.size < 2 or finite.min() == finite.max():
        return f"{finite[0]:g}" + (" (and non-finite values)" if finite.size < values.size else "")
    return None


def training_panels(log):
    """(panels to draw, {series: its constant value} left out). Panels are the metrics of the
    speed lines, the speed, and the verification accuracy (drawn whenever a round was logged)."""
    series = dict(log.metrics)
    if log.speeds:
        series["speed"] = list(zip(log.batches, log.speeds))
    panels, left_out = [], {}
    for name, points in series.items():
        value = _constant(points)
        if value is None:
            panels.append(name)
        else:
            left_out[name] = value
    if log.accuracy:
        panels.append("verification")
    return panels, left_out


def _listed(left_out):
    return ", ".join(f"{k} = {v}" for k, v in left_out.items())


def training_figure(log, title="training"):
    """The figure of :func:`plot_training_curves`: one panel per series that varies."""
    panels, left_out = training_panels(log)
    if not panels:
        raise FaceKDError(f"nothing to plot: every series of the log is constant ({_listed(left_out)})")
    plt = _pyplot()
    fig, axes = plt.subplots(len(panels), 1, figsize=(7, 2.4 * len(panels)), squeeze=False)
    for ax, panel in zip(axes[:, 0], panels):
        if panel == "verification":
            for target, points in log.accuracy.items():
                steps, acc, std = (np.array(v) for v in zip(*points))
                ax.errorbar(steps, acc, yerr=std, marker="o", markersize=3, capsize=2, label=target)
            ax.set_xlabel("step")
            ax.set_ylabel("Accuracy-Flip")
            ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
        elif panel == "speed":
            ax.plot(log.batches, log.speeds)
            ax.set_ylabel("samples/sec")
            ax.set_xlabel("batch")
        else:
            steps, values = zip(*log.metrics[panel])
            ax.plot(steps, values)
            ax.set_ylabel(panel)
            ax.set_xlabel("batch")
        ax.grid(True, alpha=0.3)
    if left_out:
        title += f"\nconstant, not drawn: {_listed(left_out)}"
    axes[0, 0].set_title(title, fontsize=10)
    fig.tight_layout()
    return fig


def plot_training_curves(log, path, title="training"):
    """Loss, accuracy and speed against the global batch, verification accuracy against the step;
    a series that stays constant is named in the title instead of drawn."""
    if not log.batches and not log.accuracy:
        raise FaceKDError(f"nothing to plot into {path}: the log has no speed or verification lines")
    panels, left_out = training_panels(log)
    if not panels:
        raise FaceKDError(f"nothing to plot into {path}: every series of the log is constant "
                          f"({_listed(left_out)}) and it has no verification round")
    check_parent_folder(path)
    return _save(training_figure(log, title), path)
