"""Training through MXNet's parameter server on loopback (kvstore dist_sync): scheduler, server
and workers all run recognition/train.py, as MXNet's launcher starts them."""
import os
import signal
import socket
import subprocess
import sys
import time

import mxnet as mx
import numpy as np
import pytest

from facekd.training.cluster_watch import EXIT_LOST

from trainhelpers import link_training_files

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TRAIN = os.path.join(ROOT, "recognition", "train.py")
# A worker that reads every image (no shard of its own): two of them read the same batches.
SAME_SHARD = ("import sys, numpy; import facekd.data.iterators as it; "
              "it.shard = lambda items, *a, **k: numpy.asarray(items); "
              "import runpy; "
              "sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__')")


def _free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _argv(data, models, *extra):
    return ["--network", "y1", "--loss", "arcface", "--dataset", "synthetic", "--data-dir", str(data),
            "--models-root", str(models), "--per-batch-size", "4", "--ckpt", "2", "--frequent", "1",
            "--seed", "0", *extra]


class Job:
    """Scheduler, one server and two workers on loopback, each logging to a file of ``logs``;
    ``worker`` is the command of a worker."""

    def __init__(self, argv, logs, worker=(sys.executable, TRAIN), **env):
        root = _free_port()
        self.env = dict(os.environ, DMLC_PS_ROOT_URI="127.0.0.1", DMLC_PS_ROOT_PORT=str(root),
                        FACEKD_WATCH_PORT=str(_free_port()), DMLC_NUM_SERVER="1", DMLC_NUM_WORKER="2",
                        PS_VERBOSE="0", OMP_NUM_THREADS="1", **env)
        self.env.pop("CUDA_VISIBLE_DEVICES", None)
        os.makedirs(logs, exist_ok=True)
        self.paths = [os.path.join(logs, name + ".log") for name in ("scheduler", "server", "worker-a", "worker-b")]
        commands = [(sys.executable, TRAIN)] * 2 + [worker] * 2
        self.processes = []
        for path, role, cmd in zip(self.paths, ("scheduler", "server", "worker", "worker"), commands):
            with open(path, "w") as log:
                self.processes.append(subprocess.Popen(list(cmd) + argv, env=dict(self.env, DMLC_ROLE=role),
                                                       stdout=log, stderr=subprocess.STDOUT))
        self.scheduler, self.server, *self.workers = self.processes

    def logs(self):
        return [open(path).read() for path in self.paths]

    def finish(self, timeout=300):
        try:
            for proc in self.processes:
                proc.wait(timeout=timeout)
            return self.logs()
        finally:
            self.kill()

    def kill(self):
        for proc in self.processes:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


@pytest.mark.slow
def test_dist_sync_two_workers_on_loopback(synthetic_dir, tmp_path):
    job = Job(_argv(synthetic_dir, tmp_path, "--max-steps", "3", "--verbose", "3", "--kvstore", "dist_sync",
                    "--lr-steps", "2"), tmp_path / "logs")
    scheduler_log, server_log, *logs = job.finish()
    for proc, log in zip(job.processes, [scheduler_log, server_log] + logs):
        assert proc.returncode == 0, log[-2000:]
    assert "Traceback" not in server_log + scheduler_log, server_log[-2000:]
    assert all("lr change to 0.01" in log for log in logs)  # --lr-steps 2: every worker runs the update
    assert sorted("worker 0 of 2" in log for log in logs) == [False, True]
    assert sorted("worker 1 of 2" in log for log in logs) == [False, True]
    first = logs[0] if "worker 0 of 2" in logs[0] else logs[1]
    assert "[synth_easy][3]Accuracy-Flip" in first and "saving 1" in first
    sym, arg_params, _ = mx.model.load_checkpoint(os.path.join(tmp_path, "y1-arcface-synthetic", "model"), 1)
    assert "fc7_weight" in arg_params
    # the momentum is in the workers, and worker 0 saved it for --resume
    states = mx.nd.load(os.path.join(tmp_path, "y1-arcface-synthetic", "model-resume.states"))
    assert np.abs(states["mom:fc7_weight"].asnumpy()).max() > 0


