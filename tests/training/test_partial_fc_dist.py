"""--sample-ratio under dist_sync on loopback: the workers agree on each step's sample (the union of
their labels, through the servers), sum their row_sparse gradients and apply the same lazy update."""
import os
import subprocess
import sys

import mxnet as mx
import numpy as np
import pytest

import partial_fc_worker as worker
from test_dist import SAME_SHARD, _free_port  # a worker that reads every image, not its shard
from trainhelpers import link_training_files

HERE = os.path.dirname(os.path.abspath(__file__))
TRAIN = os.path.join(os.path.dirname(os.path.dirname(HERE)), "recognition", "train.py")


def _argv(data, models, *extra):
    return ["--network", "y1", "--loss", "arcface", "--dataset", "synthetic", "--data-dir", str(data),
            "--models-root", str(models), "--frequent", "1", "--seed", "5", "--sample-ratio", "0.5", *extra]


def _params(models):
    arrays = mx.nd.load(os.path.join(models, "y1-arcface-synthetic", "model-resume.params"))
    return {k: v.asnumpy() for k, v in arrays.items()}


def _job(commands, tmp_path, argv=()):
    """Run a scheduler, a server and two workers (``commands``: the four command lines) on loopback."""
    env = dict(os.environ, DMLC_PS_ROOT_URI="127.0.0.1", DMLC_PS_ROOT_PORT=str(_free_port()),
               FACEKD_WATCH_PORT=str(_free_port()), DMLC_NUM_SERVER="1", DMLC_NUM_WORKER="2", PS_VERBOSE="0",
               OMP_NUM_THREADS="1")
    env.pop("CUDA_VISIBLE_DEVICES", None)
    logs = [tmp_path / f"{n}.log" for n in ("scheduler", "server", "worker-a", "worker-b")]
    procs = []
    try:
        for cmd, role, log in zip(commands, ("scheduler", "server", "worker", "worker"), logs):
            with open(log, "w") as out:
                procs.append(subprocess.Popen(list(cmd) + list(argv), env=dict(env, DMLC_ROLE=role), stdout=out,
                                              stderr=subprocess.STDOUT))
        for proc in procs:
            proc.wait(timeout=300)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    for proc, log in zip(procs, logs):
        assert proc.returncode == 0, log.read_text()[-2000:]


@pytest.mark.slow
def test_two_dist_sync_workers_on_the_same_batches_equal_one_process(synthetic_dir, tmp_path):
    """Both workers exchange their labels, draw the same sample, sum their row_sparse gradients
    through the servers and apply the same lazy update: the step of one process on those batches."""
    data = link_training_files(synthetic_dir, str(tmp_path / "data"))
    flags = ("--max-steps", "4", "--verbose", "100", "--lr", "0.05", "--per-batch-size", "3")  # 2 x 3 <= 6 sampled
    _job([[sys.executable, TRAIN]] * 2 + [[sys.executable, "-c", SAME_SHARD, TRAIN]] * 2, tmp_path,
         _argv(data, tmp_path / "dist", *flags, "--kvstore", "dist_sync"))
    alone = subprocess.run([sys.executable, "-c", SAME_SHARD, TRAIN] + _argv(data, tmp_path / "alone", *flags),
                           capture_output=True, text=True, timeout=300, env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert alone.returncode == 0, alone.stderr[-2000:]
    dist, one = _params(tmp_path / "dist"), _params(tmp_path / "alone")
    weights = [k for k in one if k.startswith("arg:")]
    assert weights and sorted(dist) == sorted(one)
    for key in weights:
        np.testing.assert_allclose(dist[key], one[key], rtol=1e-5, atol=1e-6, err_msg=key)


@pytest.mark.slow
def test_workers_with_their_own_batches_agree_on_the_sample(tmp_path):
    """Worker 0 sees classes 0..19, worker 1 classes 20..39: each step's sample holds both workers'
    classes, is the same on both, and both end with the weights of one process whose two devices
    see those two batches."""
    idle = [sys.executable, "-c", "import mxnet"]  # a scheduler or server serves its role on import
    _job([idle, idle] + [[sys.executable, os.path.join(HERE, "partial_fc_worker.py"), str(tmp_path)]] * 2, tmp_path)
    runs = [dict(np.load(tmp_path / f"worker-{rank}.npz")) for rank in (0, 1)]
    np.testing.assert_array_equal(runs[0]["samples"], runs[1]["samples"])
    for step, sample in enumerate(runs[0]["samples"]):
        classes = np.concatenate([worker.batches(rank)[step][1] for rank in (0, 1)])
        assert np.isin(classes, sample).all() and sample.size == round(worker.RATIO * worker.C)
    for name in ("fc1_weight", "fc7_weight", "mom"):
        np.testing.assert_array_equal(runs[0][name], runs[1][name], err_msg=name)  # the same update
    kv = mx.kvstore.create("device")
    module, classes = worker.bind([mx.cpu(0), mx.cpu(1)], kv)
    steps = [tuple(np.concatenate(parts) for parts in zip(*step)) for step in zip(worker.batches(0), worker.batches(1))]
    alone = worker.train(module, classes, kv, steps, 2)
    np.testing.assert_array_equal(alone["samples"], runs[0]["samples"])
    for name in ("fc1_weight", "fc7_weight", "mom"):
        np.testing.assert_allclose(runs[0][name], alone[name], rtol=1e-5, atol=1e-6, err_msg=name)
