"""recognition/launch.py: the whole dist_sync job from one command, locally and through ssh."""
import os
import stat
import subprocess
import sys
import time

import mxnet as mx
import pytest

from facekd.errors import FaceKDError
from facekd.training import launcher

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LAUNCH = os.path.join(ROOT, "recognition", "launch.py")
TRAIN = os.path.join(ROOT, "recognition", "train.py")


def _train(data, models, *extra):
    return [sys.executable, "-u", TRAIN, "--network", "y1", "--loss", "arcface", "--dataset", "synthetic",
            "--data-dir", str(data), "--models-root", str(models), "--per-batch-size", "4", "--max-steps", "3",
            "--verbose", "3", "--ckpt", "2", "--frequent", "1", "--kvstore", "dist_sync", *extra]


def test_the_plan_spreads_servers_then_workers_over_the_hosts():
    nodes = launcher.plan(3, 2, "10.0.0.1", 9091, hosts=["10.0.0.2", "b"], environ={"PS_VERBOSE": "1", "HOME": "/x"})
    a = "10.0.0.2"
    assert [(n.role, n.host) for n in nodes] == [("scheduler", None), ("server", a), ("server", "b"),
                                                 ("worker", a), ("worker", "b"), ("worker", a)]
    for node in nodes:
        assert node.env["DMLC_ROLE"] == node.role and node.env["DMLC_NUM_WORKER"] == "3"
        assert node.env["DMLC_NUM_SERVER"] == "2" and node.env["DMLC_PS_ROOT_URI"] == "10.0.0.1"
        assert node.env["PS_VERBOSE"] == "1" and "HOME" not in node.env
    assert nodes[1].env["DMLC_NODE_HOST"] == a and "DMLC_NODE_HOST" not in nodes[0].env
    assert "DMLC_NODE_HOST" not in nodes[2].env  # a host name: ps-lite finds its own interface
    remote = launcher.ssh_command(nodes[3], ["python3", "train.py", "--x", "a b"], "/w d")[-1]
    assert remote.startswith("cd '/w d' && env ") and "DMLC_ROLE=worker" in remote
    assert remote.endswith("python3 train.py --x 'a b'")


def test_bad_host_files_and_commands_fail_with_one_line(tmp_path):
    empty = tmp_path / "hosts"
    empty.write_text("# none\n\n")
    with pytest.raises(FaceKDError, match="lists no host"):
        launcher.read_hosts(str(empty))
    with pytest.raises(FaceKDError, match="cannot read the host file"):
        launcher.read_hosts(str(tmp_path / "missing"))
    with pytest.raises(FaceKDError, match="has no --kvstore dist_sync"):
        launcher.main(["-n", "2", "python3", "train.py"])
    with pytest.raises(FaceKDError, match="unknown launcher 'mpi'"):
        launcher.main(["-n", "2", "--launcher", "mpi", "python3", "train.py", "--kvstore", "dist_sync"])
    with pytest.raises(FaceKDError, match="needs -H HOSTFILE"):
        launcher.main(["-n", "2", "--launcher", "ssh", "python3", "train.py", "--kvstore", "dist_sync"])


def _fake_ssh(folder):
    """An `ssh` that runs the remote command on this machine (the last argument, through sh)."""
    path = folder / "ssh"
    path.write_text('#!/bin/sh\nfor last; do :; done\nexec sh -c "$last"\n')
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return str(folder)


@pytest.mark.slow
@pytest.mark.parametrize("how", ["local", "ssh"])
def test_one_command_runs_the_whole_job(synthetic_dir, tmp_path, how):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env.pop("CUDA_VISIBLE_DEVICES", None)
    extra = []
    if how == "ssh":
        (tmp_path / "hosts").write_text("localhost\nlocalhost  # the same machine twice\n")
        env["PATH"] = _fake_ssh(tmp_path) + os.pathsep + env["PATH"]
        extra = ["-H", str(tmp_path / "hosts"), "--host-ip", "127.0.0.1"]
    done = subprocess.run([sys.executable, LAUNCH, "-n", "2", "-s", "1", "--launcher", how, *extra,
                           *_train(synthetic_dir, tmp_path / "models")],
                          capture_output=True, text=True, timeout=300, env=env, cwd=ROOT)
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-3000:]
    assert "worker 0 of 2" in out and "worker 1 of 2" in out and "launch: 4 processes" in out
    mx.model.load_checkpoint(os.path.join(tmp_path, "models", "y1-arcface-synthetic", "model"), 1)


@pytest.mark.slow
def test_a_failing_worker_stops_the_job_and_sets_the_status(tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    start = time.time()
    done = subprocess.run([sys.executable, LAUNCH, "-n", "2", "-s", "1",
                           *_train(tmp_path / "no-such-data", tmp_path / "models")],
                          capture_output=True, text=True, timeout=300, env=env, cwd=ROOT)
    assert done.returncode == 2, done.stderr[-3000:]  # train.py's status for bad input
    assert "dataset folder" in done.stderr and "exited with status 2; stopping the job" in done.stderr
    assert time.time() - start < 120  # the scheduler and server did not wait for the workers for ever
