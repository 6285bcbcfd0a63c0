"""RecordDataset / RecordDatasetWriter against MXNet's own recordio reader and writer."""
import multiprocessing
import os

import mxnet as mx
import numpy as np
import pytest

from datahelpers import face_like, png_bytes, write_raw_dataset
from facekd.data import recordio
from facekd.data.recordio import RecordDataset, RecordDatasetWriter, write_property
from facekd.errors import FaceKDError

CLASSES = [0, 0, 0, 1, 1, 2]          # 3 identities: keys [1,4) [4,6) [6,7)
IDENTITIES = [[1, 4], [4, 6], [6, 7]]


def _images(n):
    return [face_like(i) for i in range(n)]


def _write(folder, labels, payloads, **kw):
    with RecordDatasetWriter(str(folder), **kw) as w:
        for label, payload in zip(labels, payloads):
            w.add(label, payload)
    return w


# ----------------------------------------------------------------------------- MXNet reads ours
def test_mxnet_reads_our_records(tmp_path):
    images = _images(len(CLASSES))
    _write(tmp_path, CLASSES, [png_bytes(im) for im in images])
    assert sorted(os.listdir(tmp_path)) == ["property", "train.idx", "train.rec"]
    assert open(tmp_path / "property").read().strip() == "3,112,112"

    rec = mx.recordio.MXIndexedRecordIO(str(tmp_path / "train.idx"), str(tmp_path / "train.rec"), "r")
    header, payload = mx.recordio.unpack(rec.read_idx(0))
    assert header.flag == 2 and header.label.tolist() == [7.0, 10.0] and payload == b""
    for key, cls in enumerate(CLASSES, start=1):
        header, bgr = mx.recordio.unpack_img(rec.read_idx(key), 1)
        assert header.flag == 0 and header.label == cls
        np.testing.assert_array_equal(bgr[..., ::-1], images[key - 1])   # PNG: lossless
    for j, rng in enumerate(IDENTITIES):
        header, payload = mx.recordio.unpack(rec.read_idx(7 + j))
        assert header.flag == 2 and header.label.tolist() == rng and payload == b""
    assert sorted(rec.keys) == list(range(10))
    rec.close()
    # the header is the first record in the file, as in insightface's datasets
    seq = mx.recordio.MXRecordIO(str(tmp_path / "train.rec"), "r")
    assert mx.recordio.unpack(seq.read())[0].label.tolist() == [7.0, 10.0]
    assert mx.recordio.unpack(seq.read())[0].label == 0.0
    seq.close()


# ----------------------------------------------------------------------------- we read MXNet's
@pytest.mark.parametrize("order", [None, [9, 3, 1, 2, 8, 0, 4, 6, 5, 7]])
def test_reader_reads_records_written_by_mxnet(tmp_path, order):
    images = _images(len(CLASSES))
    payloads = [png_bytes(im) for im in images]
    write_raw_dataset(str(tmp_path), [float(c) for c in CLASSES], payloads, IDENTITIES, order=order,
                      prop="3,112,112")
    with RecordDataset(str(tmp_path)) as ds:
        assert (ds.num_images, ds.num_identities, ds.num_classes, ds.image_size) == (6, 3, 3, (112, 112))
        assert ds.rec_path == str(tmp_path / "train.rec") and ds.idx_path == str(tmp_path / "train.idx")
        assert ds.layout.kind == "hard" and ds.layout.width == 1
        np.testing.assert_array_equal(ds.identities, IDENTITIES)
        assert ds.identities.dtype == np.int64
        np.testing.assert_array_equal(ds.class_of_identity, [0, 1, 2])
        label, payload = ds.read(5)
        assert label.dtype == np.float32 and label.tolist() == [1.0] and payload == payloads[4]
        got = list(ds.iter_records())
        assert [k for k, _, _ in got] == [1, 2, 3, 4, 5, 6]
        assert [lab.tolist() for _, lab, _ in got] == [[float(c)] for c in CLASSES]
        assert [p for _, _, p in got] == payloads
        assert [k for k, _, _ in ds.iter_records(3, 5)] == [3, 4]


