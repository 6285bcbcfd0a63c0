"""Fixtures of the data-preparation tests: saved tiny teacher checkpoints."""
import mxnet as mx
import pytest

from prepare_helpers import tiny_params, tiny_symbol


@pytest.fixture(scope="session")
def teacher(tmp_path_factory):
    """(model argument 'prefix,1', arg_params, aux_params) of a saved tiny teacher."""
    prefix = str(tmp_path_factory.mktemp("teacher") / "model")
    args, aux = tiny_params()
    mx.model.save_checkpoint(prefix, 1, tiny_symbol(), args, aux)
    return f"{prefix},1", args, aux


@pytest.fixture(scope="session")
def headless_teacher(tmp_path_factory):
    """A checkpoint whose embedding BatchNorm is named 'embedding', so it has no fc1_output."""
    prefix = str(tmp_path_factory.mktemp("headless") / "model")
    args, aux = tiny_params(output="embedding")
    mx.model.save_checkpoint(prefix, 1, tiny_symbol("embedding"), args, aux)
    return f"{prefix},1"
