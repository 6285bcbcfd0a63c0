"""Verification-pair files ``<target>.bin``: a pickle of ``(bins, issame_list)``.

``bins`` holds 2P encoded images, ``issame_list`` P booleans; pair i is
``bins[2i]``, ``bins[2i+1]``. Files pickled under Python 2 are read with
``encoding='bytes'`` (a Python-2 ``str`` becomes ``bytes``).

A pickle can name any importable callable (``os.system``...) and have it run while
loading, so :func:`load_bin` never uses ``pickle.loads``: :class:`_BinUnpickler`
resolves only the few globals that pickles of image bytes and booleans contain
(Python 2 or 3, protocols 0 to 5, plain objects or numpy arrays) and wraps each in a
check of its arguments; any other global is refused before it is imported or called.
"""
import io
import math
import os
import pickle
import pickletools

import numpy as np

from ..errors import FaceKDError
from ..atomic import atomic_path

_WHAT = "a verification set holds only image bytes and booleans"
_FIX = "replace it with the .bin of a trusted dataset download"
_DAMAGED = "copy or download the file again"
# dtypes of image buffers (uint8) and of issame arrays (bool, or integer 0/1)
_DTYPES = {"u1", "b1", "i1", "i2", "i4", "i8", "u2", "u4", "u8"}


class _Refused(Exception):
    """A global, or arguments of an allowed one, that a verification set never holds."""


def _ascii(value):
    return value.decode("ascii", "replace") if isinstance(value, (bytes, bytearray)) else value


def _clip(text, limit=120):
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[:limit] + "..."


def _short(value, limit=60):
    return _clip(repr(value), limit)


# -- the allowed globals, each checking its arguments before doing the real work -------

def _bytes(*args):
    """``bytes()`` (protocols 0-2 pickle ``b''`` so) or ``bytes(b)``; never ``bytes(n)``."""
    if not args:
        return b""
    if len(args) == 1 and isinstance(args[0], (bytes, bytearray)):
        return bytes(args[0])
    raise _Refused(f"bytes{_short(args)}")


def _bytearray(*args):
    """``bytearray()``, ``bytearray(b)``, or ``bytearray(text, 'latin-1')`` (Python 2)."""
    if not args:
        return bytearray()
    if len(args) == 1 and isinstance(args[0], (bytes, bytearray)):
        return bytearray(args[0])
    if len(args) == 2 and isinstance(args[0], str) and _ascii(args[1]) in ("latin1", "latin-1"):
        return bytearray(args[0], "latin-1")
    raise _Refused(f"bytearray{_short(args)}")


def _encode(*args):
    """``_codecs.encode(text, 'latin1')``: how protocols 0-2 pickle ``bytes``. Other codecs
    (zlib, bz2, ...) would let a small file expand into any size: refused."""
    if len(args) == 2 and isinstance(args[0], str) and _ascii(args[1]) in ("latin1", "latin-1"):
        return args[0].encode("latin-1")
    raise _Refused(f"_codecs.encode{_short(args)}")


def _dtype(*args):
    """``numpy.dtype(code, align, copy)`` for the integer and bool codes only. Always a copy:
    the BUILD that follows must not alter numpy's shared uint8/bool descriptors."""
    code = _ascii(args[0]) if args and isinstance(args[0], (str, bytes)) else None
    if not args or len(args) > 3 or code not in _DTYPES:
        raise _Refused(f"numpy.dtype{_short(args)}")
    return np.dtype(code, bool(args[1]) if len(args) > 1 else False, True)


class _NdarrayType:
    """Stands in for ``numpy.ndarray``: only an argument of ``_reconstruct``, never called."""
    __slots__ = ()

    def __call__(self, *args, **kwargs):
        raise _Refused(f"numpy.ndarray{_short(args)}")

    def __repr__(self):
        return "numpy.ndarray"


class _Checked:
    """A fresh callable per reference to an allowed global: a BUILD opcode aimed at it can
    only touch this one object (no ``__dict__``), never the module's functions."""
    __slots__ = ("_func",)

    def __init__(self, func):
        self._func = func

    def __call__(self, *args, **kwargs):
        if kwargs:
            raise _Refused(f"keyword arguments {_short(kwargs)}")
        return self._func(*args)


def _checked_dtype(dtype, what):
    if not isinstance(dtype, np.dtype) or dtype.fields is not None or dtype.subdtype is not None \
            or dtype.kind not in "bui":
        raise _Refused(f"{what} of dtype {_short(dtype)}")
    return dtype


