"""The synthetic face dataset: layout read back with MXNet's reader, determinism, held-out targets,
nuisance independent of identity, alignment, and the script's one-line errors."""
import os
from dataclasses import fields

import cv2
import mxnet as mx
import numpy as np
import pytest

from facekd.data.synthetic import (SyntheticParams, drift_identity, generate_synthetic, plan_all_pairs,
                                   sample_identity, signature, train_identities, val_identities)
from facekd.data.synthetic import dataset as synthetic_dataset
from facekd.data.synthetic.nuisance import Pose
from facekd.data.synthetic.render import Projector
from facekd.errors import FaceKDError
from datahelpers import read_bin_file, run_make_synthetic  # tests/data/datahelpers.py

FILES = ("train.rec", "train.idx", "property", "synth_easy.bin", "synth_pose.bin", "synth_age.bin",
         ".facekd-output")  # the marker: a folder make_synthetic.py wrote (and may --overwrite)
TARGET_NAMES = ("synth_easy", "synth_pose", "synth_age")


def _decode(payload):
    bgr = cv2.imdecode(np.frombuffer(payload, np.uint8), cv2.IMREAD_COLOR)
    return bgr[..., ::-1]


def _read_train(folder):
    """Header, labels, payloads and identity records with mx.recordio only."""
    rec = mx.recordio.MXIndexedRecordIO(os.path.join(folder, "train.idx"), os.path.join(folder, "train.rec"), "r")
    try:
        h0, payload0 = mx.recordio.unpack(rec.read_idx(0))
        start, stop = (int(v) for v in h0.label)
        labels, payloads = [], []
        for key in range(1, start):
            h, payload = mx.recordio.unpack(rec.read_idx(key))
            labels.append(h.label)
            payloads.append(payload)
        idents = [tuple(int(v) for v in mx.recordio.unpack(rec.read_idx(k))[0].label) for k in range(start, stop)]
        keys = sorted(rec.keys)
    finally:
        rec.close()
    return dict(header=(start, stop), header_flag=h0.flag, payload0=payload0, labels=labels, payloads=payloads,
                identities=idents, keys=keys)


def _tiny_argv(out, *extra):
    return ["--out", str(out), "--identities", "3", "--images-per-identity", "2", "--val-identities", "2",
            "--pairs", "2", "--workers", "1", "--quiet", *extra]


def test_layout_read_back_with_mxnet(synthetic_dir, synthetic_params):
    p = synthetic_params
    n, k = p.identities * p.images_per_identity, p.identities
    raw = _read_train(synthetic_dir)
    assert raw["header"] == (n + 1, n + 1 + k) and raw["header_flag"] == 2 and raw["payload0"] == b""
    assert raw["keys"] == list(range(n + k + 1))
    assert [float(v) for v in raw["labels"]] == [float(c) for c in np.repeat(np.arange(k), p.images_per_identity)]
    m = p.images_per_identity
    assert raw["identities"] == [(1 + c * m, 1 + (c + 1) * m) for c in range(k)]
    for payload in raw["payloads"]:
        assert payload[:2] == b"\xff\xd8" and _decode(payload).shape == (112, 112, 3)
    with open(os.path.join(synthetic_dir, "property")) as f:
        assert f.read().strip() == f"{k},112,112"
    assert sorted(os.listdir(synthetic_dir)) == sorted(FILES)


def test_targets_are_balanced_and_decodable(synthetic_dir, synthetic_params):
    pairs = synthetic_params.pairs
    for name in TARGET_NAMES:
        bins, issame = read_bin_file(os.path.join(synthetic_dir, name + ".bin"))
        assert len(bins) == 2 * pairs and len(issame) == pairs
        assert sum(issame) == pairs // 2
        assert all(issame[i] == (i % 2 == 0) for i in range(pairs))  # every contiguous fold is balanced
        assert all(_decode(b).shape == (112, 112, 3) for b in bins)
    easy = read_bin_file(os.path.join(synthetic_dir, "synth_easy.bin"))[0]
    pose = read_bin_file(os.path.join(synthetic_dir, "synth_pose.bin"))[0]
    assert easy[1] != pose[1]


