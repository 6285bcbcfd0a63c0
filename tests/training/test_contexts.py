"""CUDA_VISIBLE_DEVICES -> MXNet contexts: parsing, and a refusal when MXNet cannot drive the GPUs."""
import os
import subprocess
import sys

import cv2
import mxnet as mx
import numpy as np
import pytest

from facekd.data.binfile import save_bin
from facekd.errors import FaceKDError
from facekd.training.contexts import get_contexts, visible_gpus

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CPU_BUILD = not mx.runtime.Features().is_enabled("CUDA")
CPU_HINT = "unset CUDA_VISIBLE_DEVICES to run on the CPU"


@pytest.mark.parametrize("value, expected", [
    (None, []), ("", []), ("  ", []), ("-1", []),
    ("0", [0]), ("3", [0]), ("2,3", [0, 1]), (" 0 , 1 ", [0, 1]), ("0,1,", [0, 1]),
    ("1,-1,2", [0]),                                         # CUDA hides -1 and what follows it
    ("GPU-8f6e1c2a-3b4d-11ee-be56-0242ac120002", [0]),
    ("GPU-8f6e1c2a,GPU-11ee0242", [0, 1]),
    ("MIG-GPU-8f6e1c2a-3b4d/1/0", [0]), ("MIG-4b1e3f6a-0000-5f6e-9a1b-0242ac120002", [0]),
])
def test_visible_gpus(value, expected):
    env = {} if value is None else {"CUDA_VISIBLE_DEVICES": value}
    assert visible_gpus(env) == expected


@pytest.mark.parametrize("value, entry", [
    ("abc", "abc"), ("0,abc", "abc"), ("1.5", "1.5"), ("-2", "-2"), ("GPU-", "GPU-"),
    ("gpu0", "gpu0"), ("0;1", "0;1"), ("cuda:0", "cuda:0"),
])
def test_bad_entries_are_refused(value, entry):
    with pytest.raises(FaceKDError) as err:
        visible_gpus({"CUDA_VISIBLE_DEVICES": value})
    assert str(err.value) == (f"CUDA_VISIBLE_DEVICES={value}: {entry!r} is not a GPU ordinal or GPU UUID; "
                              "unset it or give GPU ordinals like 0,1")
    with pytest.raises(FaceKDError, match="CUDA_VISIBLE_DEVICES"):  # get_contexts too, before any probe
        get_contexts(1, env={"CUDA_VISIBLE_DEVICES": value})


def test_repeated_gpu_is_refused():
    with pytest.raises(FaceKDError, match=r"^CUDA_VISIBLE_DEVICES=0,1,0: 0 given twice; list each GPU once"):
        visible_gpus({"CUDA_VISIBLE_DEVICES": "0,1,0"})


def test_cpu_contexts():
    assert get_contexts(2, env={}) == [mx.cpu(0), mx.cpu(1)]
    assert get_contexts(1, env={"CUDA_VISIBLE_DEVICES": "-1"}) == [mx.cpu(0)]
    with pytest.raises(FaceKDError, match="--cpu-contexts must be >= 1, got 0"):
        get_contexts(0, env={})


@pytest.mark.skipif(not CPU_BUILD, reason="needs the CPU build of MXNet")
@pytest.mark.parametrize("value, n", [("0", "1 GPU"), ("0,1", "2 GPUs"), ("GPU-8f6e1c2a", "1 GPU")])
def test_cpu_build_refuses_gpus(value, n):
    assert mx.context.num_gpus() == 0  # what this build answers (it does not raise)
    with pytest.raises(FaceKDError) as err:
        get_contexts(1, env={"CUDA_VISIBLE_DEVICES": value})
    assert str(err.value) == (f"CUDA_VISIBLE_DEVICES={value} asks for {n} but this MXNet build has no GPU "
                              f"support; install mxnet-cu112 from requirements-cu112.txt, or {CPU_HINT}")


class _Features:
    """mx.runtime.Features of a CUDA build."""

    def is_enabled(self, name):
        return name == "CUDA"


@pytest.fixture
def cuda_build(monkeypatch):
    """Pretend MXNet is a CUDA build seeing ``count`` GPUs (or raising ``error``)."""
    def make(count=0, error=None):
        def num_gpus():
            if error is not None:
                raise error
            return count
        monkeypatch.setattr(mx.runtime, "Features", _Features)
        monkeypatch.setattr(mx.context, "num_gpus", num_gpus)
    return make


def test_gpu_build_with_enough_gpus(cuda_build):
    cuda_build(count=4)
    assert get_contexts(1, env={"CUDA_VISIBLE_DEVICES": "0,1"}) == [mx.gpu(0), mx.gpu(1)]
    assert get_contexts(1, env={"CUDA_VISIBLE_DEVICES": "2,3"}) == [mx.gpu(0), mx.gpu(1)]  # renumbered


def test_gpu_build_with_too_few_gpus(cuda_build):
    cuda_build(count=2)
    with pytest.raises(FaceKDError) as err:
        get_contexts(1, env={"CUDA_VISIBLE_DEVICES": "0,1,2,3"})
    assert str(err.value) == ("CUDA_VISIBLE_DEVICES=0,1,2,3 asks for 4 GPUs but only 2 are present; list at "
                              f"most 2 (nvidia-smi shows them), or {CPU_HINT}")


