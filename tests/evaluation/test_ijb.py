"""IJB template protocol: hand-computed templates, ROC/TAR, 1:N, meta files and the whole path."""
import os

import cv2
import mxnet as mx
import numpy as np
import pytest
from sklearn.metrics import roc_curve as sk_roc_curve

from facekd.data.align import ARCFACE_TEMPLATE
from facekd.errors import FaceKDError
from facekd.evaluation import ijb
from facekd.embedder import Embedder

from evalhelpers import load_script, tiny_params, tiny_symbol

# 6 templates of 2-d face features: (template, media, feature, detector score)
FACES = [(1, 10, [1, 0], 1.0), (3, 30, [3, 4], 1.0), (1, 10, [0, 1], 0.5), (2, 20, [0, 3], 2.0),
         (1, 11, [2, 2], 1.0), (3, 30, [3, 4], 1.0), (4, 40, [1, 1], 1.0), (4, 41, [-1, 1], 1.0),
         (5, 50, [4, -3], 0.5), (6, 60, [-1, 0], 1.0)]
# template 1: media 10 mean of [1,0] and 0.5*[0,1] = [0.5,0.25], plus media 11 [2,2] -> [2.5,2.25]
EXPECTED = {1: np.array([2.5, 2.25]) / np.hypot(2.5, 2.25), 2: [0, 1], 3: [0.6, 0.8], 4: [0, 1],
            5: [0.8, -0.6], 6: [-1, 0]}


def hand_templates():
    t, m, f, s = zip(*FACES)
    return ijb.template_features(np.array(f, float), np.array(t), np.array(m), np.array(s))


def test_template_features_hand_computed():
    tids, feats = hand_templates()
    np.testing.assert_array_equal(tids, [1, 2, 3, 4, 5, 6])
    for k, tid in enumerate(tids):
        np.testing.assert_allclose(feats[k], EXPECTED[tid], atol=1e-12)
    pairs = np.array([[1, 2], [2, 4], [3, 5], [5, 6], [4, 3]])
    np.testing.assert_allclose(ijb.pair_scores(tids, feats, pairs),
                               [EXPECTED[1][1], 1.0, 0.0, -0.8, 0.8], atol=1e-12)
    with pytest.raises(FaceKDError, match="template 9 has no features"):
        ijb.pair_scores(tids, feats, np.array([[1, 9]]))


def test_roc_and_tar_at_far():
    labels = np.array([1, 1, 1, 1, 0, 0, 0, 0, 0])
    scores = np.array([0.9, 0.8, 0.4, 0.3, 0.85, 0.5, 0.2, 0.1, 0.0])
    fpr, tpr, thr = ijb.roc_curve(labels, scores)
    sk_fpr, sk_tpr, _ = sk_roc_curve(labels, scores, drop_intermediate=False)
    np.testing.assert_allclose(fpr, sk_fpr)
    np.testing.assert_allclose(tpr, sk_tpr)
    # FAR 0.01 -> FPR 0 (TPR .25); 0.25 -> FPR .2 (best TPR .5); 0.45 -> FPR .4 (best TPR 1.0)
    np.testing.assert_allclose(ijb.tar_at_far(labels, scores, (0.01, 0.25, 0.45)), [0.25, 0.5, 1.0])
    with pytest.raises(FaceKDError, match="genuine and impostor"):
        ijb.roc_curve(np.ones(3), np.zeros(3))


def test_identification_hand_computed():
    tids, feats = hand_templates()
    gallery = (np.array([1, 2, 3]), np.array([100, 200, 300]))
    probes = (np.array([4, 5, 6]), np.array([200, 300, 999]))
    # probe 4 = [0,1]: mate (t2) scores 1.0, rank 1; probe 5 = [.8,-.6]: mate t3 scores 0 but t1
    # scores .19 -> rank 2; probe 6 is non-mated, its best score is 0 (t2)
    r = ijb.identification(tids, feats, gallery, probes, ranks=(1, 2), fpirs=(0.5, 1.0))
    assert (r.mated, r.nonmated) == (2, 1)
    assert r.ranks == {1: 0.5, 2: 1.0}
    # FPIR .5 allows no non-mated probe above the threshold (0): probe 4 (1.0 > 0) counts
    assert r.tpir == {0.5: 0.5, 1.0: 0.5}
    worse = (np.array([5, 6]), np.array([300, 999]))
    assert ijb.identification(tids, feats, gallery, worse, fpirs=(0.5,)).tpir == {0.5: 0.0}


