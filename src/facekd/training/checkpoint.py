"""Checkpoints in MXNet's own layout, written atomically; teacher class centres."""
import json
import logging
import os

import mxnet as mx
import numpy as np

from ..errors import FaceKDError
from ..teacher import load_checkpoint, parse_model_arg
from ..atomic import atomic_path


def save_checkpoint(prefix, epoch, symbol, arg_params, aux_params, meta=None):
    """Write ``<prefix>-symbol.json`` and ``<prefix>-%04d.params`` (and a meta json) atomically.

    ``symbol`` is the deployable graph cut at ``fc1_output``; ``arg_params`` keep
    ``fc7_weight`` so that the checkpoint can serve as a margin-distillation teacher.
    """
    os.makedirs(os.path.dirname(os.path.abspath(prefix)), exist_ok=True)
    targets = {f"{prefix}-symbol.json": lambda p: symbol.save(p),
               "%s-%04d.params" % (prefix, epoch): lambda p: mx.nd.save(p, _param_dict(arg_params, aux_params))}
    if meta is not None:
        targets["%s-%04d.json" % (prefix, epoch)] = lambda p: _write_json(p, meta)
    for final, write in targets.items():
        with atomic_path(final) as tmp:
            write(tmp)
    logging.info("Saved checkpoint to \"%s-%04d.params\"", prefix, epoch)


def _param_dict(arg_params, aux_params):
    out = {f"arg:{k}": v.as_in_context(mx.cpu()) for k, v in arg_params.items()}
    out.update({f"aux:{k}": v.as_in_context(mx.cpu()) for k, v in aux_params.items()})
    return out


def _write_json(path, obj):
    with open(path, "w") as f:
        json.dump(obj, f, indent=1)


def read_meta(prefix, epoch):
    """The training meta (global step, highest accuracy) saved beside a checkpoint, or {}."""
    path = "%s-%04d.json" % (prefix, epoch)
    if not os.path.isfile(path):
        return {}
    with open(path) as f:
        return json.load(f)


def latest_epoch(prefix):
    """Largest N with ``<prefix>-N.params`` present, or None."""
    folder, base = os.path.split(os.path.abspath(prefix))
    if not os.path.isdir(folder):
        return None
    epochs = []
    for name in os.listdir(folder):
        if name.startswith(base + "-") and name.endswith(".params"):
            try:
                epochs.append(int(name[len(base) + 1:-len(".params")]))
            except ValueError:
                continue
    return max(epochs) if epochs else None


def load_teacher_centres(teacher_arg, num_classes, emb_size):
    """Row-normalised ``fc7_weight`` of the teacher checkpoint ``prefix,epoch``, checked.

    Raises FaceKDError when the checkpoint is missing, has no ``fc7_weight`` (an
    embedding-only cut), or its shape is not (num_classes, emb_size) of this run.
    """
    if not teacher_arg:
        raise FaceKDError("this loss needs the teacher's class centres: give --teacher prefix,epoch "
                          "(a checkpoint trained with a margin loss on the same classes)")
    prefix, epoch = parse_model_arg(teacher_arg)
    _, arg_params, _ = load_checkpoint(prefix, epoch)
    params_file = "%s-%04d.params" % (prefix, epoch)
    if "fc7_weight" not in arg_params:
        raise FaceKDError(f"teacher {params_file} has no fc7_weight (an embedding-only cut?); "
                          "give a training checkpoint that keeps the class centres")
    weight = arg_params["fc7_weight"].asnumpy().astype(np.float64)
    if weight.shape != (num_classes, emb_size):
        raise FaceKDError(f"teacher {params_file}: fc7_weight has shape {weight.shape}, this run needs "
                          f"({num_classes}, {emb_size}) (dataset classes, student --emb-size)")
    norms = np.linalg.norm(weight, axis=1, keepdims=True)
    return (weight / np.maximum(norms, 1e-12)).astype(np.float32)