def test_gpu_build_without_gpus(cuda_build):
    cuda_build(count=0)
    with pytest.raises(FaceKDError) as err:
        get_contexts(1, env={"CUDA_VISIBLE_DEVICES": "0"})
    assert str(err.value) == ("CUDA_VISIBLE_DEVICES=0 asks for 1 GPU but MXNet finds no GPU on this machine; "
                              f"check the NVIDIA driver with nvidia-smi, or {CPU_HINT}")


def test_gpu_build_whose_driver_fails(cuda_build):
    cause = "Check failed: e == cudaSuccess (35 vs. 0) : CUDA: CUDA driver version is insufficient"
    cuda_build(error=mx.base.MXNetError(
        "Traceback (most recent call last):\n  File \"../src/common/cuda/utils.h\", line 10\n"
        f"MXNetError: [10:00:00] ../src/common/cuda/utils.h:10: {cause}"))
    with pytest.raises(FaceKDError) as err:
        get_contexts(1, env={"CUDA_VISIBLE_DEVICES": "0"})
    assert str(err.value) == (f"CUDA_VISIBLE_DEVICES=0 asks for 1 GPU but MXNet cannot count the GPUs ({cause}); "
                              f"check the NVIDIA driver with nvidia-smi, or {CPU_HINT}")


def test_process_environment_is_the_default(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "abc")
    with pytest.raises(FaceKDError, match=r"^CUDA_VISIBLE_DEVICES=abc: 'abc' is not"):
        get_contexts(1)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    assert get_contexts(1) == [mx.cpu(0)]


# ----------------------------------------------------------------------------- command line

def _tiny_checkpoint(prefix, size=8, emb=4):
    """data -> FullyConnected pre_fc1 -> BatchNorm fc1 (the layer the evaluation cuts at)."""
    x = mx.sym.FullyConnected(mx.sym.Variable("data") / 255.0, num_hidden=emb, name="pre_fc1")
    x = mx.sym.BatchNorm(x, fix_gamma=True, eps=2e-5, name="fc1")
    rng = np.random.RandomState(0)
    arg = {"pre_fc1_weight": mx.nd.array(rng.randn(emb, 3 * size * size) * 0.1),
           "pre_fc1_bias": mx.nd.array(rng.randn(emb)), "fc1_gamma": mx.nd.ones(emb),
           "fc1_beta": mx.nd.zeros(emb)}
    aux = {"fc1_moving_mean": mx.nd.zeros(emb), "fc1_moving_var": mx.nd.ones(emb)}
    mx.model.save_checkpoint(prefix, 1, x, arg, aux)


@pytest.fixture(scope="module")
def verification_setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("ctx")
    prefix = str(root / "model")
    _tiny_checkpoint(prefix)
    rng = np.random.RandomState(0)
    bins = [cv2.imencode(".png", rng.randint(0, 256, (8, 8, 3)).astype(np.uint8))[1].tobytes()
            for _ in range(40)]
    save_bin(str(root / "tiny.bin"), bins, [i % 2 == 0 for i in range(20)])
    return prefix, str(root)


def _run_verification(setup, cuda_visible_devices):
    prefix, data = setup
    env = {k: v for k, v in os.environ.items() if k != "CUDA_VISIBLE_DEVICES"}
    if cuda_visible_devices is not None:
        env["CUDA_VISIBLE_DEVICES"] = cuda_visible_devices
    return subprocess.run([sys.executable, os.path.join(ROOT, "recognition", "eval", "verification.py"),
                           "--data-dir", data, "--model", f"{prefix},1", "--target", "tiny",
                           "--batch-size", "4", "--image-size", "8,8", "--nfolds", "2"],
                          capture_output=True, text=True, timeout=300, env=env)


def test_verification_cli_runs_on_the_cpu(verification_setup):
    """The control: the same command line works with CUDA_VISIBLE_DEVICES unset."""
    proc = _run_verification(verification_setup, None)
    assert proc.returncode == 0, proc.stderr
    assert "[tiny]" in proc.stdout and "Accuracy-Flip" in proc.stdout


@pytest.mark.parametrize("value, message", [
    ("abc", "verification.py: error: CUDA_VISIBLE_DEVICES=abc: 'abc' is not a GPU ordinal or GPU UUID; "
            "unset it or give GPU ordinals like 0,1"),
    pytest.param("0", "verification.py: error: CUDA_VISIBLE_DEVICES=0 asks for 1 GPU but this MXNet build has "
                      "no GPU support; install mxnet-cu112 from requirements-cu112.txt, or unset "
                      "CUDA_VISIBLE_DEVICES to run on the CPU",
                 marks=pytest.mark.skipif(not CPU_BUILD, reason="needs the CPU build of MXNet")),
])
def test_verification_cli_refuses_unusable_gpus(verification_setup, value, message):
    proc = _run_verification(verification_setup, value)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [message]
    assert "Accuracy-Flip" not in proc.stdout
