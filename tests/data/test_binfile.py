"""Verification .bin files: round trip, Python-2 pickles, validation, refusal of code in pickles."""
import codecs
import io
import os
import pickle
import pickletools
import struct
import subprocess

import numpy as np
import pytest

from facekd.data.binfile import load_bin, save_bin
from facekd.errors import FaceKDError


def _py2_pickle(bins, issame):
    """A protocol-2 pickle as Python 2 writes it: image bytes as `str` (SHORT_BINSTRING opcodes)."""
    out = bytearray(b"\x80\x02")            # PROTO 2
    out += b"]("                            # EMPTY_LIST, MARK
    for b in bins:
        assert len(b) < 256
        out += b"U" + bytes([len(b)]) + b   # SHORT_BINSTRING
    out += b"e"                             # APPENDS
    out += b"]("                            # EMPTY_LIST, MARK
    out += b"".join(b"\x88" if s else b"\x89" for s in issame)  # NEWTRUE / NEWFALSE
    out += b"e\x86."                        # APPENDS, TUPLE2, STOP
    return bytes(out)


def test_round_trip_with_highest_protocol(tmp_path):
    path = str(tmp_path / "lfw_like.bin")
    bins = [b"\xff\xd8jpeg-%d" % i for i in range(4)]
    save_bin(path, bins, [True, False])
    assert os.listdir(tmp_path) == ["lfw_like.bin"]
    raw = open(path, "rb").read()
    assert raw[:2] == b"\x80" + bytes([pickle.HIGHEST_PROTOCOL])
    assert pickle.loads(raw) == (bins, [True, False])  # plain pickle reads it back
    assert load_bin(path) == (bins, [True, False])


def test_python2_pickle_falls_back_to_bytes(tmp_path):
    bins = [b"\xff\xd8\xff\xe0a", b"\x89PNG\x80b", b"\xc3\x28c", b"\xfe\xfe"]
    raw = _py2_pickle(bins, [True, False])
    with pytest.raises(UnicodeDecodeError):   # the case the fallback exists for
        pickle.loads(raw)
    path = tmp_path / "old.bin"
    path.write_bytes(raw)
    got_bins, got_issame = load_bin(str(path))
    assert got_bins == bins and got_issame == [True, False]
    assert all(type(b) is bytes for b in got_bins)


@pytest.mark.parametrize("obj, message", [
    (([b"a", b"b", b"c"], [True]), r"3 images for 1 pairs"),
    (([], []), r"0 images for 0 pairs"),
    ([b"a"], r"expected a pickled \(bins, issame_list\) pair"),
    (({"a": 1}, [True]), r"expected bins as a list of bytes"),
    (([b"a", 5], [True]), r"bins\[1\] is a int"),
    (([b"a", b"b"], ["yes"]), r"issame_list\[0\] is 'yes'"),
])
def test_bad_structure_names_the_file(tmp_path, obj, message):
    path = tmp_path / "bad.bin"
    path.write_bytes(pickle.dumps(obj))
    with pytest.raises(FaceKDError, match=rf"bad\.bin: {message}"):
        load_bin(str(path))


def test_missing_and_garbage_files(tmp_path):
    with pytest.raises(FaceKDError, match=r"none\.bin: verification file not found"):
        load_bin(str(tmp_path / "none.bin"))
    (tmp_path / "junk.bin").write_bytes(b"not a pickle")
    with pytest.raises(FaceKDError, match=r"junk\.bin: not a readable pickle"):
        load_bin(str(tmp_path / "junk.bin"))


def test_invalid_save_writes_nothing(tmp_path):
    with pytest.raises(FaceKDError, match="3 images for 1 pairs"):
        save_bin(str(tmp_path / "x.bin"), [b"a", b"b", b"c"], [True])
    assert os.listdir(tmp_path) == []


# ----------------------------------------------------------------------------- restricted unpickling

