"""A run's settings, computed once and fixed: the config tables and flags, then what the data decides.

``recognition/train.py`` merges the tables of ``config.py`` with the flags
(:func:`facekd.training.args.parse_args`); :func:`resolve` adds what only the
dataset and the run folder can tell (the class count and image size from
``property``, the teacher dimension from the soft labels or the scheduled teacher,
the step to resume from) and returns :class:`Settings`, which nothing can change
afterwards. Every builder (network, loss head, iterator, optimizer) reads it.
"""
import logging
from collections.abc import Mapping


class Settings(Mapping):
    """Read-only mapping with attribute access (``s.emb_size``, ``s.get("alpha")``)."""

    __slots__ = ("_values",)

    def __init__(self, values):
        object.__setattr__(self, "_values", dict(values))

    def __getattr__(self, name):
        try:
            return self._values[name]
        except KeyError:
            raise AttributeError(f"no setting {name!r}") from None

    def __setattr__(self, name, value):
        raise TypeError(f"settings are fixed once computed; {name!r} cannot be changed")

    def __getitem__(self, key):
        return self._values[key]

    def __iter__(self):
        return iter(self._values)

    def __len__(self):
        return len(self._values)

    def __repr__(self):
        return f"Settings({len(self._values)} keys)"


def resolve(cfg, dataset, teacher_dim, resume=None, native_unit_rows=False):
    """The run's :class:`Settings`.

    ``cfg``: the merged tables and flags; ``dataset``: the opened training set (its
    ``property`` is the truth for the class count and image size, a table's differing
    ``num_classes`` is reported); ``teacher_dim``: the teacher vectors' dimension (0 for
    class labels); ``resume``: the ``training.checkpoint.ResumePoint`` to continue, or None;
    ``native_unit_rows``: the heads normalise their class centres with the native operator
    (``facekd.native.unit_rows_available`` for the run's contexts).
    """
    declared = cfg.get("num_classes")
    if declared and declared != dataset.num_classes:
        logging.warning("dataset %s: property says %d classes, config table says %d; using %d",
                        cfg.get("dataset_path"), dataset.num_classes, declared, dataset.num_classes)
    meta = dict(resume.meta) if resume is not None else {}
    values = dict(cfg)
    values.update(num_classes=int(dataset.num_classes), image_shape=tuple(dataset.image_size) + (3,),
                  teacher_dim=int(teacher_dim), resume_meta=meta, begin_step=int(meta.get("step", 0)),
                  resume_params=resume.params_file if resume is not None else None,
                  resume_states=resume.states_file if resume is not None else None,
                  begin_epoch=int(meta.get("epoch", 0)), resume_position=meta.get("position"),
                  native_unit_rows=bool(native_unit_rows))
    return Settings(values)