def _iterate_in_child(queue):
    ds = _SHARED["ds"]
    ds.reopen()
    queue.put([lab.tolist() for _, lab, _ in ds.iter_records()])


_SHARED = {}


def test_reopen_after_fork(tmp_path):
    _write(tmp_path, CLASSES, [png_bytes(im) for im in _images(len(CLASSES))])
    with RecordDataset(str(tmp_path)) as ds:
        list(ds.iter_records(1, 3))
        _SHARED["ds"] = ds
        ctx = multiprocessing.get_context("fork")
        queue = ctx.Queue()
        proc = ctx.Process(target=_iterate_in_child, args=(queue,))
        proc.start()
        labels = queue.get(timeout=30)
        proc.join(30)
        _SHARED.clear()
    assert labels == [[float(c)] for c in CLASSES]


# ----------------------------------------------------------------------------- label round trips
def _soft(cls, seed):
    return np.concatenate([np.random.RandomState(seed).randn(512).astype(np.float32) * 3, [cls]]).astype(np.float32)


@pytest.mark.parametrize("kind", ["scalar", "aligned", "soft513"])
def test_label_round_trip(tmp_path, kind):
    if kind == "scalar":
        labels = [float(c) for c in CLASSES]
    elif kind == "aligned":
        labels = [np.array([c, 1], np.float32) for c in CLASSES]
    else:
        labels = [_soft(c, i) for i, c in enumerate(CLASSES)]
    payloads = [png_bytes(im) for im in _images(len(CLASSES))]
    _write(tmp_path, labels, payloads)
    width = {"scalar": 1, "aligned": 2, "soft513": 513}[kind]
    rec = mx.recordio.MXIndexedRecordIO(str(tmp_path / "train.idx"), str(tmp_path / "train.rec"), "r")
    for key, label in enumerate(labels, start=1):
        header, payload = mx.recordio.unpack(rec.read_idx(key))
        assert header.flag == (0 if width == 1 else width)
        np.testing.assert_array_equal(np.atleast_1d(header.label), np.atleast_1d(np.float32(label)))
        assert payload == payloads[key - 1]
    rec.close()
    with RecordDataset(str(tmp_path)) as ds:
        assert ds.layout.width == width
        np.testing.assert_array_equal(ds.identities, IDENTITIES)
        np.testing.assert_array_equal(ds.class_of_identity, [0, 1, 2])
        for key, label, payload in ds.iter_records():
            np.testing.assert_array_equal(label, np.atleast_1d(np.float32(labels[key - 1])))


def test_soft_labels_of_one_class_form_one_identity(tmp_path):
    labels = [_soft(4, 0), _soft(4, 1), _soft(4, 2), _soft(9, 3), _soft(9, 4)]
    w = _write(tmp_path, labels, [png_bytes(face_like(0))] * 5)
    assert w.num_classes == 10
    with RecordDataset(str(tmp_path)) as ds:
        assert ds.num_identities == 2
        np.testing.assert_array_equal(ds.identities, [[1, 4], [4, 6]])
        np.testing.assert_array_equal(ds.class_of_identity, [4, 9])
        assert ds.layout.kind == "soft" and ds.layout.teacher_dim == 512


# ----------------------------------------------------------------------------- writer failures
def test_reappearing_class_is_refused_and_nothing_is_left(tmp_path):
    out = tmp_path / "ds"
    with pytest.raises(FaceKDError, match=r"train\.rec.*class 0 re-appears"):
        _write(out, [0, 0, 1, 0], [b"x"] * 4)
    assert os.listdir(out) == []


def test_exception_inside_with_leaves_no_files(tmp_path):
    with pytest.raises(RuntimeError):
        with RecordDatasetWriter(str(tmp_path)) as w:
            w.add(0, png_bytes(face_like(0)))
            raise RuntimeError("boom")
    assert os.listdir(tmp_path) == []


