"""data_prepare/face2rec2.py: packs .lst lists; MXNet's own reader reads the result."""
import os
import re
import runpy
import subprocess
import sys

import cv2
import mxnet as mx
import numpy as np
import pytest

from datahelpers import dot_centres, dots_image, face_like, rotate_scale
from facekd.data.align import ARCFACE_TEMPLATE
from facekd.data.recordio import RecordDataset
from facekd.errors import FaceKDError

SCRIPT = os.path.join(os.path.dirname(__file__), "..", "..", "data_prepare", "face2rec2.py")
main = runpy.run_path(SCRIPT)["main"]


def _imwrite(path, rgb):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    assert cv2.imwrite(path, rgb[..., ::-1])
    return open(path, "rb").read()


def _landmark_fields(points):
    return "\t".join("%.4f" % v for v in np.concatenate([points[:, 0], points[:, 1]]))


@pytest.fixture
def image_folder(tmp_path):
    """train.lst: 3 aligned (classes 0, 0, 1), 2 unaligned with landmarks (class 2), 1 without; val.lst."""
    files = {}
    files["a0"] = _imwrite(str(tmp_path / "id0" / "a.jpg"), face_like(0))
    files["a1"] = _imwrite(str(tmp_path / "id0" / "b.jpg"), face_like(1))
    files["b0"] = _imwrite(str(tmp_path / "id1" / "a.png"), face_like(2))
    pts1 = rotate_scale(ARCFACE_TEMPLATE, 2.0, 15.0, (80.0, 30.0))
    pts2 = rotate_scale(ARCFACE_TEMPLATE, 1.5, -25.0, (40.0, 90.0))
    _imwrite(str(tmp_path / "raw" / "c1.jpg"), dots_image(pts1, (300, 320)))
    _imwrite(str(tmp_path / "raw" / "c2.png"), dots_image(pts2, (280, 260)))
    _imwrite(str(tmp_path / "raw" / "c3.jpg"), face_like(3, 200))
    lines = ["1\tid0/a.jpg\t0", "1\tid0/b.jpg\t0", f"1\t{tmp_path / 'id1' / 'a.png'}\t1",
             f"0\traw/c1.jpg\t2\t10\t10\t250\t250\t{_landmark_fields(pts1)}",
             f"0\traw/c2.png\t2\t{_landmark_fields(pts2)}",
             "0\traw/c3.jpg\t2"]
    (tmp_path / "train.lst").write_text("\n".join(lines) + "\n")
    (tmp_path / "val.lst").write_text("1\tid0/b.jpg\t0\n1\tid1/a.png\t1\n")
    return tmp_path, files


def test_packs_aligned_and_landmarked_lists(image_folder, capsys):
    root, files = image_folder
    main([str(root), "--num-thread", "2"])
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 2
    assert "train.rec: 5 images (3 aligned, 2 warped), 3 identities, 3 classes, 1 skipped" in out[0]
    assert "val.rec: 2 images (2 aligned, 0 warped), 2 identities, 2 classes, 0 skipped" in out[1]
    assert open(root / "property").read().strip() == "3,112,112"
    assert not [f for f in os.listdir(root) if "tmp" in f]

    rec = mx.recordio.MXIndexedRecordIO(str(root / "train.idx"), str(root / "train.rec"), "r")
    header, _ = mx.recordio.unpack(rec.read_idx(0))
    assert header.label.tolist() == [6.0, 9.0]
    assert [mx.recordio.unpack(rec.read_idx(k))[0].label.tolist() for k in (6, 7, 8)] == [[1, 3], [3, 4], [4, 6]]
    for key, name, cls in [(1, "a0", 0), (2, "a1", 0), (3, "b0", 1)]:
        header, payload = mx.recordio.unpack(rec.read_idx(key))
        assert header.label == cls and payload == files[name]   # aligned: bytes unchanged
    for key in (4, 5):
        header, bgr = mx.recordio.unpack_img(rec.read_idx(key), 1)
        assert header.label == 2 and bgr.shape == (112, 112, 3)
        assert mx.recordio.unpack(rec.read_idx(key))[1][:2] == b"\xff\xd8"    # re-encoded as JPEG
        np.testing.assert_allclose(dot_centres(bgr, ARCFACE_TEMPLATE), ARCFACE_TEMPLATE, atol=0.6)
    rec.close()
    with RecordDataset(str(root)) as ds:
        assert (ds.num_images, ds.num_identities, ds.num_classes) == (5, 3, 3)
    with RecordDataset(str(root), prefix="val") as ds:
        assert ds.num_images == 2


def test_soft_list_forms_one_identity_per_class(tmp_path):
    for i in range(3):
        _imwrite(str(tmp_path / f"{i}.jpg"), face_like(i))
    soft = ["1\t0.jpg\t0.1 0.2 0.3 0.4 5", "1\t1.jpg\t-1 2 -3 4 5", "1\t2.jpg\t9 8 7 6 1"]
    (tmp_path / "train.lst").write_text("\n".join(soft) + "\n")
    main([str(tmp_path / "train.lst")])
    with RecordDataset(str(tmp_path)) as ds:
        assert ds.layout.width == 5 and ds.num_classes == 6
        np.testing.assert_array_equal(ds.identities, [[1, 3], [3, 4]])
        np.testing.assert_array_equal(ds.read(2)[0], np.float32([-1, 2, -3, 4, 5]))


