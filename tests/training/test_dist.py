"""Two workers train through MXNet's parameter server on loopback (kvstore dist_sync)."""
import os
import socket
import subprocess
import sys

import mxnet as mx
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_dist_sync_two_workers_on_loopback(synthetic_dir, tmp_path):
    env = dict(os.environ, DMLC_PS_ROOT_URI="127.0.0.1", DMLC_PS_ROOT_PORT=str(_free_port()),
               DMLC_NUM_SERVER="1", DMLC_NUM_WORKER="2", PS_VERBOSE="0", OMP_NUM_THREADS="1")
    env.pop("CUDA_VISIBLE_DEVICES", None)
    # Importing mxnet with DMLC_ROLE=scheduler/server runs that role until the workers finish.
    # The server unpickles the workers' optimizer (with the lr schedule) and runs the updates.
    roles = [subprocess.Popen([sys.executable, "-c", "import mxnet"], env=dict(env, DMLC_ROLE=role),
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for role in ("scheduler", "server")]
    argv = [sys.executable, os.path.join(ROOT, "recognition", "train.py"), "--network", "y1", "--loss",
            "arcface", "--dataset", "synthetic", "--data-dir", str(synthetic_dir), "--models-root",
            str(tmp_path), "--per-batch-size", "4", "--max-steps", "3", "--verbose", "3", "--ckpt", "2",
            "--frequent", "1", "--kvstore", "dist_sync", "--seed", "0", "--lr-steps", "2"]
    workers = [subprocess.Popen(argv, env=dict(env, DMLC_ROLE="worker"), stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True) for _ in range(2)]
    try:
        logs = [w.communicate(timeout=240)[0] for w in workers]
        server_log = roles[1].communicate(timeout=60)[0]
        roles[0].wait(timeout=60)
    finally:
        for proc in workers + roles:
            if proc.poll() is None:
                proc.kill()
    for w, log in zip(workers, logs):
        assert w.returncode == 0, log[-2000:]
    assert "Traceback" not in server_log and "Exception" not in server_log, server_log[-2000:]
    assert "lr change to 0.01" in server_log  # --lr-steps 2: the schedule runs on the server
    assert sorted("worker 0 of 2" in log for log in logs) == [False, True]
    assert sorted("worker 1 of 2" in log for log in logs) == [False, True]
    first = logs[0] if "worker 0 of 2" in logs[0] else logs[1]
    assert "[synth_easy][3]Accuracy-Flip" in first and "saving 1" in first
    sym, arg_params, _ = mx.model.load_checkpoint(os.path.join(tmp_path, "y1-arcface-synthetic", "model"), 1)
    assert "fc7_weight" in arg_params