def _reconstruct(*args):
    """``_reconstruct(ndarray, (0,), b'b')``: the empty array numpy fills by BUILD (whose size
    check ties the array to the bytes actually in the file)."""
    if len(args) != 3 or not isinstance(args[0], _NdarrayType) or not isinstance(args[1], tuple) \
            or args[1] != (0,) or _ascii(args[2]) != "b":
        raise _Refused(f"numpy.core.multiarray._reconstruct{_short(args)}")
    from numpy.core.multiarray import _reconstruct as real

    return real(np.ndarray, (0,), b"b")


def _frombuffer(*args):
    """``_frombuffer(buffer, dtype, shape, order)`` (protocol 5): sizes must agree."""
    if len(args) != 4 or not isinstance(args[0], (bytes, bytearray)) or not isinstance(args[2], tuple) \
            or not all(isinstance(n, int) and n >= 0 for n in args[2]) or _ascii(args[3]) not in ("C", "F"):
        raise _Refused(f"numpy.core.numeric._frombuffer{_short(args[1:])}")
    buf, dtype, shape, order = args
    dtype = _checked_dtype(dtype, "numpy.core.numeric._frombuffer")
    if math.prod(shape) * dtype.itemsize != len(buf):
        raise _Refused(f"numpy.core.numeric._frombuffer of shape {shape} over {len(buf)} bytes")
    return np.frombuffer(buf, dtype).reshape(shape, order=_ascii(order))


def _scalar(*args):
    """``numpy.core.multiarray.scalar(dtype, raw bytes)``: a numpy bool or integer."""
    if len(args) != 2 or not isinstance(args[1], (bytes, bytearray)):
        raise _Refused(f"numpy.core.multiarray.scalar{_short(args)}")
    dtype = _checked_dtype(args[0], "numpy.core.multiarray.scalar")
    if len(args[1]) != dtype.itemsize:
        raise _Refused(f"numpy.core.multiarray.scalar of {len(args[1])} bytes for {dtype}")
    return np.frombuffer(bytes(args[1]), dtype)[0]


_ALLOWED = {
    ("builtins", "bytes"): _bytes, ("__builtin__", "bytes"): _bytes,
    ("builtins", "bytearray"): _bytearray, ("__builtin__", "bytearray"): _bytearray,
    ("_codecs", "encode"): _encode,
    ("numpy", "dtype"): _dtype,
    ("numpy", "ndarray"): None,  # _NdarrayType
}
for _core in ("numpy.core", "numpy._core"):  # numpy 1.x and numpy 2.x spell the module so
    _ALLOWED[(f"{_core}.multiarray", "_reconstruct")] = _reconstruct
    _ALLOWED[(f"{_core}.multiarray", "scalar")] = _scalar
    _ALLOWED[(f"{_core}.numeric", "_frombuffer")] = _frombuffer


class _BinUnpickler(pickle.Unpickler):
    """An Unpickler that resolves only :data:`_ALLOWED`; anything else raises :class:`_Refused`."""

    def find_class(self, module, name):
        if (module, name) not in _ALLOWED:
            import _compat_pickle  # Python 2 names as plain pickle would import them: __builtin__ -> builtins

            module, name = _compat_pickle.NAME_MAPPING.get((module, name), (module, name))
            module = _compat_pickle.IMPORT_MAPPING.get(module, module)
            raise _Refused(f"global '{module}.{name}'")
        func = _ALLOWED[(module, name)]
        return _NdarrayType() if func is None else _Checked(func)

    def persistent_load(self, pid):
        raise _Refused(f"persistent id {_short(pid)}")


_OPCODES = {op.code.encode("latin-1"): op for op in pickletools.opcodes}
_LENGTH_WIDTH = {pickletools.TAKEN_FROM_ARGUMENT1: (1, False), pickletools.TAKEN_FROM_ARGUMENT4: (4, True),
                 pickletools.TAKEN_FROM_ARGUMENT4U: (4, False), pickletools.TAKEN_FROM_ARGUMENT8U: (8, False)}


def _scan(data):
    """Walk the opcodes up to STOP without building anything, checking only that every
    argument fits in the file: a truncated file, or a length field claiming more bytes
    than the file holds (which the unpickler would reserve first), fails here.
    Raises ValueError naming the opcode and its position."""
    pos, end = 0, len(data)
    while pos < end:
        start, op = pos, _OPCODES.get(data[pos:pos + 1])
        if op is None:
            raise ValueError(f"unknown opcode {data[pos:pos + 1]!r} at byte {pos}")
        pos += 1
        arg = op.arg
        if arg is None:
            size = 0
        elif arg.n >= 0:
            size = arg.n
            if op.name == "FRAME" and pos + 8 <= end:
                claimed = int.from_bytes(data[pos:pos + 8], "little")
                if claimed > end - pos - 8:
                    raise ValueError(f"FRAME at byte {start} claims {claimed} bytes, only {end - pos - 8} remain")
        elif arg.n == pickletools.UP_TO_NEWLINE:
            for _ in range(2 if arg.name == "stringnl_noescape_pair" else 1):
                newline = data.find(b"\n", pos)
                if newline < 0:
                    raise ValueError(f"{op.name} at byte {start} has no end of line")
                pos = newline + 1
            size = 0
        else:
            width, signed = _LENGTH_WIDTH[arg.n]
            if pos + width > end:
                raise ValueError(f"{op.name} at byte {start} is cut off")
            size = int.from_bytes(data[pos:pos + width], "little", signed=signed)
            pos += width
            if size < 0:
                raise ValueError(f"{op.name} at byte {start} has a negative length {size}")
        if size > end - pos:
            raise ValueError(f"{op.name} at byte {start} claims {size} bytes, only {end - pos} remain")
        pos += size
        if op.name == "STOP":
            return
    raise ValueError("the file ends before the pickle's STOP opcode")


