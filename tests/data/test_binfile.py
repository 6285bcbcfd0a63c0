"""Verification .bin files: round trip, Python-2 pickles, validation."""
import os
import pickle

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