def test_mixed_widths_and_empty_commit_are_refused(tmp_path):
    with pytest.raises(FaceKDError, match="label width 2 differs"):
        _write(tmp_path, [0, np.array([1, 1], np.float32)], [b"x", b"y"])
    with pytest.raises(FaceKDError, match="no images"):
        _write(tmp_path, [], [])
    with pytest.raises(FaceKDError, match="does not fit num_classes=2"):
        _write(tmp_path, [0, 5], [b"x", b"y"], num_classes=2)
    assert os.listdir(tmp_path) == []


def test_existing_dataset_needs_overwrite(tmp_path):
    payloads = [png_bytes(im) for im in _images(len(CLASSES))]
    _write(tmp_path, CLASSES, payloads)
    with pytest.raises(FaceKDError, match=r"train\.rec: already exists.*overwrite"):
        RecordDatasetWriter(str(tmp_path))
    _write(tmp_path, [0, 1], payloads[:2], overwrite=True)
    with RecordDataset(str(tmp_path)) as ds:
        assert (ds.num_images, ds.num_identities, ds.num_classes) == (2, 2, 2)
    assert sorted(os.listdir(tmp_path)) == ["property", "train.idx", "train.rec"]


def test_non_train_prefix_keeps_property(tmp_path):
    write_property(str(tmp_path), 7, 112, 112)
    _write(tmp_path, [0, 1], [png_bytes(face_like(0))] * 2, prefix="val")
    assert open(tmp_path / "property").read().strip() == "7,112,112"
    with RecordDataset(str(tmp_path), prefix="val") as ds:
        assert ds.num_images == 2 and ds.rec_path.endswith("val.rec")


# ----------------------------------------------------------------------------- bad datasets
def _good_raw(folder, **kw):
    args = dict(labels=[float(c) for c in CLASSES], payloads=[png_bytes(face_like(0))] * 6,
                identities=IDENTITIES, prop="3,112,112")
    args.update(kw)
    write_raw_dataset(str(folder), **args)


@pytest.mark.parametrize("missing", ["train.rec", "train.idx", "property"])
def test_missing_file(tmp_path, missing):
    _good_raw(tmp_path)
    os.remove(tmp_path / missing)
    with pytest.raises(FaceKDError, match=rf"{missing}: file not found"):
        RecordDataset(str(tmp_path))


@pytest.mark.parametrize("case, kw, message", [
    ("header absent", dict(header=False), r"train\.idx: record 0 \(the header.*absent"),
    ("header not a range", dict(header=[7]), r"train\.rec: record 0 should be the header"),
    ("header N/K vs index", dict(header=[7, 9]), r"train\.rec: header says 6 images \+ 2 identities = 9 records.*has 10"),
    ("identity out of bounds", dict(identities=[[1, 4], [4, 6], [6, 8]]), r"train\.rec: identity record 9 range \[6, 8\).*outside"),
    ("identity empty", dict(identities=[[1, 4], [4, 4], [4, 7]]), r"train\.rec: identity record 8 range \[4, 4\).*empty"),
    ("identities overlap", dict(identities=[[1, 4], [3, 6], [6, 7]]), r"train\.rec: identity records 7 \[1, 4\] and 8 \[3, 6\] overlap"),
    ("mixed widths", dict(labels=[0.0] * 5 + [np.array([2, 1], np.float32)]), r"train\.rec: image labels mix widths \(1 at key 1, 2 at key 6\)"),
    ("class beyond property", dict(prop="2,112,112"), r"train\.rec: image 6 has class id 2, outside 0\.\.1 of .*property"),
    ("image size vs property", dict(prop="3,96,112"), r"train\.rec: images are 112x112 but .*property says 96x112"),
    ("bad property", dict(prop="3,112"), r"property: expected one line"),
])
def test_bad_dataset_names_file_and_problem(tmp_path, case, kw, message):
    _good_raw(tmp_path, **kw)
    with pytest.raises(FaceKDError, match=message):
        RecordDataset(str(tmp_path))


def test_garbage_index_and_truncated_rec(tmp_path):
    _good_raw(tmp_path)
    with open(tmp_path / "train.idx", "a") as f:
        f.write("oops\n")
    with pytest.raises(FaceKDError, match=r"train\.idx: not an MXNet index"):
        RecordDataset(str(tmp_path))
    _good_raw(tmp_path)
    size = os.path.getsize(tmp_path / "train.rec")
    with open(tmp_path / "train.rec", "r+b") as f:
        f.truncate(size - 40)
    with pytest.raises(FaceKDError, match=r"train\.rec: .*record 9"):
        RecordDataset(str(tmp_path))


