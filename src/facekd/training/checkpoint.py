"""The run's checkpoints: saved atomically in MXNet's layout with a meta .json, found again for --resume."""
import glob
import hashlib
import json
import logging
import os
from dataclasses import dataclass
from typing import Optional

import mxnet as mx
import numpy as np

from ..atomic import atomic_path, clear_leftovers
from ..checkpoints import available_epochs, checkpoint_name, symbol_path
from ..errors import FaceKDError
from ..jsonfile import read_json_object


RESUME = "resume"  # <prefix>-resume.*: the run's latest state, written every round and on a stop
STATES_EXT = ".states"  # SGD momentum, as named NDArrays


def set_stem(prefix, number):
    """``<prefix>-NNNN`` of a numbered checkpoint, ``<prefix>-resume`` of the resume set."""
    return f"{prefix}-{RESUME}" if number == RESUME else checkpoint_name(prefix, number)


def _sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def check_finite_params(arg_params, aux_params, where):
    """Never write weights with NaN or infinity: name the first such parameter."""
    for kind, params in (("arg", arg_params), ("aux", aux_params)):
        for name, value in params.items():
            if not np.isfinite(value.asnumpy()).all():
                raise FaceKDError(f"refusing to write {where}: {kind} {name} holds NaN or infinity (the training "
                                  "diverged); the last good checkpoint is kept. Likely causes: --lr too high, or a "
                                  "margin too large for the scale; resume with a lower --lr (--resume --lr ...)")


def save_set(prefix, number, symbol, arg_params, aux_params, meta, states=None):
    """Write one consistent checkpoint set atomically: the graph, ``.params`` (and ``.states``),
    then the ``.json`` naming every file with its SHA-256.

    An older ``.json`` of the same set goes first, so that a crash at any byte leaves either the
    old complete set or an incomplete one, never new files with an old meta.
    """
    stem = set_stem(prefix, number)
    check_finite_params(arg_params, aux_params, stem + ".params")
    os.makedirs(os.path.dirname(os.path.abspath(prefix)), exist_ok=True)
    json_file = stem + ".json"
    if os.path.exists(json_file):
        os.remove(json_file)
    targets = {symbol_path(prefix): symbol.save,
               stem + ".params": lambda p: mx.nd.save(p, _param_dict(arg_params, aux_params))}
    if states is not None:
        targets[stem + STATES_EXT] = lambda p: mx.nd.save(p, {k: v.as_in_context(mx.cpu()) for k, v in states.items()})
    files = {}
    for final, write in targets.items():
        with atomic_path(final) as tmp:
            write(tmp)
            files[os.path.basename(final)] = _sha256(tmp)
    with atomic_path(json_file) as tmp:
        _write_json(tmp, dict(meta, files=files))
    return stem


def save_checkpoint(prefix, epoch, symbol, arg_params, aux_params, meta):
    """Write ``<prefix>-symbol.json``, ``<prefix>-NNNN.params`` and the meta ``.json`` atomically.

    ``symbol`` is the deployable graph cut at ``fc1_output``; ``arg_params`` keep
    ``fc7_weight`` so that the checkpoint can serve as a margin-distillation teacher.
    """
    stem = save_set(prefix, epoch, symbol, arg_params, aux_params, meta)
    logging.info("Saved checkpoint to \"%s.params\"", stem)


def _param_dict(arg_params, aux_params):
    out = {f"arg:{k}": v.as_in_context(mx.cpu()) for k, v in arg_params.items()}
    out.update({f"aux:{k}": v.as_in_context(mx.cpu()) for k, v in aux_params.items()})
    return out


def _write_json(path, obj):
    with open(path, "w") as f:
        json.dump(obj, f, indent=1)


SET_FILES = (".params", ".json")  # a number with either file belongs to a (maybe incomplete) set

# key -> (accepted types, test, what it must be, required)
_META_FIELDS = {
    "step": (int, lambda v: v >= 0, "an integer >= 0", True),
    "rounds": (int, lambda v: v >= 0, "an integer >= 0", True),
    "highest_last": ((int, float), lambda v: 0 <= v <= 1, "an accuracy in [0, 1]", True),
    "highest_sum": ((int, float), lambda v: v >= 0, "a sum of accuracies >= 0", True),
    "epoch": (int, lambda v: v >= 0, "an integer >= 0", False),
    "position": ((dict, type(None)), lambda v: True, "the data position (an object) or null", False),
    "files": (dict, lambda v: all(isinstance(x, str) for x in v.values()), "an object of file checksums", False),
}