# -- structure of the loaded object ----------------------------------------------------

def _as_bytes(item, path, i):
    if isinstance(item, (bytes, bytearray, memoryview)):
        return bytes(item)
    if isinstance(item, np.ndarray) and item.dtype == np.uint8 and item.ndim == 1:
        return item.tobytes()
    what = f"a {item.dtype} array of shape {item.shape}" if isinstance(item, np.ndarray) \
        else f"a {type(item).__name__}"
    raise FaceKDError(f"{path}: bins[{i}] is {what}, expected encoded image bytes")


def _as_bool(item, path, i):
    if isinstance(item, (bool, np.bool_)) or (isinstance(item, (int, np.integer)) and item in (0, 1)):
        return bool(item)
    raise FaceKDError(f"{path}: issame_list[{i}] is {_short(item)}, expected a boolean")


def _validate(obj, path):
    if not isinstance(obj, (tuple, list)) or len(obj) != 2:
        raise FaceKDError(f"{path}: expected a pickled (bins, issame_list) pair, got {type(obj).__name__}"
                          + (f" of {len(obj)} items" if isinstance(obj, (tuple, list)) else ""))
    bins, issame = obj
    if not isinstance(bins, (list, tuple)) or not isinstance(issame, (list, tuple, np.ndarray)):
        raise FaceKDError(f"{path}: expected bins as a list of bytes and issame_list as a list of bools, "
                          f"got {type(bins).__name__} and {type(issame).__name__}")
    if isinstance(issame, np.ndarray) and (issame.ndim != 1 or issame.dtype.kind not in "bui"):
        raise FaceKDError(f"{path}: issame_list is a {issame.dtype} array of shape {issame.shape}, "
                          "expected a 1-D array of booleans")
    if len(issame) == 0 or len(bins) != 2 * len(issame):
        raise FaceKDError(f"{path}: {len(bins)} images for {len(issame)} pairs; expected "
                          "len(bins) == 2 * len(issame_list) > 0")
    return ([_as_bytes(b, path, i) for i, b in enumerate(bins)],
            [_as_bool(s, path, i) for i, s in enumerate(issame)])


def save_bin(path, bins, issame):
    """Write ``(bins, issame)`` with the highest pickle protocol, atomically."""
    bins, issame = _validate((list(bins), list(issame)), path)
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        pickle.dump((bins, issame), f, protocol=pickle.HIGHEST_PROTOCOL)


def loads_bin(data, path="<bytes>"):
    """(bins, issame) of the bytes of a ``.bin`` file, loaded by the restricted unpickler."""
    if not data:
        raise FaceKDError(f"{path}: not a readable pickle (the file is empty); {_DAMAGED}")
    try:
        _scan(data)
    except Exception as exc:
        raise FaceKDError(f"{path}: not a readable pickle, damaged or truncated ({_clip(exc)}); "
                          f"{_DAMAGED}") from None
    try:
        obj = _BinUnpickler(io.BytesIO(data), encoding="bytes").load()
    except _Refused as exc:
        raise FaceKDError(f"{path}: refuses to load {exc} ({_WHAT}); {_FIX}") from None
    except FaceKDError:
        raise
    except Exception as exc:  # MemoryError, UnpicklingError, TypeError of a malformed REDUCE...
        raise FaceKDError(f"{path}: not a readable pickle ({type(exc).__name__}: {_clip(exc)}); "
                          f"{_DAMAGED}") from None
    return _validate(obj, path)


def load_bin(path):
    """(bins: list of bytes, issame: list of bool) of a ``.bin`` file (Python 3 or Python 2 pickle).

    Only image bytes and booleans are accepted: a pickle naming any other global
    (``os.system``, ``builtins.eval``...) is refused before it runs (see the module doc).
    """
    if not os.path.isfile(path):
        raise FaceKDError(f"{path}: verification file not found; check the dataset folder and target name")
    with open(path, "rb") as f:
        data = f.read()
    return loads_bin(data, path)
