"""The search's resumable state, written at the end of every epoch into ``--out``.

``search-symbol.json`` (the supernet), ``search-resume.params`` (weights, architecture
weights, BatchNorm statistics), ``search-resume.states`` (SGD momentum, Adam means and
variances, as named arrays) and ``search-resume.json`` (epochs done, step, Adam's step
count, the iterators' positions, the settings that must not change, and the SHA-256 of
each file), written atomically in that order by the trainer's checkpoint writer
(``training.checkpoint.save_set``): a crash at any byte leaves the previous complete set
or no usable set, never a mixed one.
"""
import os

from ..checkpoints import load_arrays, load_params, symbol_path
from ..errors import FaceKDError
from ..jsonfile import read_json_object
from ..training.checkpoint import RESUME, STATES_EXT, _sha256, save_set, set_stem

NAME = "search"
# settings a resumed search must share with the saved one: key -> the flag that sets it
FIXED = {"layers": "--layers", "init_channels": "--init-channels", "nodes": "--nodes",
         "stem_multiplier": "--stem-multiplier", "image_size": "--image-size", "emb_size": "--emb-size",
         "loss": "--loss", "batch_size": "--batch-size", "seed": "--seed", "num_classes": "--data-dir",
         "num_images": "--data-dir"}
_FIELDS = {"epoch": int, "step": int, "adam_steps": int, "settings": dict, "positions": dict, "files": dict}


def prefix(out):
    return os.path.join(out, NAME)


def resume_stem(out):
    return set_stem(prefix(out), RESUME)


def has_state(out):
    """Whether ``out`` holds (part of) a search's resume set."""
    stem = resume_stem(out)
    return any(os.path.exists(stem + ext) for ext in (".json", ".params", STATES_EXT))


def save(out, supernet, weight_opt, arch_opt, meta):
    """Write the resume set of the search after ``meta['epoch']`` epochs."""
    args, aux = supernet.get_params()
    states = dict(weight_opt.state_arrays(), **arch_opt.state_arrays())
    return save_set(prefix(out), RESUME, supernet.symbol, args, aux, dict(meta, adam_steps=arch_opt.steps), states)


def read_meta(out, settings):
    """The meta of the resume set in ``out``: every file checked against its checksum, the settings
    that must not change against this run's ``settings``."""
    stem = resume_stem(out)
    path = stem + ".json"
    fix = f"start a new search with another --out (or without --resume after moving {out} away)"
    if not os.path.isfile(path):
        raise FaceKDError(f"--resume: {path} not found: {out} holds no complete search state; {fix}")
    meta = read_json_object(path, "search state", fix, where=f"--resume: {path}")
    for key, kind in _FIELDS.items():
        value = meta.get(key)
        if isinstance(value, bool) or not isinstance(value, kind) or (kind is int and value < 0):
            what = "an integer >= 0" if kind is int else "an object"
            raise FaceKDError(f"--resume: {path}: {key!r} is {value!r}, expected {what}; {fix}")
    folder = os.path.dirname(os.path.abspath(stem))
    needed = {os.path.basename(p) for p in (stem + ".params", stem + STATES_EXT, symbol_path(prefix(out)))}
    missing = sorted(needed - set(meta["files"]))
    if missing:
        raise FaceKDError(f"--resume: {path} does not name {', '.join(missing)}; {fix}")
    for name, digest in meta["files"].items():
        file = os.path.join(folder, os.path.basename(str(name)))
        if not os.path.isfile(file):
            raise FaceKDError(f"--resume: {file} is missing (an interrupted save, or deleted files); {fix}")
        if _sha256(file) != digest:
            raise FaceKDError(f"--resume: {file} does not match its checksum in {os.path.basename(path)} "
                              f"(a damaged file); {fix}")
    saved = meta["settings"]
    for key, flag in FIXED.items():
        if key in saved and _plain(saved[key]) != _plain(settings[key]):
            raise FaceKDError(f"--resume: {flag} gives {key} {_plain(settings[key])!r}, but the search in {out} "
                              f"was run with {_plain(saved[key])!r}; resume with the same {flag}, or {fix}")
    return meta


def load(out, settings):
    """(meta, arg_params, aux_params, states) of the resume set in ``out`` (checked by :func:`read_meta`)."""
    meta = read_meta(out, settings)
    stem = resume_stem(out)
    args, aux = load_params(stem + ".params")
    return meta, args, aux, load_arrays(stem + STATES_EXT, "optimizer state")


def _plain(value):
    return list(value) if isinstance(value, tuple) else value
