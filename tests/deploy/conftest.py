"""Fixtures of the deployment tests: tiny checkpoints of y1 (trained) and a PocketNet, one y1 export."""
import os

import pytest

from deployhelpers import ORT_PYTHON, load_script, record_images
from export_networks import random_checkpoint  # bench/export_networks.py

TINY_COUNTS = ["--latency-runs", "3", "--warmup-runs", "1", "--throughput-runs", "1", "--throughput-batch", "4"]


@pytest.fixture(scope="session")
def ort_python():
    """The onnxruntime environment's Python ('make venv-ort', which 'make test' runs first)."""
    if not os.access(ORT_PYTHON, os.X_OK):
        pytest.fail(f"{ORT_PYTHON} not found: run 'make venv-ort' (make test does)")
    return ORT_PYTHON


@pytest.fixture(scope="session")
def y1_checkpoint(synthetic_dir, tmp_path_factory):
    """(prefix, epoch) of a y1 arcface training checkpoint after 2 steps: graph cut at fc1, params with fc7."""
    from facekd.training.trainer import main

    root = tmp_path_factory.mktemp("deploy_y1")
    data = root / "data"
    data.mkdir()
    for name in ("train.rec", "train.idx", "property"):  # no .bin targets: no verification rounds
        os.symlink(synthetic_dir / name, data / name)
    main(["--network", "y1", "--loss", "arcface", "--dataset", "synthetic", "--data-dir", str(data),
          "--models-root", str(root / "models"), "--per-batch-size", "4", "--max-steps", "2", "--verbose", "2",
          "--ckpt", "3", "--seed", "0"])
    return str(root / "models" / "y1-arcface-synthetic" / "model"), 1


@pytest.fixture(scope="session")
def calibration_faces(synthetic_dir):
    """8 training faces of the tiny set (of 72), for the BatchNorm statistics of the random checkpoints."""
    return record_images(synthetic_dir, range(1, 73, 9))


@pytest.fixture(scope="session")
def pocketnet_checkpoint(tmp_path_factory, calibration_faces):
    return random_checkpoint(str(tmp_path_factory.mktemp("deploy_pocket") / "models" / "pocketnets128" / "model"),
                             "pocketnets128", calibration_faces[:4])


@pytest.fixture(scope="session")
def y1_export(y1_checkpoint, synthetic_dir, ort_python, tmp_path_factory):
    """(out folder, printed lines) of one export of the y1 checkpoint with --int8 and a report."""
    import contextlib
    import io

    prefix, epoch = y1_checkpoint
    out = str(tmp_path_factory.mktemp("deploy_y1_out") / "deploy")
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        load_script("deploy", "export").main([
            "--model", f"{prefix},{epoch}", "--out", out, "--data-dir", str(synthetic_dir), "--num-images", "24",
            "--int8", "--calib-data", str(synthetic_dir), "--calib-images", "16", "--target", "synth_easy",
            "--batch-size", "8", "--ort-python", ort_python, *TINY_COUNTS])
    return out, printed.getvalue().splitlines()
