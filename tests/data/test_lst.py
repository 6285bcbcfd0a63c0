"""Parsing and writing .lst image lists."""
import os

import numpy as np
import pytest

from facekd.data.lst import LstEntry, format_line, parse_line, read_lst, resolve, write_lst
from facekd.errors import FaceKDError

LANDMARKS = "10\t20\t30\t40\t50\t11\t21\t31.5\t41\t51"


def test_plain_line():
    e = parse_line("1\tid0/a.jpg\t7\n")
    assert (e.aligned, e.path, e.label, e.bbox, e.landmarks) == (True, "id0/a.jpg", 7.0, None, None)
    assert e.class_id == 7


def test_bbox_and_landmarks_are_x_then_y():
    e = parse_line(f"0\tb.png\t3\t1\t2\t100\t120\t{LANDMARKS}")
    assert e.aligned is False and e.bbox == (1, 2, 100, 120)
    np.testing.assert_array_equal(e.landmarks, [[10, 11], [20, 21], [30, 31.5], [40, 41], [50, 51]])
    only = parse_line(f"0\tb.png\t3\t{LANDMARKS}")
    assert only.bbox is None and only.landmarks.shape == (5, 2)
    box = parse_line("0\tb.png\t3\t1\t2\t100\t120")
    assert box.bbox == (1, 2, 100, 120) and box.landmarks is None


def test_soft_label():
    e = parse_line("1\tx.jpg\t0.5 -1.25 3e-2 2.0 12")
    assert e.label.dtype == np.float32
    np.testing.assert_array_equal(e.label, np.float32([0.5, -1.25, 0.03, 2.0, 12]))
    assert e.class_id == 12


def test_write_read_round_trip(tmp_path):
    rng = np.random.RandomState(0)
    entries = [LstEntry(True, "a b/1.jpg", 0.0),
               LstEntry(False, "/abs/2.jpg", 1.0, (3, 4, 50, 60), rng.rand(5, 2) * 100),
               LstEntry(True, "3.jpg", np.concatenate([rng.randn(4), [2]]).astype(np.float32)),
               LstEntry(False, "4.jpg", 5.0, None, rng.rand(5, 2) * 100)]
    path = str(tmp_path / "train.lst")
    write_lst(path, entries)
    assert os.listdir(tmp_path) == ["train.lst"]
    lines = open(path).read().splitlines()
    assert lines[0] == "1\ta b/1.jpg\t0"
    got = read_lst(path)
    assert [g.lineno for g in got] == [1, 2, 3, 4]
    for want, have in zip(entries, got):
        assert (have.aligned, have.path, have.bbox) == (want.aligned, want.path, want.bbox)
        np.testing.assert_array_equal(np.asarray(have.label), np.asarray(want.label))
        if want.landmarks is None:
            assert have.landmarks is None
        else:
            np.testing.assert_array_equal(have.landmarks, want.landmarks)


def test_resolve_relative_to_list_folder(tmp_path):
    lst = str(tmp_path / "sub" / "train.lst")
    assert resolve(LstEntry(True, "id0/a.jpg", 0.0), lst) == str(tmp_path / "sub" / "id0" / "a.jpg")
    assert resolve(LstEntry(True, "/data/a.jpg", 0.0), lst) == "/data/a.jpg"


@pytest.mark.parametrize("line, message", [
    ("1\ta.jpg", "expected 3, 7, 13 or 17 tab-separated fields"),
    ("2\ta.jpg\t0", "aligned flag must be 0 or 1"),
    ("1\t\t0", "empty image path"),
    ("1\ta.jpg\tcat", "the label field must be numbers"),
    ("1\ta.jpg\t1 2", "label field has 2 values"),
    ("1\ta.jpg\t1.5", "class id 1.5 is not a non-negative integer"),
    ("1\ta.jpg\t-1", "class id -1.0 is not a non-negative integer"),
    ("0\ta.jpg\t1\t1\t2\t3.5\t4", "bounding box must be 4 integers"),
    (f"0\ta.jpg\t1\t{LANDMARKS.replace('50', 'x')}", "the landmarks must be numbers"),
])
def test_bad_lines_name_file_and_line(tmp_path, line, message):
    path = tmp_path / "train.lst"
    path.write_text("1\tok.jpg\t0\n" + line + "\n")
    with pytest.raises(FaceKDError, match=rf"train\.lst:2: .*{message}"):
        read_lst(str(path))


def test_missing_and_empty_lists(tmp_path):
    with pytest.raises(FaceKDError, match=r"nope\.lst: list file not found"):
        read_lst(str(tmp_path / "nope.lst"))
    (tmp_path / "e.lst").write_text("\n\n")
    with pytest.raises(FaceKDError, match=r"e\.lst: the list is empty"):
        read_lst(str(tmp_path / "e.lst"))


@pytest.mark.parametrize("line", ["1\tid0/a.jpg\t7", f"0\tb.png\t3\t1\t2\t100\t120\t{LANDMARKS}",
                                  f"0\tb.png\t3\t{LANDMARKS}", "1\tx.jpg\t0.5 -1.25 0.03 2 12"])
def test_format_line_reproduces_canonical_lines(line):
    assert format_line(parse_line(line)) == line


@pytest.mark.parametrize("data, message", [
    (b"1\tok.jpg\t0\n\x00\x01\x02PK\x03\x04\x00\x00\n", r"train\.lst:2: contains a NUL byte at column 1; this is a "
                                                        r"binary file, not an image list"),
    (b"1\tok.jpg\t0\n1\tcaf\xe9.jpg\t0\n", r"train\.lst:2: byte 0xe9 at column 6 is not UTF-8 text; the list must "
                                           r"be a UTF-8 text file"),
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", r"train\.lst:1: byte 0x89 at column 1 is not UTF-8 text"),
])
def test_binary_list_is_one_line_naming_file_and_line(tmp_path, data, message):
    path = tmp_path / "train.lst"
    path.write_bytes(data)
    with pytest.raises(FaceKDError, match=rf"^{tmp_path}/{message}") as err:
        read_lst(str(path))
    assert "\n" not in str(err.value)


def test_utf8_list_with_bom_and_non_ascii_paths(tmp_path):
    path = tmp_path / "train.lst"
    path.write_bytes("\ufeff1\tcafé/ü.jpg\t3\r\n".encode("utf-8"))
    (entry,) = read_lst(str(path))
    assert entry.path == "café/ü.jpg" and entry.label == 3.0 and entry.lineno == 1
