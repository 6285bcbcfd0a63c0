"""The run's checkpoints: saved atomically in MXNet's layout with a meta .json, found again for --resume."""
import glob
import json
import logging
import os

import mxnet as mx

from ..errors import FaceKDError
from ..atomic import atomic_path, clear_leftovers
from ..checkpoints import available_epochs, checkpoint_name, checkpoint_paths, meta_path, params_path


def save_checkpoint(prefix, epoch, symbol, arg_params, aux_params, meta=None):
    """Write ``<prefix>-symbol.json`` and ``<prefix>-NNNN.params`` (and the meta .json) atomically.

    ``symbol`` is the deployable graph cut at ``fc1_output``; ``arg_params`` keep
    ``fc7_weight`` so that the checkpoint can serve as a margin-distillation teacher.
    """
    os.makedirs(os.path.dirname(os.path.abspath(prefix)), exist_ok=True)
    sym_file, params_file = checkpoint_paths(prefix, epoch)
    # The .json comes last and marks the set complete; an older one goes first, so that a crash
    # while the params are replaced leaves an incomplete set, never new params with an old step.
    if meta is not None and os.path.exists(meta_path(prefix, epoch)):
        os.remove(meta_path(prefix, epoch))
    targets = {sym_file: lambda p: symbol.save(p),
               params_file: lambda p: mx.nd.save(p, _param_dict(arg_params, aux_params))}
    if meta is not None:
        targets[meta_path(prefix, epoch)] = lambda p: _write_json(p, meta)
    for final, write in targets.items():
        with atomic_path(final) as tmp:
            write(tmp)
    logging.info("Saved checkpoint to \"%s\"", params_file)


def _param_dict(arg_params, aux_params):
    out = {f"arg:{k}": v.as_in_context(mx.cpu()) for k, v in arg_params.items()}
    out.update({f"aux:{k}": v.as_in_context(mx.cpu()) for k, v in aux_params.items()})
    return out


def _write_json(path, obj):
    with open(path, "w") as f:
        json.dump(obj, f, indent=1)


SET_FILES = (".params", ".json")  # a number with either file belongs to a (maybe incomplete) set

# key -> (accepted types, test, what it must be)
_META_FIELDS = {
    "step": (int, lambda v: v >= 0, "an integer >= 0"),
    "rounds": (int, lambda v: v >= 0, "an integer >= 0"),
    "highest_last": ((int, float), lambda v: 0 <= v <= 1, "an accuracy in [0, 1]"),
    "highest_sum": ((int, float), lambda v: v >= 0, "a sum of accuracies >= 0"),
}


def read_checkpoint_meta(prefix, epoch):
    """The training meta saved beside ``<prefix>-NNNN.params`` (global step, save counter, best
    accuracies), validated: a checkpoint folder may come from anywhere."""
    path = meta_path(prefix, epoch)
    fix = (f"it is written by train.py beside {os.path.basename(params_path(prefix, epoch))}; "
           f"restore it, or move the {os.path.basename(checkpoint_name(prefix, epoch))}.* files away to "
           "resume from an earlier checkpoint")
    if not os.path.isfile(path):
        raise FaceKDError(f"{path}: no training meta beside the checkpoint (file not found); {fix}")
    try:
        with open(path, "rb") as f:
            meta = json.loads(f.read().decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise FaceKDError(f"{path}: not a readable checkpoint meta ({exc}); {fix}") from None
    if not isinstance(meta, dict):
        raise FaceKDError(f"{path}: expected a JSON object of the run's state, got a {type(meta).__name__}; {fix}")
    for key, (types, ok, what) in _META_FIELDS.items():
        if key not in meta:
            raise FaceKDError(f"{path}: {key!r} is missing; {fix}")
        value = meta[key]
        if isinstance(value, bool) or not isinstance(value, types) or not ok(value):
            raise FaceKDError(f"{path}: {key!r} is {value!r}, expected {what}; {fix}")
    return meta


def incomplete_reason(prefix, epoch):
    """Why ``prefix,epoch`` is not a complete checkpoint set (None when it is one).

    A save writes the graph, the params and then the .json, each under a temporary name
    renamed into place: a set whose .json is present is complete.
    """
    sym_file, params_file = checkpoint_paths(prefix, epoch)
    missing = [os.path.basename(p) for p in (sym_file, params_file, meta_path(prefix, epoch))
               if not os.path.isfile(p)]
    if missing:
        return f"{' and '.join(missing)} missing (a save that was interrupted, or deleted files)"
    return None


def resume_point(prefix, log=logging.info):
    """(epoch, meta) of the newest complete checkpoint set of ``prefix``; incomplete ones are
    skipped with a log line saying why. None when there is no complete set."""
    for epoch in reversed(available_epochs(prefix, SET_FILES)):
        reason = incomplete_reason(prefix, epoch)
        if reason is None:
            return epoch, read_checkpoint_meta(prefix, epoch)
        log("--resume: skipping %s: %s" % (checkpoint_name(prefix, epoch), reason))
    return None


def clear_run_leftovers(prefix):
    """Remove temporary checkpoint files that a killed save left in the run folder (and say so)."""
    return clear_leftovers(glob.escape(prefix) + "-*")


def refuse_overwrite(prefix):
    """A new run must not overwrite the checkpoints of an earlier one (only --resume continues them)."""
    epochs = available_epochs(prefix, SET_FILES)
    if epochs:
        names = ", ".join(os.path.basename(checkpoint_name(prefix, e)) for e in epochs[:3])
        more = f" and {len(epochs) - 3} more" if len(epochs) > 3 else ""
        raise FaceKDError(f"{os.path.dirname(prefix)} already holds checkpoints of an earlier run ({names}{more}); "
                          "continue that run with --resume, or move them away (or give another "
                          "--models-root) to start a new one")
