"""MXNet checkpoints as insightface writes them: ``<prefix>-symbol.json`` and
``<prefix>-NNNN.params``; the ``prefix,epoch`` arguments that name them; loading with clear errors.

The one place that knows the file names of a checkpoint. Files from elsewhere are
untrusted: they are read with MXNet's own loaders and checked, never executed.
"""
import glob
import os

from .errors import FaceKDError, mxnet_cause


def parse_model_arg(text, flag="--model"):
    """``"prefix,epoch"`` -> ``(prefix, epoch)``."""
    models = parse_model_list(text, flag)
    if len(models) != 1:
        raise FaceKDError(f"{flag} {text!r}: expected one epoch as 'prefix,epoch', got {len(models)}")
    return models[0]


def parse_model_list(text, flag="--model"):
    """``"prefix,1|2|3"`` -> ``[(prefix, 1), (prefix, 2), (prefix, 3)]`` (insightface habit)."""
    prefix, sep, epochs = str(text).rpartition(",")
    if not sep or not prefix:
        raise FaceKDError(f"{flag} {text!r}: expected 'prefix,epoch' (e.g. ./models/y1-arcface-emore/model,1)")
    out = []
    for part in epochs.split("|"):
        try:
            epoch = int(part)
        except ValueError:
            raise FaceKDError(f"{flag} {text!r}: epoch {part!r} is not an integer "
                              f"(expected 'prefix,epoch' or 'prefix,1|2|3')") from None
        if epoch < 0:
            raise FaceKDError(f"{flag} {text!r}: epoch must be >= 0, got {epoch}")
        out.append((prefix, epoch))
    return out


def checkpoint_name(prefix, epoch):
    """``<prefix>-NNNN``: how files and logs name checkpoint ``epoch`` of ``prefix``."""
    return "%s-%04d" % (prefix, epoch)


def symbol_path(prefix):
    return f"{prefix}-symbol.json"


def params_path(prefix, epoch):
    return checkpoint_name(prefix, epoch) + ".params"


def meta_path(prefix, epoch):
    """The training meta this project writes beside the params (step, save counter, accuracies)."""
    return checkpoint_name(prefix, epoch) + ".json"


def checkpoint_paths(prefix, epoch):
    """(``<prefix>-symbol.json``, ``<prefix>-NNNN.params``): what MXNet's load_checkpoint reads."""
    return symbol_path(prefix), params_path(prefix, epoch)


def available_epochs(prefix, suffixes=(".params",)):
    """Numbers N with a ``<prefix>-NNNN<suffix>`` file for one of ``suffixes``, sorted."""
    epochs = set()
    for suffix in suffixes:
        for path in glob.glob(glob.escape(prefix) + "-*" + suffix):
            tail = path[len(prefix) + 1:-len(suffix)]
            if tail.isdigit():
                epochs.add(int(tail))
    return sorted(epochs)


def load_symbol(prefix):
    """The graph ``<prefix>-symbol.json`` of a checkpoint, with clear errors."""
    import mxnet as mx

    sym_path = symbol_path(prefix)
    if not os.path.isfile(sym_path):
        raise FaceKDError(f"checkpoint symbol {sym_path} not found; check the model prefix "
                          f"(expected <prefix>-symbol.json beside <prefix>-NNNN.params)")
    try:
        return mx.sym.load(sym_path)
    except mx.base.MXNetError as exc:
        raise FaceKDError(f"{sym_path}: not a readable MXNet symbol file ({mxnet_cause(exc)})") from None


def load_checkpoint(prefix, epoch):
    """``(symbol, arg_params, aux_params)`` of an MXNet checkpoint, with clear errors."""
    params_file = params_path(prefix, epoch)
    if os.path.isfile(symbol_path(prefix)) and not os.path.isfile(params_file):
        have = available_epochs(prefix)
        hint = f"available epochs: {', '.join(map(str, have))}" if have else "no params files with this prefix"
        raise FaceKDError(f"checkpoint params {params_file} not found ({hint}); check the epoch")
    symbol = load_symbol(prefix)
    arg_params, aux_params = load_params(params_file)
    return symbol, arg_params, aux_params


def load_arrays(path, what="params"):
    """The dict of named NDArrays in an MXNet ``mx.nd.save`` file, with clear errors."""
    import mxnet as mx

    if not os.path.isfile(path):
        raise FaceKDError(f"{path}: file not found")
    try:
        saved = mx.nd.load(path)
    except mx.base.MXNetError as exc:
        raise FaceKDError(f"{path}: not a readable MXNet {what} file ({mxnet_cause(exc)})") from None
    if saved == []:  # what mx.nd.save writes for an empty dict
        return {}
    if not isinstance(saved, dict):
        raise FaceKDError(f"{path}: expected a dict of named arrays, got a list")
    return saved


def load_params(params_file):
    """(arg_params, aux_params) of a ``.params`` file (keys ``arg:NAME`` / ``aux:NAME``)."""
    saved = load_arrays(params_file)
    arg_params, aux_params = {}, {}
    for key, value in saved.items():
        kind, _, name = key.partition(":")
        if kind == "arg":
            arg_params[name] = value
        elif kind == "aux":
            aux_params[name] = value
        else:
            raise FaceKDError(f"{params_file}: key {key!r} is neither 'arg:NAME' nor 'aux:NAME'")
    return arg_params, aux_params