BINS = [b"\xff\xd8\xff\xe0jpeg-0", b"\x89PNG\r\n\x1a\n-1", b"", b"quote ' and \" \\ \x00\x80" * 20,
        bytes(range(256)) * 2, b"\x00"]   # 300+ bytes: BINSTRING / BINBYTES, not only the short forms
ISSAME = [True, False, False]


def _u8(b):
    return np.array(list(b), dtype=np.uint8)  # built from the ints, not from the bytes buffer


class _Py2Pickler(pickle._Pickler):
    """The pure-Python pickler, writing ``bytes`` and ``str`` as Python 2 writes its ``str``:
    STRING (protocol 0, quoted with escapes) or SHORT_BINSTRING / BINSTRING (protocols 1, 2)."""
    dispatch = dict(pickle._Pickler.dispatch)

    def _save_py2_str(self, obj):
        data = obj.encode("latin-1") if isinstance(obj, str) else bytes(obj)
        if not self.bin:
            self.write(b"S" + repr(data)[1:].encode("ascii") + b"\n")
        elif len(data) < 256:
            self.write(b"U" + bytes([len(data)]) + data)
        else:
            self.write(b"T" + struct.pack("<i", len(data)) + data)
        self.memoize(obj)

    dispatch[bytes] = _save_py2_str
    dispatch[str] = _save_py2_str


def _py2_dumps(obj, protocol):
    f = io.BytesIO()
    _Py2Pickler(f, protocol=protocol).dump(obj)
    return f.getvalue()


# opcodes a Python 2 pickler can write (no BINBYTES*, no *UNICODE, no FRAME, no STACK_GLOBAL)
_PY2_OPCODES = {"PROTO", "MARK", "STOP", "EMPTY_LIST", "LIST", "APPEND", "APPENDS", "EMPTY_TUPLE", "TUPLE",
                "TUPLE1", "TUPLE2", "TUPLE3", "NEWTRUE", "NEWFALSE", "INT", "BININT", "BININT1", "BININT2",
                "NONE", "STRING", "BINSTRING", "SHORT_BINSTRING", "GLOBAL", "REDUCE", "BUILD", "PUT", "BINPUT",
                "LONG_BINPUT", "GET", "BINGET", "LONG_BINGET"}


def _opcode_names(raw):
    """Names of the opcodes of a pickle (pickletools.genops cannot decode a binary STRING opcode,
    so the STRING arguments are skipped by hand: they end at the first newline)."""
    names, f = set(), io.BytesIO(raw)
    while True:
        code = f.read(1)
        op = next(o for o in pickletools.opcodes if o.code.encode("latin-1") == code)
        names.add(op.name)
        if op.name == "STRING":
            f.readline()
        elif op.arg is not None:
            op.arg.reader(f)
        if op.name == "STOP":
            return names


def _write(tmp_path, raw, name="t.bin"):
    path = tmp_path / name
    path.write_bytes(raw)
    return str(path)


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
@pytest.mark.parametrize("form", ["bytes", "tuple of bytes", "bytearray", "uint8 arrays", "numpy bool array",
                                  "numpy bool scalars", "ints 0/1", "int array 0/1"])
def test_python3_pickles_of_every_protocol_load(tmp_path, protocol, form):
    bins, issame = list(BINS), list(ISSAME)
    if form == "tuple of bytes":
        bins = tuple(bins)
    elif form == "bytearray":
        bins = [bytearray(b) for b in bins]
    elif form == "uint8 arrays":
        bins = [_u8(b) for b in bins]
    elif form == "numpy bool array":
        bins, issame = [_u8(b) for b in bins], np.array([1, 0, 0]).astype(bool)
    elif form == "numpy bool scalars":
        issame = [np.bool_(True), np.bool_(False), np.bool_(False)]
    elif form == "ints 0/1":
        issame = [1, 0, 0]
    elif form == "int array 0/1":
        issame = np.array([1, 0, 0], dtype=np.int64)
    path = _write(tmp_path, pickle.dumps((bins, issame), protocol=protocol))
    got_bins, got_issame = load_bin(path)
    assert got_bins == BINS and got_issame == ISSAME
    assert all(type(b) is bytes for b in got_bins) and all(type(s) is bool for s in got_issame)