def test_corrupt_record_is_named(tmp_path):
    _good_raw(tmp_path)  # for the property file; the records are replaced below
    rec = mx.recordio.MXIndexedRecordIO(str(tmp_path / "train.idx"), str(tmp_path / "train.rec"), "w")
    rec.write_idx(0, mx.recordio.pack(mx.recordio.IRHeader(0, np.array([2, 2], np.float32), 0, 0), b""))
    rec.write_idx(1, b"\x05\x00\x00\x00" + b"\x00" * 20)  # claims a 5-float label it does not hold
    rec.close()
    with pytest.raises(FaceKDError, match=r"train\.rec: record 1 at byte 40 is corrupt \(its header declares "
                                          r"a 5-float label, 24 bytes cannot hold it\)"):
        RecordDataset(str(tmp_path))


# ----------------------------------------------------------------------------- the index, parsed in blocks
def _index_text(pairs, newline_at_end=True):
    text = "".join(f"{k}\t{o}\n" for k, o in pairs)
    return text if newline_at_end else text[:-1]


@pytest.mark.parametrize("chunk", [5, 16, 1 << 20])
@pytest.mark.parametrize("newline_at_end", [True, False])
def test_read_index_matches_a_plain_parse(tmp_path, monkeypatch, chunk, newline_at_end):
    monkeypatch.setattr(recordio, "_INDEX_CHUNK", chunk)  # blocks end mid-line and mid-number
    rng = np.random.default_rng(3)
    keys = rng.permutation(40)
    offs = rng.integers(0, 10 ** 12, size=40)
    path = tmp_path / "train.idx"
    path.write_text(_index_text(zip(keys.tolist(), offs.tolist()), newline_at_end))
    expected = {}
    for line in path.read_text().splitlines():  # the reference: split each line by hand
        k, o = line.split("\t")
        expected[int(k)] = int(o)
    got = recordio.read_index(str(path))
    assert got.dtype == np.int64 and got.tolist() == [expected[k] for k in range(40)]


@pytest.mark.parametrize("keys, message", [
    ([0, 1, 1, 3], r"record keys are not exactly 0\.\.3 \(missing or duplicate"),
    ([0, 1, 2, 4], r"record keys are not exactly 0\.\.3 \(missing or duplicate"),
    ([0, 1, 2, -1], r"record keys are not exactly 0\.\.3 \(missing or duplicate"),
    ([5, 0, 1, 2], r"record keys are not exactly 0\.\.3 \(missing or duplicate"),
    ([1, 2, 3, 4], r"record 0 \(the header .*absent"),
])
def test_read_index_refuses_missing_or_repeated_keys(tmp_path, monkeypatch, keys, message):
    monkeypatch.setattr(recordio, "_INDEX_CHUNK", 8)
    path = tmp_path / "train.idx"
    path.write_text(_index_text((k, 100 * i) for i, k in enumerate(keys)))
    with pytest.raises(FaceKDError, match=rf"train\.idx: {message}"):
        recordio.read_index(str(path))


def test_read_index_of_an_empty_file(tmp_path):
    (tmp_path / "train.idx").write_text("")
    assert recordio.read_index(str(tmp_path / "train.idx")).size == 0


# ----------------------------------------------------------------------------- a file damaged mid-way
N_BIG = 30  # images; records 1..30, identities of 3 images each


