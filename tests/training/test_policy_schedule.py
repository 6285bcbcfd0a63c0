"""Checkpoint policy (--ckpt 0..3), lr schedule, contexts: hand-computed cases."""
import logging

import mxnet as mx
import pytest

from facekd.errors import FaceKDError
from facekd.training.callbacks import CheckpointPolicy
from facekd.training.contexts import get_contexts, visible_gpus
from facekd.training.schedule import StepScheduler, parse_lr_steps


ROUNDS = [[0.80, 0.70], [0.90, 0.60], [0.70, 0.70], [0.50, 0.75]]
# last-target accuracies: 0.70 (highest), 0.60 (no), 0.70 (tie; sum 1.40 >= 1.50? no), 0.75 (highest)


@pytest.mark.parametrize("ckpt,expected", [
    (0, [None, None, None, None]),
    (1, [1, None, None, 4]),
    (2, [1, 2, 3, 4]),
    (3, [1, None, None, 1]),
])
def test_checkpoint_policy_numbers(ckpt, expected):
    policy = CheckpointPolicy(ckpt)
    assert [policy.judge(r)[1] for r in ROUNDS] == expected


def test_tie_on_last_target_broken_by_sum():
    policy = CheckpointPolicy(1)
    assert policy.judge([0.5, 0.7]) == (True, 1)
    assert policy.judge([0.6, 0.7]) == (True, 2)   # same last, larger sum
    assert policy.judge([0.4, 0.7]) == (False, None)


def test_no_targets_every_round_is_highest():
    policy = CheckpointPolicy(3)
    assert policy.judge([]) == (True, 1)
    assert policy.judge([]) == (True, 1)


def test_bad_ckpt_value():
    with pytest.raises(FaceKDError, match="--ckpt"):
        CheckpointPolicy(4)


def test_step_schedule_hand_computed(caplog):
    sched = StepScheduler(0.1, [3, 5])
    with caplog.at_level(logging.INFO):
        lrs = [sched(n) for n in range(1, 8)]
    assert lrs == pytest.approx([0.1, 0.1, 0.1, 0.01, 0.01, 0.001, 0.001])
    assert [r.getMessage() for r in caplog.records] == ["lr change to 0.01", "lr change to 0.001"]


@pytest.mark.parametrize("text", ["10,5", "a,b", "0,4", "4,4"])
def test_bad_lr_steps(text):
    with pytest.raises(FaceKDError, match="--lr-steps"):
        parse_lr_steps(text)


def test_contexts_from_environment():
    assert visible_gpus({}) == []
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": ""}) == []
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": "2,3"}) == [0, 1]
    assert get_contexts(2, env={}) == [mx.cpu(0), mx.cpu(1)]
    with pytest.raises(FaceKDError, match="--cpu-contexts"):
        get_contexts(0, env={})


def test_schedule_positioned_when_resuming(caplog):
    sched = StepScheduler(0.1, [3, 5], begin_step=4)
    with caplog.at_level(logging.INFO):
        assert sched(5) == pytest.approx(0.01)
        assert sched(6) == pytest.approx(0.001)
    assert [r.getMessage() for r in caplog.records] == ["lr change to 0.001"]
