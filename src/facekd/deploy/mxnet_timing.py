"""MXNet's latency and throughput of a checkpoint, each in a process of its own.

MXNet sizes its OpenMP pool once, when it loads, so a measurement on one thread and one on
all cores need two processes. :func:`measure_mxnet` runs this module as
``python -m facekd.deploy.mxnet_timing`` with ``MXNET_OMP_MAX_THREADS`` and ``OMP_NUM_THREADS``
set to the thread count; it binds the checkpoint for the batch of ``--images`` (a ``.npy``
of float32 (B, 3, H, W)) and prints one JSON line: ``{"ms": median}`` for one image,
``{"images_per_second": ...}`` for a batch.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

from ..errors import FaceKDError, run_cli

MODULE = "facekd.deploy.mxnet_timing"


def measure_mxnet(prefix, epoch, images, threads, runs, warmup):
    """``{"ms": ...}`` (one image) or ``{"images_per_second": ...}`` of checkpoint ``prefix,epoch`` on ``threads``."""
    env = dict(os.environ, MXNET_OMP_MAX_THREADS=str(threads), OMP_NUM_THREADS=str(threads))
    with tempfile.TemporaryDirectory(prefix="facekd-mxtime-") as tmp:
        path = os.path.join(tmp, "images.npy")
        np.save(path, np.ascontiguousarray(images, dtype=np.float32))
        proc = subprocess.run([sys.executable, "-m", MODULE, "--model", f"{prefix},{epoch}", "--images", path,
                               "--runs", str(runs), "--warmup", str(warmup)],
                              env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        lines = [l for l in proc.stderr.splitlines() if l.strip()]
        raise FaceKDError(f"timing {prefix},{epoch} with MXNet on {threads} threads failed: "
                          f"{lines[-1].strip() if lines else 'exit status %d' % proc.returncode}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv=None):
    import mxnet as mx

    from ..checkpoints import parse_model_arg
    from ..embedder import Embedder
    from .measure import images_per_second, median_latency_ms

    p = argparse.ArgumentParser(description="time an MXNet checkpoint on the threads MXNet was started with")
    p.add_argument("--model", required=True)
    p.add_argument("--images", required=True)
    p.add_argument("--runs", type=int, required=True)
    p.add_argument("--warmup", type=int, required=True)
    args = p.parse_args(argv)
    images = np.load(args.images, allow_pickle=False)
    prefix, epoch = parse_model_arg(args.model)
    embedder = Embedder.from_checkpoint(prefix, epoch, [mx.cpu()], len(images), tuple(images.shape[2:]))

    def forward():
        embedder.embed(images)

    if len(images) == 1:
        result = {"ms": median_latency_ms(forward, args.runs, args.warmup)}
    else:
        result = {"images_per_second": images_per_second(forward, len(images), args.runs, args.warmup)}
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    run_cli(main)