@pytest.mark.slow
def test_two_workers_on_the_same_batches_equal_one_process(synthetic_dir, tmp_path):
    """The gradient is averaged over workers: two workers that read the same batches take the
    steps that one process takes on those batches (float32 tolerance; the sum of two equal
    gradients halved is exact, so in practice bitwise)."""
    data = link_training_files(synthetic_dir, str(tmp_path / "data"))
    flags = ("--max-steps", "6", "--verbose", "100", "--lr", "0.05", "--mom", "0.9")
    job = Job(_argv(data, tmp_path / "dist", *flags, "--kvstore", "dist_sync"), tmp_path / "logs",
              worker=(sys.executable, "-c", SAME_SHARD, TRAIN))
    for proc, log in zip(job.processes, job.finish()):
        assert proc.returncode == 0, log[-2000:]
    alone = subprocess.run([sys.executable, "-c", SAME_SHARD, TRAIN] + _argv(data, tmp_path / "alone", *flags),
                           capture_output=True, text=True, timeout=300, env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert alone.returncode == 0, alone.stderr[-2000:]
    load = lambda root: mx.nd.load(os.path.join(root, "y1-arcface-synthetic", "model-resume.params"))
    dist, one = load(tmp_path / "dist"), load(tmp_path / "alone")
    start = mx.nd.load(os.path.join(tmp_path / "alone", "y1-arcface-synthetic", "model-resume.states"))
    assert start  # momentum was saved on both sides
    weights = [k for k in one if k.startswith("arg:")]
    assert weights and sorted(dist) == sorted(one)
    for key in weights:  # BatchNorm running statistics (aux:) are each worker's own
        np.testing.assert_allclose(dist[key].asnumpy(), one[key].asnumpy(), rtol=1e-5, atol=1e-6, err_msg=key)


def _wait_for_training(job, timeout=240):
    """Block until both workers have logged a step."""
    deadline = time.time() + timeout
    while True:
        workers = job.logs()[2:]
        if all("Speed: " in log for log in workers):
            return
        assert time.time() < deadline and all(w.poll() is None for w in job.workers), workers
        time.sleep(0.1)


@pytest.mark.slow
@pytest.mark.parametrize("victim, fault", [("worker", "kill -9"), ("server", "kill -9"), ("worker", "SIGSTOP")])
def test_a_lost_process_stops_the_whole_job(synthetic_dir, tmp_path, victim, fault):
    """kill -9 of a worker or of the server (the connection closes), or a worker frozen (a machine
    gone from the network: silent, connection open): every other process exits non-zero, within
    seconds, or within the heartbeat timeout."""
    timeout = 5
    job = Job(_argv(synthetic_dir, tmp_path, "--max-steps", "100000", "--verbose", "100000", "--kvstore",
                    "dist_sync"), tmp_path / "logs", FACEKD_WATCH_TIMEOUT=str(timeout), FACEKD_WATCH_INTERVAL="0.5")
    try:
        _wait_for_training(job)
        victim_proc = job.server if victim == "server" else job.workers[1]
        victim_proc.send_signal(signal.SIGKILL if fault == "kill -9" else signal.SIGSTOP)
        faulted = time.time()
        others = [p for p in job.processes if p is not victim_proc]
        for proc in others:
            proc.wait(timeout=60)
        seconds = time.time() - faulted
    finally:
        job.kill()
    print(f"\n{fault} of the {victim}: the other {len(others)} processes exited within {seconds:.1f} s")
    logs = dict(zip(job.processes, job.logs()))
    for proc in others:
        assert proc.returncode == EXIT_LOST, logs[proc][-2000:]
    cause = "its connection closed before it finished" if fault == "kill -9" else "no heartbeat for"
    assert f"lost the {victim} (pid {victim_proc.pid} on {socket.gethostname()}): {cause}" in logs[job.scheduler]
    for proc in others[1:]:
        assert "Resume with --resume once every machine is back" in logs[proc], logs[proc][-2000:]
    assert seconds < (10 if fault == "kill -9" else timeout + 10)
    if fault == "SIGSTOP":
        assert seconds >= timeout - 1  # not before the timeout: a slow step is not a lost machine


@pytest.mark.slow
def test_an_interrupted_dist_sync_run_resumes_to_the_uninterrupted_weights(synthetic_dir, tmp_path):
    """Worker 0's set carries the momentum and the data position; every worker resumes from it."""
    data = link_training_files(synthetic_dir, str(tmp_path / "data"))
    flags = ("--verbose", "4", "--lr", "0.05", "--mom", "0.9", "--kvstore", "dist_sync", "--lr-steps", "6")
    runs = [("whole", "8", ()), ("parts", "4", ()), ("parts", "8", ("--resume",))]
    for i, (name, steps, extra) in enumerate(runs):
        job = Job(_argv(data, tmp_path / name, "--max-steps", steps, *flags, *extra), tmp_path / f"logs{i}")
        logs = job.finish()
        for proc, log in zip(job.processes, logs):
            assert proc.returncode == 0, log[-2000:]
    assert any("model-resume at step 4" in log for log in logs[2:])  # the resumed workers
    load = lambda name: mx.nd.load(os.path.join(tmp_path, name, "y1-arcface-synthetic", "model-resume.params"))
    whole, parts = load("whole"), load("parts")
    for key in (k for k in whole if k.startswith("arg:")):  # the weights, the same on every worker
        np.testing.assert_allclose(parts[key].asnumpy(), whole[key].asnumpy(), rtol=1e-5, atol=1e-6, err_msg=key)
