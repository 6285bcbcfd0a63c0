"""Fixtures of the training tests: a soft-labelled copy of the tiny set and a teacher checkpoint."""
import glob
import os
import shutil

import numpy as np
import pytest

from facekd.data.labels import make_soft
from facekd.data.recordio import RecordDataset, RecordDatasetWriter
from facekd.training.trainer import main

from trainhelpers import link_training_files


@pytest.fixture(scope="session")
def soft_dir(synthetic_dir, tmp_path_factory):
    """The tiny synthetic set with 512-d 'teacher' vectors as soft labels, and its .bin targets."""
    out = tmp_path_factory.mktemp("soft") / "data"
    rng = np.random.default_rng(0)
    with RecordDataset(synthetic_dir) as src, RecordDatasetWriter(out, num_classes=src.num_classes) as dst:
        for _, label, payload in src.iter_records():
            dst.add(make_soft(rng.normal(size=(1, 512)), [label[0]])[0], payload)
    for target in glob.glob(os.path.join(synthetic_dir, "*.bin")):
        shutil.copy(target, out)
    return out


@pytest.fixture(scope="session")
def teacher_prefix(synthetic_dir, tmp_path_factory):
    """A y1 arcface checkpoint (epoch 1) trained one step on the tiny set: it keeps fc7_weight."""
    root = tmp_path_factory.mktemp("teacher")
    data = link_training_files(synthetic_dir, str(root / "data"))
    main(["--network", "y1", "--loss", "arcface", "--dataset", "synthetic", "--data-dir", data,
          "--models-root", str(root / "models"), "--per-batch-size", "4", "--max-steps", "1",
          "--verbose", "1", "--ckpt", "3", "--seed", "0"])
    return str(root / "models" / "y1-arcface-synthetic" / "model")
