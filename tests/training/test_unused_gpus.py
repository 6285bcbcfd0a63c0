"""One warning when MXNet sees GPUs but CUDA_VISIBLE_DEVICES selects none (the run goes to the CPU)."""
import logging

import mxnet as mx
import pytest

from facekd.training import contexts

MESSAGE = "training on the CPU although MXNet sees 2 GPUs: set CUDA_VISIBLE_DEVICES='0,1' to use them"


@pytest.fixture
def fresh(monkeypatch, caplog):
    """No warning given yet in this process; warnings captured."""
    monkeypatch.setattr(contexts, "_unused_gpus_warned", False)
    caplog.set_level(logging.WARNING)
    return caplog


def _warnings(caplog):
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


@pytest.mark.parametrize("env", [{}, {"CUDA_VISIBLE_DEVICES": ""}, {"CUDA_VISIBLE_DEVICES": "-1"}])
def test_warned_once_when_gpus_go_unused(fresh, monkeypatch, env):
    monkeypatch.setattr(mx.context, "num_gpus", lambda: 2)
    assert contexts.get_contexts(2, env=env, work="training") == [mx.cpu(0), mx.cpu(1)]
    assert contexts.get_contexts(1, env=env, work="training") == [mx.cpu(0)]
    assert _warnings(fresh) == [MESSAGE]  # once, not per call


def test_one_gpu_and_other_work(fresh, monkeypatch):
    monkeypatch.setattr(mx.context, "num_gpus", lambda: 1)
    contexts.get_contexts(1, env={})
    assert _warnings(fresh) == ["running on the CPU although MXNet sees 1 GPU: set CUDA_VISIBLE_DEVICES='0' "
                                "to use them"]


def test_no_warning_without_gpus_or_when_counting_fails(fresh, monkeypatch):
    monkeypatch.setattr(mx.context, "num_gpus", lambda: 0)
    contexts.get_contexts(1, env={}, work="training")

    def broken():
        raise mx.base.MXNetError("CUDA: CUDA driver version is insufficient")

    monkeypatch.setattr(mx.context, "num_gpus", broken)
    contexts.get_contexts(1, env={}, work="training")
    assert _warnings(fresh) == []
    assert contexts._unused_gpus_warned is False  # a later call with GPUs present still warns


def test_the_trainer_warns(fresh, monkeypatch, tmp_path):
    """The trainer asks for its contexts as 'training' (stopped right after, at the dataset check)."""
    from facekd.errors import FaceKDError
    from facekd.training.trainer import main

    monkeypatch.setattr(mx.context, "num_gpus", lambda: 2)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    with pytest.raises(FaceKDError, match="does not exist"):
        main(["--network", "y1", "--loss", "arcface", "--dataset", "synthetic", "--data-dir",
              str(tmp_path / "missing"), "--models-root", str(tmp_path / "models")])
    assert _warnings(fresh) == [MESSAGE]
