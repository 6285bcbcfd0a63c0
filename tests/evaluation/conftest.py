"""Fixtures: a tiny flip-sensitive network cut at fc1, bound or saved as an MXNet checkpoint."""
import os

import mxnet as mx
import pytest

from facekd.embedder import Embedder

from evalhelpers import SIZE, tiny_params, tiny_symbol


@pytest.fixture
def make_embedder():
    def make(batch_size=4, size=SIZE, contexts=1, seed=0):
        arg, aux = tiny_params(size, seed=seed)
        return Embedder(tiny_symbol(), arg, aux, [mx.cpu(i) for i in range(contexts)], batch_size, size)
    return make


@pytest.fixture
def checkpoint(tmp_path):
    """(prefix, epoch) of a saved tiny checkpoint taking SIZE images."""
    prefix = str(tmp_path / "models" / "tiny" / "model")
    os.makedirs(os.path.dirname(prefix))
    arg, aux = tiny_params()
    mx.model.save_checkpoint(prefix, 1, tiny_symbol(), arg, aux)
    return prefix, 1