def test_existing_output_needs_overwrite(image_folder, capsys):
    root, _ = image_folder
    main([str(root / "val.lst")])
    with pytest.raises(FaceKDError, match=r"val\.rec: already exists.*--overwrite"):
        main([str(root / "val.lst")])
    main([str(root / "val.lst"), "--overwrite"])


def test_failure_leaves_nothing_behind(image_folder):
    root, _ = image_folder
    with open(root / "train.lst", "a") as f:
        f.write("1\tid9/missing.jpg\t3\n")
    with pytest.raises(FaceKDError, match=r"train\.lst:7: cannot read image .*missing\.jpg"):
        main([str(root / "train.lst"), "--num-thread", "2"])
    (root / "val.lst").write_text("1\tid1/a.png\t1\n1\tid0/b.jpg\t0\n1\tid1/a.png\t1\n")
    with pytest.raises(FaceKDError, match=r"val\.lst: line 3: class 1 re-appears"):
        main([str(root / "val.lst")])
    assert not [f for f in os.listdir(root) if f.endswith((".rec", ".idx", ".tmp")) or f == "property"]


def test_cli_prints_one_line_and_exits_nonzero(tmp_path):
    proc = subprocess.run([sys.executable, SCRIPT, str(tmp_path)], capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [f"face2rec2.py: error: {tmp_path}: no *.lst files found; "
                                                "write the image lists there first"]


# ----------------------------------------------------------------------------- bad inputs
@pytest.mark.parametrize("points, what", [
    (np.array([[30.0, 50.0], [60.0, 50.0], [90.0, 50.0], [120.0, 50.0], [150.0, 50.0]]), "are collinear"),
    (np.full((5, 2), 77.0), "are all at one point"),
])
def test_degenerate_landmarks_are_refused_before_packing(image_folder, points, what):
    root, _ = image_folder
    with open(root / "train.lst", "a") as f:
        f.write(f"0\traw/c3.jpg\t2\t{_landmark_fields(points)}\n")  # line 7
    pairs = " ".join(f"({x:g},{y:g})" for x, y in points)
    with pytest.raises(FaceKDError, match=rf"^{root / 'train.lst'}:7: {root / 'raw' / 'c3.jpg'}: landmarks "
                                          rf"{re.escape(pairs)} {what} .*fix them in the list"):
        main([str(root / "train.lst"), "--num-thread", "2"])
    assert not [f for f in os.listdir(root) if f.endswith((".rec", ".idx")) or "tmp" in f or f == "property"]


def test_binary_list_fails_in_one_line(tmp_path):
    (tmp_path / "train.lst").write_bytes(b"1\ta.jpg\t0\n" + bytes(range(256)) + b"\n")
    proc = subprocess.run([sys.executable, SCRIPT, str(tmp_path)], capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"face2rec2.py: error: {tmp_path / 'train.lst'}:2: contains a NUL byte at column 1; this is a binary "
        "file, not an image list (one tab-separated text line per image)"]


def test_overwrite_refuses_a_rec_it_did_not_write(image_folder):
    root, _ = image_folder
    # a dataset packed by someone else (MXNet's own writer), with the list put beside it
    rec = mx.recordio.MXIndexedRecordIO(str(root / "val.idx"), str(root / "val.rec"), "w")
    rec.write_idx(0, b"original dataset")
    rec.close()
    before = {p: open(root / p, "rb").read() for p in ("val.rec", "val.idx")}
    with pytest.raises(FaceKDError, match=rf"^{root / 'val.rec'} exists and was not written by face2rec2.py "
                                          r"\(no \.facekd-output marker\); remove it yourself or put the list in "
                                          "another folder$"):
        main([str(root / "val.lst"), "--overwrite"])
    assert {p: open(root / p, "rb").read() for p in ("val.rec", "val.idx")} == before
    os.remove(root / "val.rec")
    os.remove(root / "val.idx")
    main([str(root / "val.lst")])
    assert "face2rec2.py val" in (root / ".facekd-output").read_text().splitlines()
    main([str(root / "val.lst"), "--overwrite"])  # its own output: replaced


def test_image_that_is_an_output_file_is_refused(image_folder):
    root, _ = image_folder
    (root / "val.lst").write_text("1\tid0/b.jpg\t0\n1\tval.rec\t1\n")
    (root / "val.rec").write_bytes(b"an image someone named val.rec")
    with pytest.raises(FaceKDError, match=r"val\.lst:2: the image val\.rec is a file this list is packed into"):
        main([str(root / "val.lst"), "--overwrite"])
    assert (root / "val.rec").read_bytes() == b"an image someone named val.rec"


def test_leftovers_of_a_killed_pack_are_cleared(image_folder, capsys):
    root, _ = image_folder
    proc = subprocess.Popen(["true"])
    proc.wait()
    (root / f"val.rec.tmp{proc.pid}").write_bytes(b"\0" * 4096)
    (root / f"val.idx.tmp{proc.pid}").write_text("0\t0\n")
    main([str(root / "val.lst")])
    err = capsys.readouterr().err
    assert f"removed {root / f'val.rec.tmp{proc.pid}'}, left by an interrupted run (process {proc.pid})" in err
    assert not [f for f in os.listdir(root) if "tmp" in f]