# ----------------------------------------------------------------------------- files and whole path

IMAGES = [("a.png", 1, 10, 0.9), ("b.png", 1, 10, 0.5), ("c.png", 1, 11, 1.0), ("d.png", 2, 20, 0.8),
          ("e.png", 3, 30, 1.0), ("f.png", 4, 40, 0.7), ("g.png", 5, 50, 1.0), ("h.png", 6, 60, 0.6)]
PAIRS = [(1, 2, 1), (1, 3, 0), (2, 4, 0), (3, 5, 1), (4, 6, 1), (5, 6, 0), (1, 6, 0), (2, 5, 0)]


def write_ijb(root, rng):
    """meta/ and loose_crop/ of a tiny IJB set; returns the aligned faces (a 112x112 crop each)."""
    meta, crops = root / "meta", root / "loose_crop"
    meta.mkdir(parents=True)
    crops.mkdir()
    faces = {}
    tid_lines, lmk_lines = [], []
    for k, (name, t, m, s) in enumerate(IMAGES):
        face = rng.randint(0, 256, size=(112, 112, 3)).astype(np.uint8)
        dx, dy = 5 + 3 * k, 11 + k  # the face sits at an integer offset inside a larger loose crop
        canvas = rng.randint(0, 256, size=(150, 140, 3)).astype(np.uint8)
        canvas[dy:dy + 112, dx:dx + 112] = face
        cv2.imwrite(str(crops / name), cv2.cvtColor(canvas, cv2.COLOR_RGB2BGR))
        faces[name] = face
        lmk = ARCFACE_TEMPLATE + [dx, dy]
        tid_lines.append(f"{name} {t} {m}")
        lmk_lines.append(" ".join([name] + [f"{v:.4f}" for v in lmk.reshape(-1)] + [str(s)]))
    (meta / "ijbx_face_tid_mid.txt").write_text("\n".join(tid_lines) + "\n")
    (meta / "ijbx_name_5pts_score.txt").write_text("\n".join(reversed(lmk_lines)) + "\n")  # any order
    (meta / "ijbx_template_pair_label.txt").write_text("\n".join(" ".join(map(str, p)) for p in PAIRS) + "\n")
    (meta / "ijbx_1N_gallery_G1.csv").write_text("TEMPLATE_ID,SUBJECT_ID,FILENAME\n1,100,a.png\n1,100,b.png\n"
                                                 "2,200,d.png\n3,300,e.png\n")
    (meta / "ijbx_1N_probe_mixed.csv").write_text("TEMPLATE_ID,SUBJECT_ID,FILENAME\n4,200,f.png\n"
                                                  "5,300,g.png\n6,999,h.png\n")
    return faces


def test_read_ijb_meta(tmp_path):
    write_ijb(tmp_path, np.random.RandomState(0))
    meta = ijb.read_ijb_meta(str(tmp_path), "IJBX")
    assert meta.images == [i[0] for i in IMAGES]
    np.testing.assert_array_equal(meta.templates, [i[1] for i in IMAGES])
    np.testing.assert_array_equal(meta.medias, [i[2] for i in IMAGES])
    np.testing.assert_allclose(meta.scores, [i[3] for i in IMAGES])
    np.testing.assert_allclose(meta.landmarks[3], ARCFACE_TEMPLATE + [14, 14], atol=1e-3)
    np.testing.assert_array_equal(meta.pairs, [p[:2] for p in PAIRS])
    np.testing.assert_array_equal(meta.galleries["G1"][0], [1, 2, 3])
    np.testing.assert_array_equal(meta.probes[1], [200, 300, 999])


