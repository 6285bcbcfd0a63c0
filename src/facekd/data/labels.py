"""The one place that knows what a label row means.

Label layouts are told apart by their width w (docs/formats.md):

* w == 1 (scalar): the class id;
* w == 2: ``[class, aligned]`` as written by insightface's face2rec2; class = label[0];
* w >= 4 (d + 1 with d >= 3): a soft label, the teacher's raw embedding of d
  floats followed by the class id; class = label[-1].

Every reader, iterator, metric and loss head goes through these functions,
in NumPy (:func:`describe`, :func:`class_id`, :func:`with_class_ids`, :func:`split_soft`) or in the
symbolic graph (:func:`split_soft_symbol`).
"""
from collections import namedtuple

import numpy as np

from ..errors import FaceKDError

HARD, ALIGNED, SOFT = "hard", "aligned", "soft"

LabelLayout = namedtuple("LabelLayout", "kind width teacher_dim")


def describe(label):
    """Layout of one label (a number or a 1-D array): kind, width and teacher dimension."""
    arr = np.asarray(label, dtype=np.float32).reshape(-1)
    w = arr.size
    if w == 1:
        return LabelLayout(HARD, 1, 0)
    if w == 2:
        return LabelLayout(ALIGNED, 2, 0)
    if w >= 4:
        return LabelLayout(SOFT, w, w - 1)
    raise FaceKDError(f"label of width {w} has no meaning (expected 1, 2 or d+1 with d >= 3)")


def first_bad_label(rows, layout, num_classes):
    """(position, reason) of the first label row that does not fit ``layout`` and the class
    count, or None: every row of the width, finite, its class id an integer in 0..num_classes-1."""
    for i, row in enumerate(rows):
        if np.size(row) != layout.width:
            return i, f"label of width {np.size(row)}, the dataset's labels have width {layout.width}"
    arr = np.asarray(rows, dtype=np.float32).reshape(len(rows), layout.width)
    finite = np.isfinite(arr).all(axis=1)
    cls = arr[:, -1] if layout.kind == SOFT else arr[:, 0]
    integral = (cls == np.round(cls)) & (cls >= 0) & (cls < num_classes)
    bad = np.flatnonzero(~(finite & integral))
    if bad.size == 0:
        return None
    i = int(bad[0])
    if not finite[i]:
        what = "the teacher vector" if layout.kind == SOFT and np.isfinite(cls[i]) else "the label"
        return i, f"{what} contains NaN or infinity"
    return i, f"class id {cls[i]:g} is not an integer in 0..{num_classes - 1}"


def class_id(label):
    """Class id of one label (scalar, [class, aligned] or soft)."""
    arr = np.asarray(label, dtype=np.float32).reshape(-1)
    kind = describe(arr).kind
    return int(arr[-1] if kind == SOFT else arr[0])


def class_ids(labels):
    """Class ids of a batch of labels, shape (B,) or (B, w), as int64."""
    arr = np.asarray(labels)
    if arr.ndim == 1:
        return arr.astype(np.int64)
    kind = describe(arr[0]).kind if len(arr) else HARD
    col = arr[:, -1] if kind == SOFT else arr[:, 0]
    return col.astype(np.int64)


def with_class_ids(labels, ids):
    """A float32 copy of a batch of labels ((B,) or (B, w)) with their class ids replaced by ``ids``."""
    arr = np.array(labels, dtype=np.float32)
    if arr.ndim == 1:
        arr[:] = ids
    else:
        arr[:, -1 if describe(arr[0]).kind == SOFT else 0] = ids
    return arr


def split_soft(labels):
    """(teacher vectors (B, d), class ids (B,)) of a batch of soft labels."""
    arr = np.asarray(labels, dtype=np.float32)
    if arr.ndim != 2 or describe(arr[0]).kind != SOFT:
        raise FaceKDError(f"expected soft labels of shape (B, d+1), got {arr.shape}")
    return arr[:, :-1], arr[:, -1].astype(np.int64)


def make_soft(teacher, cls):
    """Soft label rows from teacher vectors (B, d) and class ids (B,): float32 (B, d+1)."""
    teacher = np.asarray(teacher, dtype=np.float32)
    cls = np.asarray(cls, dtype=np.float32).reshape(-1, 1)
    return np.concatenate([teacher, cls], axis=1)


def split_soft_symbol(label, teacher_dim):
    """Symbolic split of a (B, d+1) soft label into (teacher (B, d), class id (B,))."""
    import mxnet as mx

    teacher = mx.sym.slice_axis(label, axis=1, begin=0, end=teacher_dim)
    cls = mx.sym.reshape(mx.sym.slice_axis(label, axis=1, begin=teacher_dim, end=teacher_dim + 1), shape=(-1,))
    return teacher, cls
