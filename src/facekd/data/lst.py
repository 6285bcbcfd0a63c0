"""Image lists (``.lst``): one tab-separated line per image, grouped by class.

    aligned \\t path \\t label-field [\\t bbox: 4 ints] [\\t landmarks: x1..x5 y1..y5]

The label field is a class id or, for soft labels, d+1 space-separated floats
(teacher embedding then class id, d >= 3). Paths are relative to the list's
folder unless absolute.
"""
import os
from dataclasses import dataclass
from typing import Optional, Tuple, Union

import numpy as np

from ..errors import FaceKDError
from ..atomic import atomic_path


@dataclass
class LstEntry:
    """One ``.lst`` line. ``landmarks`` is float64 (5, 2) of (x, y) rows, or None."""

    aligned: bool
    path: str
    label: Union[float, np.ndarray]
    bbox: Optional[Tuple[int, int, int, int]] = None
    landmarks: Optional[np.ndarray] = None
    lineno: int = 0

    @property
    def class_id(self):
        return int(self.label[-1]) if isinstance(self.label, np.ndarray) else int(self.label)


def _numbers(fields, where, what):
    try:
        return [float(v) for v in fields]
    except ValueError:
        raise FaceKDError(f"{where}: {what} must be numbers, got {' '.join(fields)!r}") from None


def parse_line(line, where="<lst>", lineno=0):
    """The :class:`LstEntry` of one line; ``where`` (file:line) names it in errors."""
    fields = line.rstrip("\r\n").split("\t")
    if len(fields) not in (3, 7, 13, 17):
        raise FaceKDError(f"{where}: expected 3, 7, 13 or 17 tab-separated fields "
                          "(aligned, path, label [, 4 bbox] [, 10 landmarks]), "
                          f"got {len(fields)}")
    if fields[0] not in ("0", "1"):
        raise FaceKDError(f"{where}: the aligned flag must be 0 or 1, got {fields[0]!r}")
    if not fields[1]:
        raise FaceKDError(f"{where}: empty image path")
    values = _numbers(fields[2].split(), where, "the label field")
    if len(values) in (0, 2, 3):
        raise FaceKDError(f"{where}: label field has {len(values)} values; expected one class id "
                          "or d+1 floats (teacher embedding then class id, d >= 3)")
    cls = values[-1]
    if not np.isfinite(values).all() or cls < 0 or cls != int(cls):
        raise FaceKDError(f"{where}: class id {cls} is not a non-negative integer")
    label = float(cls) if len(values) == 1 else np.array(values, dtype=np.float32)
    rest = fields[3:]
    bbox = landmarks = None
    if len(rest) in (4, 14):
        box = _numbers(rest[:4], where, "the bounding box")
        if any(v != int(v) for v in box):
            raise FaceKDError(f"{where}: the bounding box must be 4 integers, got {rest[:4]}")
        bbox = tuple(int(v) for v in box)
        rest = rest[4:]
    if rest:
        landmarks = np.array(_numbers(rest, where, "the landmarks")).reshape(2, 5).T.copy()
    return LstEntry(fields[0] == "1", fields[1], label, bbox, landmarks, lineno)


def _fmt(value):
    value = float(value)
    return str(int(value)) if value == int(value) else repr(value)


def _fmt32(value):
    """Shortest text that reads back as the same float32."""
    text = str(np.float32(value))
    return text[:-2] if text.endswith(".0") else text


def format_line(entry):
    """The ``.lst`` line (without newline) of an :class:`LstEntry`."""
    if isinstance(entry.label, np.ndarray):
        label = " ".join(_fmt32(v) for v in entry.label[:-1]) + " " + _fmt(entry.label[-1])
    else:
        label = _fmt(entry.label)
    fields = ["1" if entry.aligned else "0", entry.path, label]
    if entry.bbox is not None:
        fields += [str(int(v)) for v in entry.bbox]
    if entry.landmarks is not None:
        pts = np.asarray(entry.landmarks, dtype=np.float64).reshape(5, 2)
        fields += [_fmt(v) for v in np.concatenate([pts[:, 0], pts[:, 1]])]
    return "\t".join(fields)


def _text_line(raw, where, lineno):
    """One line of a list as text: UTF-8 (a BOM on line 1 is dropped), no NUL bytes."""
    nul = raw.find(b"\0")
    if nul >= 0:
        raise FaceKDError(f"{where}: contains a NUL byte at column {nul + 1}; "
                          "this is a binary file, not an image list (one tab-separated text line per image)")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise FaceKDError(f"{where}: byte 0x{raw[exc.start]:02x} at column {exc.start + 1} is not UTF-8 text; "
                          "the list must be a UTF-8 text file (one tab-separated line per image)") from None
    return text[1:] if lineno == 1 and text.startswith("\ufeff") else text


def read_lst(path):
    """All entries of a ``.lst`` file (blank lines skipped); errors name ``path:line``."""
    if not os.path.isfile(path):
        raise FaceKDError(f"{path}: list file not found")
    entries = []
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, start=1):
            line = _text_line(raw, f"{path}:{lineno}", lineno)
            if line.strip():
                entries.append(parse_line(line, f"{path}:{lineno}", lineno))
    if not entries:
        raise FaceKDError(f"{path}: the list is empty")
    return entries


def write_lst(path, entries):
    """Write entries to ``path`` atomically (temporary name, then rename)."""
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        for entry in entries:
            f.write(format_line(entry) + "\n")


def resolve(entry, lst_path):
    """Absolute image path of an entry (relative paths are relative to the list's folder)."""
    if os.path.isabs(entry.path):
        return entry.path
    return os.path.join(os.path.dirname(os.path.abspath(lst_path)), entry.path)