def read_checkpoint_meta(prefix, number):
    """The training meta saved beside a checkpoint set's ``.params`` (global step, save counter,
    best accuracies, data position, file checksums), validated: a checkpoint may come from anywhere."""
    stem = set_stem(prefix, number)
    path = stem + ".json"
    fix = (f"it is written by train.py beside {os.path.basename(stem)}.params; restore it, or move the "
           f"{os.path.basename(stem)}.* files away to resume from an earlier checkpoint")
    if not os.path.isfile(path):
        raise FaceKDError(f"{path}: no training meta beside the checkpoint (file not found); {fix}")
    meta = read_json_object(path, "checkpoint meta", fix)
    for key, (types, ok, what, required) in _META_FIELDS.items():
        if key not in meta:
            if required:
                raise FaceKDError(f"{path}: {key!r} is missing; {fix}")
            continue
        value = meta[key]
        if isinstance(value, bool) or not isinstance(value, types) or not ok(value):
            raise FaceKDError(f"{path}: {key!r} is {value!r}, expected {what}; {fix}")
    return meta



def settled_params(module):
    """``module.get_params()`` once every queued operation has run.

    MXNet 1.9's oneDNN BatchNorm updates the moving mean and variance in its *backward*
    pass without declaring them as outputs of it, so the engine may copy them out before
    the last backward wrote them: identically seeded runs then saved different BatchNorm
    statistics (their weights were bit-identical). Waiting for the engine first makes
    the copies what the steps computed (docs/decisions.md).
    """
    mx.nd.waitall()
    return module.get_params()

@dataclass
class ResumePoint:
    """A complete checkpoint set to continue from."""
    stem: str  # <prefix>-NNNN or <prefix>-resume
    meta: dict
    states_file: Optional[str]  # the momentum, when the set has it

    @property
    def params_file(self):
        return self.stem + ".params"


def incomplete_reason(prefix, number):
    """Why set ``number`` of ``prefix`` is not a complete, intact checkpoint set (None when it is)."""
    stem = set_stem(prefix, number)
    needed = [symbol_path(prefix), stem + ".params", stem + ".json"]
    missing = [os.path.basename(p) for p in needed if not os.path.isfile(p)]
    if missing:
        return f"{' and '.join(missing)} missing (a save that was interrupted, or deleted files)"
    files = read_checkpoint_meta(prefix, number).get("files", {})
    folder = os.path.dirname(os.path.abspath(stem))
    for name, digest in files.items():
        path = os.path.join(folder, name)
        if not os.path.isfile(path):
            return f"{name} missing (a save that was interrupted, or deleted files)"
        if _sha256(path) != digest:
            return f"{name} does not match the checksum in {os.path.basename(stem)}.json (a damaged file)"
    return None


def resume_point(prefix, log=logging.info):
    """The :class:`ResumePoint` of the complete set with the most steps (the resume set first on a
    tie); incomplete or damaged sets are skipped with a log line saying why. None when there is none."""
    best = None
    for number in [RESUME] + list(reversed(available_epochs(prefix, SET_FILES))):
        stem = set_stem(prefix, number)
        if number == RESUME and not any(os.path.exists(stem + e) for e in (".params", ".json", STATES_EXT)):
            continue
        reason = incomplete_reason(prefix, number)
        if reason is not None:
            log("--resume: skipping %s: %s" % (stem, reason))
            continue
        meta = read_checkpoint_meta(prefix, number)
        if best is None or meta["step"] > best.meta["step"]:
            has_states = os.path.basename(stem + STATES_EXT) in meta.get("files", {})
            states = stem + STATES_EXT if has_states else None
            best = ResumePoint(stem, meta, states)
    return best


def clear_run_leftovers(prefix):
    """Remove temporary checkpoint files that a killed save left in the run folder (and say so)."""
    return clear_leftovers(glob.escape(prefix) + "-*")


def refuse_overwrite(prefix):
    """A new run must not overwrite the checkpoints of an earlier one (only --resume continues them)."""
    epochs = available_epochs(prefix, SET_FILES)
    names = [os.path.basename(checkpoint_name(prefix, e)) for e in epochs]
    if any(os.path.exists(set_stem(prefix, RESUME) + e) for e in SET_FILES):
        names.append(os.path.basename(set_stem(prefix, RESUME)))
    if names:
        more = f" and {len(names) - 3} more" if len(names) > 3 else ""
        names = ", ".join(names[:3])
        raise FaceKDError(f"{os.path.dirname(prefix)} already holds checkpoints of an earlier run ({names}{more}); "
                          "continue that run with --resume, or move them away (or give another "
                          "--models-root) to start a new one")
