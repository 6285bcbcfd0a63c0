"""The slim checkpoint: the graph cut at ``fc1_output`` and only the arrays that graph reads.

A training checkpoint keeps what training needs beside the network: the class centres
``fc7_weight`` (85,742 x 512 floats, 176 MB for MS1M, against 5 MB for a y1 network), and
for some heads more. The slim checkpoint is MXNet's own layout, ``model-symbol.json`` and
``model-0000.params``, loadable by ``mx.model.load_checkpoint`` and by any verification
script that cuts at ``fc1_output`` (the cut graph ends there already).
"""
import os
from dataclasses import dataclass

from ..atomic import atomic_path
from ..checkpoints import checkpoint_paths
from ..embedder import cut_at_embedding, flatten_fc_inputs
from ..errors import FaceKDError

SLIM_PREFIX = "model"
SLIM_EPOCH = 0
TRAINING_ONLY = ("fc7",)  # array-name prefixes that must never reach a slim checkpoint


@dataclass
class SlimModel:
    """The cut graph and the arrays it reads."""
    symbol: object
    arg_params: dict
    aux_params: dict

    @property
    def names(self):
        return sorted(self.arg_params) + sorted(self.aux_params)


def slim(symbol, arg_params, aux_params, name="model"):
    """The :class:`SlimModel` of a training checkpoint's graph and weights.

    The graph is cut at ``fc1_output``, with an explicit Flatten before a FullyConnected fed by a
    4-D map (numerically nothing; see :func:`facekd.embedder.flatten_fc_inputs`). Every array of
    the cut graph must be in the checkpoint; nothing else is kept.
    """
    cut = flatten_fc_inputs(cut_at_embedding(symbol, name))
    args = [n for n in cut.list_arguments() if n != "data"]
    auxs = cut.list_auxiliary_states()
    missing = [n for n in args if n not in arg_params] + [n for n in auxs if n not in aux_params]
    if missing:
        raise FaceKDError(f"{name}: {', '.join(missing[:5])} missing from the weights ({len(missing)} missing); "
                          "the params file does not belong to this graph")
    kept = SlimModel(cut, {n: arg_params[n] for n in args}, {n: aux_params[n] for n in auxs})
    leaked = [n for n in kept.names if n.startswith(TRAINING_ONLY)]
    if leaked:
        raise FaceKDError(f"{name}: the graph cut at fc1_output still reads {', '.join(leaked)}; the embedding "
                          "must not depend on the classification layer, check the checkpoint's graph")
    return kept


def write_slim(model, folder):
    """Write ``folder/model-symbol.json`` and ``folder/model-0000.params``; returns their paths."""
    import mxnet as mx

    sym_path, params_path = checkpoint_paths(os.path.join(folder, SLIM_PREFIX), SLIM_EPOCH)
    with atomic_path(sym_path) as tmp:
        model.symbol.save(tmp)
    arrays = {f"arg:{n}": v for n, v in model.arg_params.items()}
    arrays.update({f"aux:{n}": v for n, v in model.aux_params.items()})
    with atomic_path(params_path) as tmp:
        mx.nd.save(tmp, arrays)
    return sym_path, params_path


def checkpoint_bytes(prefix, epoch):
    """Bytes on disk of ``<prefix>-symbol.json`` + ``<prefix>-NNNN.params``."""
    return sum(os.path.getsize(p) for p in checkpoint_paths(prefix, epoch))