def test_same_seed_same_bytes_any_workers(synthetic_dir, synthetic_params, tmp_path):
    again = tmp_path / "again"
    generate_synthetic(str(again), synthetic_params, workers=2, progress=False)
    for name in FILES:
        with open(os.path.join(synthetic_dir, name), "rb") as a, open(again / name, "rb") as b:
            assert a.read() == b.read(), name
    other = tmp_path / "other"
    generate_synthetic(str(other), SyntheticParams(**{**synthetic_params.__dict__, "seed": 8}), progress=False)
    with open(os.path.join(synthetic_dir, "train.rec"), "rb") as a, open(other / "train.rec", "rb") as b:
        assert a.read() != b.read()


def test_targets_use_held_out_identities(synthetic_params):
    train, val = train_identities(synthetic_params), val_identities(synthetic_params)
    sig_train = np.stack([signature(i) for i in train])
    sig_val = np.stack([signature(i) for i in val])
    gaps = np.sqrt(((sig_train[:, None] - sig_val[None]) ** 2).sum(-1))
    assert gaps.min() > 0.1
    assert not set(train) & set(val)
    for pairs in plan_all_pairs(synthetic_params, val):
        assert all(0 <= pr.a < len(val) and 0 <= pr.b < len(val) for pr in pairs)
        assert all((pr.a == pr.b) == pr.same for pr in pairs)


def _share_of_lookalike_negatives(params):
    val = val_identities(params)
    sig = np.stack([signature(i) for i in val]).astype(np.float64)
    dist = ((sig[:, None] - sig[None]) ** 2).sum(-1)
    np.fill_diagonal(dist, np.inf)
    near3 = np.argsort(dist, axis=1)[:, :3]
    diff = [pr for pairs in plan_all_pairs(params, val) for pr in pairs if not pr.same]
    return np.mean([pr.b in near3[pr.a] for pr in diff])


def test_different_pairs_partly_among_lookalikes():
    base = dict(identities=2, images_per_identity=2, val_identities=40, pairs=400, seed=3)
    assert _share_of_lookalike_negatives(SyntheticParams(**base, similar_fraction=0.5)) > 0.45
    assert _share_of_lookalike_negatives(SyntheticParams(**base, similar_fraction=0.0)) < 0.2


def test_background_does_not_follow_identity(synthetic_dir, synthetic_params):
    """One-way ANOVA of the top-corner colour across identities: F near 1 when drawn per image."""
    raw = _read_train(synthetic_dir)
    m, k = synthetic_params.images_per_identity, synthetic_params.identities
    corners = np.array([np.concatenate([img[:6, :6].reshape(-1, 3).mean(0), img[:6, -6:].reshape(-1, 3).mean(0)])
                        for img in map(_decode, raw["payloads"])], dtype=np.float64).reshape(k, m, 6)
    means = corners.mean(1)
    between = m * ((means - corners.reshape(-1, 6).mean(0)) ** 2).sum(0) / (k - 1)
    within = ((corners - means[:, None]) ** 2).sum((0, 1)) / (k * (m - 1))
    assert np.all(between / within < 3.0)


def test_neutral_face_sits_on_the_arcface_template():
    rng = np.random.default_rng(0)
    eyes, mouths = [], []
    for _ in range(300):
        ident = sample_identity(rng)
        proj = Projector(ident, Pose(yaw=0.0, pitch=0.0, roll=0.0, scale=1.0, dx=0.0, dy=0.0))
        eyes.append(proj.surface([-ident.eye_dx, ident.eye_dx], [ident.eye_v, ident.eye_v]))
        mouths.append(proj.surface([0.0], [ident.mouth_v])[0])
    eyes, mouths = np.array(eyes), np.array(mouths)
    # template: eyes (38.29, 51.70) and (73.53, 51.50), mouth corners at y 92.37 and 92.20
    assert abs(eyes[:, 0, 0].mean() - 38.29) < 2.5 and abs(eyes[:, 1, 0].mean() - 73.53) < 2.5
    assert abs(eyes[:, :, 1].mean() - 51.6) < 2.0 and abs(mouths[:, 1].mean() - 92.3) < 3.0
    assert eyes[:, :, 1].std() < 3.0 and mouths[:, 0].std() < 0.5