@pytest.mark.parametrize("protocol", [0, 1, 2])
@pytest.mark.parametrize("arrays", [False, True], ids=["str", "numpy"])
def test_python2_pickles_load(tmp_path, protocol, arrays):
    obj = ([_u8(b) for b in BINS], np.array(ISSAME)) if arrays else (list(BINS), list(ISSAME))
    raw = _py2_dumps(obj, protocol)
    ops = _opcode_names(raw)
    assert ops <= _PY2_OPCODES, ops - _PY2_OPCODES
    assert ops & {"STRING", "BINSTRING", "SHORT_BINSTRING"}
    with pytest.raises(UnicodeDecodeError):   # Python 3's default reading of a Python 2 str fails
        pickle.loads(raw)
    got_bins, got_issame = load_bin(_write(tmp_path, raw))
    assert got_bins == BINS and got_issame == ISSAME
    assert all(type(b) is bytes for b in got_bins)


class _System:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


class _Open:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return open, (self.marker, "w")


class _Subprocess:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return subprocess.call, (["touch", self.marker],)


class _Eval:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return eval, (f"open({self.marker!r}, 'w')",)


_EVIL = {"os.system": (_System, "posix.system"), "open": (_Open, "io.open"),
         "subprocess.call": (_Subprocess, "subprocess.call"), "eval": (_Eval, "builtins.eval")}


def test_malicious_payload_really_runs_under_plain_pickle(tmp_path):
    """The control: each payload of the tests below does create its marker under pickle.loads."""
    for name, (cls, _) in _EVIL.items():
        marker = tmp_path / f"control-{name}"
        pickle.loads(pickle.dumps(cls(str(marker))))
        assert marker.exists(), name


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
@pytest.mark.parametrize("kind", sorted(_EVIL))
@pytest.mark.parametrize("where", ["alone", "third item", "inside bins", "inside issame"])
def test_malicious_pickle_is_refused_and_never_runs(tmp_path, protocol, kind, where):
    cls, qualname = _EVIL[kind]
    marker = tmp_path / "pwned"
    evil = cls(str(marker))
    obj = {"alone": evil,
           "third item": (list(BINS), list(ISSAME), evil),
           "inside bins": (list(BINS[:5]) + [evil], list(ISSAME)),
           "inside issame": (list(BINS), [True, evil, False])}[where]
    path = _write(tmp_path, pickle.dumps(obj, protocol=protocol), "lfw.bin")
    with pytest.raises(FaceKDError) as err:
        load_bin(path)
    message = str(err.value)
    assert message == (f"{path}: refuses to load global '{qualname}' (a verification set holds only image "
                       f"bytes and booleans); replace it with the .bin of a trusted dataset download")
    assert not marker.exists()