def test_meta_errors(tmp_path):
    write_ijb(tmp_path, np.random.RandomState(0))
    meta = tmp_path / "meta"
    with pytest.raises(FaceKDError, match="ijby_face_tid_mid.txt not found"):
        ijb.read_ijb_meta(str(tmp_path), "IJBY")
    (meta / "ijbx_template_pair_label.txt").write_text("1 2 1\n1 7 0\n")
    with pytest.raises(FaceKDError, match="template 7"):
        ijb.read_ijb_meta(str(tmp_path), "IJBX")
    (meta / "ijbx_template_pair_label.txt").write_text("1 2 1\n1 x 0\n")
    with pytest.raises(FaceKDError, match=r"ijbx_template_pair_label.txt:2"):
        ijb.read_ijb_meta(str(tmp_path), "IJBX")
    (meta / "ijbx_name_5pts_score.txt").write_text("a.png 1 2 3\n")
    with pytest.raises(FaceKDError, match=r"ijbx_name_5pts_score.txt:1: expected at least 12"):
        ijb.read_ijb_meta(str(tmp_path), "IJBX")


def test_whole_path_against_hand_aggregation(tmp_path, capsys):
    faces = write_ijb(tmp_path, np.random.RandomState(1))
    arg, aux = tiny_params((112, 112))
    emb = Embedder(tiny_symbol(), arg, aux, [mx.cpu()], 4)
    result = ijb.evaluate_ijb(emb, str(tmp_path), "IJBX", fars=(0.01, 0.2, 0.5))
    # reference: one image at a time, original + flip, times score, mean per media, sum per template
    single = Embedder(tiny_symbol(), arg, aux, [mx.cpu()], 1)
    feat = {n: (single.embed(faces[n][None]) + single.embed(faces[n][None, :, ::-1]))[0].astype(np.float64)
            for n in faces}
    templates = {}
    for t in sorted({i[1] for i in IMAGES}):
        total = 0
        for m in sorted({i[2] for i in IMAGES if i[1] == t}):
            total = total + np.mean([s * feat[n] for n, tt, mm, s in IMAGES if (tt, mm) == (t, m)], axis=0)
        templates[t] = total / np.linalg.norm(total)
    expected = np.array([templates[a] @ templates[b] for a, b, _ in PAIRS])
    np.testing.assert_allclose(result.scores, expected, rtol=1e-4, atol=1e-5)
    labels = np.array([p[2] for p in PAIRS])
    fpr, tpr, _ = sk_roc_curve(labels, expected, drop_intermediate=False)
    tars = [tpr[np.abs(fpr - f) == np.abs(fpr - f).min()].max() for f in (0.01, 0.2, 0.5)]
    np.testing.assert_allclose(result.tars, tars)
    assert set(result.identification) == {"G1"} and result.identification["G1"].mated == 2
    # the command, in-process
    prefix = str(tmp_path / "m" / "model")
    os.makedirs(os.path.dirname(prefix))
    mx.model.save_checkpoint(prefix, 1, tiny_symbol(), arg, aux)
    assert load_script("ijb").main(["--data-dir", str(tmp_path), "--target", "IJBX", "--model", f"{prefix},1",
                                    "--batch-size", "4"]) == 0
    out = capsys.readouterr().out
    assert "[IJBX]" in out and "TAR(%)" in out and "1:N G1 (2 mated, 1 non-mated probes)" in out


def test_missing_image(tmp_path):
    write_ijb(tmp_path, np.random.RandomState(2))
    os.remove(tmp_path / "loose_crop" / "c.png")
    arg, aux = tiny_params((112, 112))
    emb = Embedder(tiny_symbol(), arg, aux, [mx.cpu()], 4)
    with pytest.raises(FaceKDError, match=r"loose_crop/c.png"):
        ijb.evaluate_ijb(emb, str(tmp_path), "IJBX")