def test_age_drift_keeps_the_face_and_changes_the_rest():
    rng = np.random.default_rng(1)
    kept = ("eye_dx", "eye_v", "eye_rx", "eye_ry", "eye_tilt", "iris", "nose_style", "nose_len", "nose_width",
            "mouth_v", "mouth_w", "moles", "face_cy", "face_ay")
    changed = 0
    for _ in range(50):
        ident = sample_identity(rng)
        old = drift_identity(ident, rng, 1.0)
        assert all(getattr(old, f) == getattr(ident, f) for f in kept)
        assert old.wrinkles > ident.wrinkles
        changed += sum(getattr(old, f) != getattr(ident, f) for f in ("hair_style", "beard", "glasses"))
    assert changed > 20
    assert drift_identity(ident, rng, 0.0).eye_dx == ident.eye_dx
    assert {f.name for f in fields(ident)} >= set(kept)


def test_cli_writes_summary_and_montage(tmp_path, capsys):
    code, out, err = run_make_synthetic(_tiny_argv(tmp_path / "d", "--montage", str(tmp_path / "m.png")), capsys)
    assert code == 0, err
    assert "6 images of 3 identities" in out and "img/s" in out
    assert sorted(os.listdir(tmp_path / "d")) == sorted(FILES)
    grid = cv2.imread(str(tmp_path / "m.png"))
    # 3 identity rows + 3 target rows of (112 + 4 strip + 2 gap) px; 64 px labels + 4 columns of 114 px
    assert grid.shape == (6 * 118 + 2, 64 + 4 * 114 + 2, 3)


@pytest.mark.parametrize("flags, flag", [
    (["--images-per-identity", "1"], "--images-per-identity"),
    (["--pairs", "7"], "--pairs"),
    (["--val-identities", "1"], "--val-identities"),
    (["--workers", "0"], "--workers"),
    (["--montage", "grid.jpg"], "--montage"),
])
def test_cli_bad_flags_fail_in_one_line(tmp_path, capsys, flags, flag):
    code, out, err = run_make_synthetic(_tiny_argv(tmp_path / "d") + flags, capsys)
    assert code != 0 and flag in err and len(err.strip().splitlines()) == 1
    assert os.listdir(tmp_path) == []


def test_cli_refuses_existing_folder_without_overwrite(tmp_path, capsys):
    out = tmp_path / "d"
    out.mkdir()
    (out / "notes.txt").write_text("keep")
    code, _, err = run_make_synthetic(_tiny_argv(out), capsys)
    assert code != 0 and "--overwrite" in err and len(err.strip().splitlines()) == 1
    assert os.listdir(out) == ["notes.txt"]
    code, _, err = run_make_synthetic(_tiny_argv(out, "--overwrite"), capsys)
    assert code == 0, err
    assert sorted(os.listdir(out)) == sorted(FILES + ("notes.txt",))
    assert sorted(os.listdir(tmp_path)) == ["d"]


def test_failure_midway_leaves_nothing(tmp_path, monkeypatch):
    calls = []
    real = synthetic_dataset.render_encoded

    def flaky(task):
        calls.append(1)
        if len(calls) > 4:
            raise FaceKDError("renderer broke")
        return real(task)

    monkeypatch.setattr(synthetic_dataset, "render_encoded", flaky)
    with pytest.raises(FaceKDError, match="renderer broke"):
        generate_synthetic(str(tmp_path / "d"), SyntheticParams(3, 3, 2, 2, 0), progress=False)
    assert os.listdir(tmp_path) == []