class _Call:
    """A pickle calling ``func(*args)``: abuse of a global the loader does accept."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


@pytest.mark.parametrize("protocol", [2, 4])
@pytest.mark.parametrize("payload, refused", [
    (_Call(bytes, 10 ** 10), r"refuses to load bytes\(10000000000,\)"),            # 10 GB of zeros
    (_Call(bytearray, 10 ** 10), r"refuses to load bytearray\(10000000000,\)"),
    (_Call(codecs.encode, b"x" * 10, "zlib_codec"), r"refuses to load _codecs\.encode\(b'xxxxxxxxxx', 'zlib_codec'\)"),
    (_Call(np.dtype, "O"), r"refuses to load numpy\.dtype\('O',\)"),                 # object arrays
    (_Call(np.core.multiarray._reconstruct, np.ndarray, (10 ** 6, 10 ** 6), b"b"),
     r"refuses to load numpy\.core\.multiarray\._reconstruct"),
    (_Call(np.ndarray, (10 ** 6, 10 ** 6)), r"refuses to load numpy\.ndarray\(\(1000000, 1000000\),\)"),
    (_Call(np.core.numeric._frombuffer, b"abc", np.dtype("u1"), (10 ** 9,), "C"),
     r"refuses to load numpy\.core\.numeric\._frombuffer of shape \(1000000000,\) over 3 bytes"),
])
def test_allowed_globals_refuse_other_arguments(tmp_path, protocol, payload, refused):
    path = _write(tmp_path, pickle.dumps(([b"a", payload], [True]), protocol=protocol), "cfp_fp.bin")
    with pytest.raises(FaceKDError, match=rf"cfp_fp\.bin: {refused}.*a verification set holds only"):
        load_bin(path)


def test_object_arrays_are_refused(tmp_path):
    obj = ([b"a", b"b"], np.array([True, _System("x")], dtype=object))
    path = _write(tmp_path, pickle.dumps(obj, protocol=2))
    with pytest.raises(FaceKDError, match=r"t\.bin: refuses to load (numpy\.dtype\('O8'|global 'posix\.system')"):
        load_bin(path)
    path = _write(tmp_path, pickle.dumps(([b"a", b"b"], np.array([True], dtype=object)), protocol=4))
    with pytest.raises(FaceKDError, match=r"t\.bin: refuses to load numpy\.dtype\('O8', False, True\)"):
        load_bin(path)


def test_truncated_and_oversized_claims(tmp_path):
    good = pickle.dumps((list(BINS), list(ISSAME)), protocol=4)
    for cut in (1, 2, 20, len(good) // 2, len(good) - 1):
        path = _write(tmp_path, good[:cut], "cut.bin")
        with pytest.raises(FaceKDError, match=r"cut\.bin: not a readable pickle, damaged or truncated .*"
                                              r"copy or download the file again"):
            load_bin(path)
    # PROTO 4, BINBYTES8 claiming 2**48 bytes that are not there: refused before any allocation
    path = _write(tmp_path, b"\x80\x04\x8e" + struct.pack("<Q", 2 ** 48) + b"abc.", "huge.bin")
    with pytest.raises(FaceKDError, match=r"huge\.bin: not a readable pickle, damaged or truncated "
                                          r"\(BINBYTES8 at byte 2 claims 281474976710656 bytes, only 4 remain\)"):
        load_bin(path)
    path = _write(tmp_path, b"", "empty.bin")
    with pytest.raises(FaceKDError, match=r"empty\.bin: not a readable pickle \(the file is empty\)"):
        load_bin(path)


@pytest.mark.parametrize("obj, message", [
    ("a string", r"expected a pickled \(bins, issame_list\) pair, got str"),
    ({"bins": [b"a"], "issame": [True]}, r"expected a pickled \(bins, issame_list\) pair, got dict"),
    (([b"a", b"b"], [True], [1]), r"expected a pickled \(bins, issame_list\) pair, got tuple of 3 items"),
    (([b"a", b"b"], np.array([[True]])), r"issame_list is a bool array of shape \(1, 1\)"),
    (([b"a", np.zeros((2, 2), np.uint8)], [True]), r"bins\[1\] is a uint8 array of shape \(2, 2\)"),
    (([b"a", np.zeros(2, np.int64)], [True]), r"bins\[1\] is a int64 array of shape \(2,\)"),
    (([b"a", b"b"], [2]), r"issame_list\[0\] is 2, expected a boolean"),
    (([b"a", b"b"], [b"x" * 500]), r"issame_list\[0\] is b'xxx.*x\.\.\., expected a boolean"),
])
def test_other_structures_are_refused(tmp_path, obj, message):
    path = _write(tmp_path, pickle.dumps(obj, protocol=4), "other.bin")
    with pytest.raises(FaceKDError, match=rf"other\.bin: {message}") as err:
        load_bin(path)
    assert len(str(err.value)) < 300
