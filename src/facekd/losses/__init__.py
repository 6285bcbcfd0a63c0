"""Loss heads, one registry: ``build_head(embedding, label, cfg)``.

A loss is registered with :func:`register_loss` and described by a :class:`LossSpec`:

* ``build(embedding, label, cfg) -> list of symbols``: the outputs after the
  embedding. ``label`` is the variable ``softmax_label``: shape (B,) for hard
  labels, (B, d+1) for soft labels (split with ``facekd.data.labels.split_soft_symbol``).
* ``label``: ``"hard"`` (class ids) or ``"soft"`` (teacher vector then class id).
* ``teacher_centres``: name of a variable that receives the teacher's row-normalised
  ``fc7_weight`` (frozen), or None. The trainer loads, checks and normalises it once.
* ``needs_teacher_dim``: the soft labels' teacher dimension must equal ``emb_size``.
* ``iterator``: ``"face"`` (shuffled images) or ``"triplet"`` (A|P|N bags).
* ``online_teacher``: the teacher vectors may instead come from a teacher run on each
  batch (``--teacher-schedule``, PocketNet's multi-step KD); then class labels suffice.
* ``samples_centres``: the head can run on a sampled subset of the class centres
  (Partial FC, ``--sample-ratio``; :mod:`facekd.losses.partial_fc`).
* the head's monitors (``acc``, ``lossvalue``, ``cos``) are outputs named ``monitor_<name>``;
  :func:`head_metrics` makes the metrics of a training symbol from them.

:func:`build_head` returns ``mx.sym.Group([BlockGrad(embedding)] + outputs)``.
"""
from dataclasses import dataclass
from typing import Callable, Optional

from ..errors import FaceKDError
from ..registry import Registry
from .metrics import head_metrics, objective_index  # noqa: F401 (read a built head's outputs)

LOSSES = Registry("loss", "--loss")


@dataclass(frozen=True)
class LossSpec:
    name: str
    build: Callable
    label: str = "hard"
    teacher_centres: Optional[str] = None
    needs_teacher_dim: bool = False
    iterator: str = "face"
    online_teacher: bool = False
    samples_centres: bool = False


def register_loss(name, label="hard", teacher_centres=None, needs_teacher_dim=False,
                  iterator="face", online_teacher=False, samples_centres=False):
    """Decorator: register ``build(embedding, label, cfg) -> [outputs]`` as loss ``name``."""
    def wrap(fn):
        LOSSES.register(name, LossSpec(name, fn, label, teacher_centres,
                                       needs_teacher_dim, iterator, online_teacher, samples_centres))
        return fn
    return wrap


def check_sampling(spec, cfg):
    """A sampling ratio below 1 needs a head whose logits run over class centres."""
    from . import partial_fc

    if partial_fc.is_sampled(cfg) and not spec.samples_centres:
        able = ", ".join(n for n in LOSSES.names() if LOSSES.get(n).samples_centres)
        raise FaceKDError(f"{partial_fc.FLAG} {partial_fc.ratio(cfg):g} samples class centres, but --loss {spec.name} "
                          f"has no margin-softmax class-centre matrix to sample; drop {partial_fc.FLAG} "
                          f"(or give 1), or use one of: {able}")


def get_loss(name):
    return LOSSES.get(name)


def build_head(embedding, label, cfg):
    """``mx.sym.Group`` of [BlockGrad(embedding), loss outputs...] for ``cfg.loss``."""
    import mxnet as mx

    spec = get_loss(cfg.loss)
    check_sampling(spec, cfg)
    outputs = spec.build(embedding, label, cfg)
    return mx.sym.Group([mx.sym.BlockGrad(embedding)] + list(outputs))


# Importing the modules fills the registry.
from . import (margin, angular_distillation, triplet_distillation, margin_base_with_t,  # noqa: E402,F401
               margin_distillation, template_kd)