def _big_raw(folder):
    classes = [float(i // 3) for i in range(N_BIG)]
    idents = [[1 + 3 * c, 4 + 3 * c] for c in range(N_BIG // 3)]
    write_raw_dataset(str(folder), classes, [png_bytes(face_like(i % 4)) for i in range(N_BIG)], idents,
                      prop=f"{N_BIG // 3},112,112")
    offsets = {}
    for line in (folder / "train.idx").read_text().splitlines():  # the index, split by hand
        k, o = line.split("\t")
        offsets[int(k)] = int(o)
    return offsets


def _damage(path, offset, data):
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(data)


# how each damage is written at record KEY's offset (its 8-byte frame: magic, length; then its header)
DAMAGE = {
    "magic flipped": (0, b"\x00\x00\x00\x00"),
    "64 bytes overwritten across the record start": (-32, b"\xab" * 64),
    "length field garbage, later records intact": (4, b"\xff\xff\xff\x1f"),
    "label count garbage": (8, b"\xff\xff\xff\x7f"),
}
KEY = 17


@pytest.mark.parametrize("case", sorted(DAMAGE))
def test_corrupt_record_mid_file_read_and_iter(tmp_path, case):
    offsets = _big_raw(tmp_path)
    rec = str(tmp_path / "train.rec")
    shift, data = DAMAGE[case]
    with RecordDataset(str(tmp_path)) as ds:  # opened while intact: whatever the open-time sample is
        _damage(rec, offsets[KEY] + shift, data)
        expected = rf"^{rec}: record {KEY} at byte {offsets[KEY]} is corrupt \(.+\); " \
                   r"the file is damaged, re-copy or rebuild it$"
        with pytest.raises(FaceKDError, match=expected) as err:
            ds.read(KEY)
        assert "Traceback" not in str(err.value) and "\n" not in str(err.value)
        seen = []
        with pytest.raises(FaceKDError, match=expected) as err:
            for key, _, _ in ds.iter_records():
                seen.append(key)
        assert "Traceback" not in str(err.value)
        assert seen == list(range(1, KEY))  # damage before the start lies in record KEY-1's image bytes
        assert ds.read(KEY + 1)[0].tolist() == [KEY // 3]  # the rest of the file still reads


def test_corrupt_record_found_on_open(tmp_path):
    offsets = _big_raw(tmp_path)
    _damage(str(tmp_path / "train.rec"), offsets[1], b"\x00\x00\x00\x00")  # record 1 is always read on open
    with pytest.raises(FaceKDError, match=rf"train\.rec: record 1 at byte {offsets[1]} is corrupt \(.*Invalid "
                                          r"RecordIO File\); the file is damaged"):
        RecordDataset(str(tmp_path))


def test_truncated_last_record_is_named_truncated(tmp_path):
    offsets = _big_raw(tmp_path)
    last = max(offsets, key=offsets.get)  # the record stored last
    assert last == N_BIG + N_BIG // 3  # the last identity record, read on open
    with open(tmp_path / "train.rec", "r+b") as f:
        f.truncate(offsets[last] + 12)  # its frame survives, its body is cut
    with pytest.raises(FaceKDError, match=rf"train\.rec: record {last} at byte {offsets[last]} is cut short "
                                          rf"\(32 bytes declared\), the file ends at byte {offsets[last] + 12}; "
                                          "the file is truncated, re-copy or rebuild it$"):
        RecordDataset(str(tmp_path))


def _dead_pid():
    import subprocess

    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_writer_clears_temporary_files_of_a_killed_writer(tmp_path, capsys):
    pid = _dead_pid()
    for name in (f"train.rec.tmp{pid}", f"train.idx.tmp{pid}", f"train.rec.header.tmp{pid}"):
        (tmp_path / name).write_bytes(b"\x00" * 100)
    (tmp_path / f"train.rec.tmp{os.getpid()}x").write_bytes(b"not a leftover name")
    _write(tmp_path, [0, 1], [png_bytes(face_like(0))] * 2)
    err = capsys.readouterr().err
    for name in (f"train.rec.tmp{pid}", f"train.idx.tmp{pid}", f"train.rec.header.tmp{pid}"):
        assert f"removed {tmp_path / name}, left by an interrupted run (process {pid})" in err
    assert sorted(os.listdir(tmp_path)) == ["property", "train.idx", "train.rec", f"train.rec.tmp{os.getpid()}x"]
    rec = mx.recordio.MXIndexedRecordIO(str(tmp_path / "train.idx"), str(tmp_path / "train.rec"), "r")
    assert mx.recordio.unpack(rec.read_idx(0))[0].label.tolist() == [3, 5]
    rec.close()
