"""IJB template protocol: hand-computed features, templates, ROC/TAR and 1:N, meta files, the whole path.
The comparison with the float64 reference of docs/evaluation.md: test_ijb_protocol.py."""
import os

import mxnet as mx
import numpy as np
import pytest
from sklearn.metrics import roc_curve as sk_roc_curve

from facekd.data.align import ARCFACE_TEMPLATE
from facekd.errors import FaceKDError
from facekd.evaluation import ijb
from facekd.embedder import Embedder

from evalhelpers import load_script, tiny_params, tiny_symbol, write_ijb_set

# 6 templates of 2-d face features: (template, media, feature, detector score)
FACES = [(1, 10, [1, 0], 1.0), (3, 30, [3, 4], 1.0), (1, 10, [0, 1], 0.5), (2, 20, [0, 3], 2.0),
         (1, 11, [2, 2], 1.0), (3, 30, [3, 4], 1.0), (4, 40, [1, 1], 1.0), (4, 41, [-1, 1], 1.0),
         (5, 50, [4, -3], 0.5), (6, 60, [-1, 0], 1.0)]
# template 1: media 10 mean of [1,0] and 0.5*[0,1] = [0.5,0.25], plus media 11 [2,2] -> [2.5,2.25]
EXPECTED = {1: np.array([2.5, 2.25]) / np.hypot(2.5, 2.25), 2: [0, 1], 3: [0.6, 0.8], 4: [0, 1],
            5: [0.8, -0.6], 6: [-1, 0]}


def hand_templates():
    t, m, f, s = zip(*FACES)
    feats = ijb.image_features(np.array(f, float), None, np.array(s), ijb.FeatureOptions(use_flip_test=False))
    return ijb.template_features(feats, np.array(t), np.array(m))


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


def test_image_feature_options():
    orig, flip, det = np.array([[1.0, 1.0]]), np.array([[2.0, 3.0]]), np.array([0.5])  # flip sum [3, 4]
    cases = {(True, True, True): [1.5, 2.0], (False, True, True): [0.5, 0.5], (True, False, True): [0.3, 0.4],
             (True, True, False): [3.0, 4.0], (False, False, False): [0.5 ** 0.5, 0.5 ** 0.5]}
    for (flip_on, norm_on, det_on), expected in cases.items():
        options = ijb.FeatureOptions(use_flip_test=flip_on, use_norm_score=norm_on, use_detector_score=det_on)
        np.testing.assert_allclose(ijb.image_features(orig, flip, det, options)[0], expected)
    assert ijb.FeatureOptions().mode == "N1D1F1"
    assert ijb.FeatureOptions(use_norm_score=False, use_flip_test=False).mode == "N0D1F0"


def test_roc_and_tar_at_far():
    # tied scores: 0.8, 0.7 and 0.6 each hold one genuine and one impostor pair, so the ROC points
    # (1, 2) and (2, 3) (FP, TP) lie on equal steps and scikit-learn drops them
    labels = np.array([1, 1, 0, 1, 0, 1, 0, 0, 0, 0])
    scores = np.array([0.9, 0.8, 0.8, 0.7, 0.7, 0.6, 0.6, 0.5, 0.4, 0.4])
    fpr, tpr, _ = ijb.roc_curve(labels, scores)
    np.testing.assert_allclose(fpr, [0, 0, 0.5, 4 / 6, 1])
    np.testing.assert_allclose(tpr, [0, 0.25, 1, 1, 1])
    sk_fpr, sk_tpr, _ = sk_roc_curve(labels, scores)
    np.testing.assert_array_equal(fpr, sk_fpr)
    np.testing.assert_array_equal(tpr, sk_tpr)
    # FAR 0.15: nearest FPR 0 (the full curve's 1/6 point is gone) -> the best TPR at FPR 0, 0.25;
    # 0.3: nearest 0.5 -> 1.0 (above the FAR: no "FPR <= FAR" rule); 0.25: 0 and 0.5 equally near -> the later
    np.testing.assert_allclose(ijb.tar_at_far(labels, scores, (0.15, 0.3, 0.25, 1e-6)), [0.25, 1.0, 1.0, 0.25])
    with pytest.raises(FaceKDError, match="genuine and impostor"):
        ijb.roc_curve(np.ones(3), np.zeros(3))


def test_open_set_search_hand_computed():
    tids, feats = hand_templates()
    galleries = {"G1": (np.array([1, 2, 3]), np.array([100, 200, 300]))}
    probes = (np.array([4, 5, 6]), np.array([200, 300, 999]))
    # probe 4 = [0,1]: mate t2 scores 1.0, rank 1; probe 5 = [.8,-.6]: mate t3 scores 0 but t1
    # scores .19 -> rank 2; probe 6 is non-mated, its best score is 0 (t2) -> the threshold
    (r,) = ijb.PROTOCOLS_1N.get("ijb_evals")(tids, feats, galleries, probes, ranks=(1, 2), fpirs=(0.5, 1.0))
    assert (r.mated, r.nonmated, r.gallery_size) == (2, 1, 3)
    assert r.ranks == {1: 0.5, 2: 1.0}
    assert r.tpir == {0.5: 0.5, 1.0: 0.5}  # probe 4: correct and 1.0 > 0
    worse = (np.array([5, 6]), np.array([300, 999]))
    assert ijb.PROTOCOLS_1N.get("ijb_evals")(tids, feats, galleries, worse, fpirs=(0.5,))[0].tpir == {0.5: 0.0}


def test_closed_set_search_hand_computed():
    tids, feats = hand_templates()
    galleries = {"G1": (np.array([1, 2]), np.array([100, 200])), "G2": (np.array([3]), np.array([300]))}
    probes = (np.array([4, 5, 6]), np.array([200, 300, 100]))
    # scores (rows probes 4, 5, 6; columns t1, t2, t3): mates t2, t3, t1
    #   4 = [0,1]:   .669  1.0  .8    rank 1
    #   5 = [.8,-.6]: .193 -.6   0     rank 2
    #   6 = [-1,0]: -.743  0    -.6    rank 3
    (r,) = ijb.PROTOCOLS_1N.get("ijb_1n")(tids, feats, galleries, probes, ranks=(1, 2, 3), fpirs=(0.34, 0.5))
    assert (r.gallery, r.probes, r.gallery_size) == ("G1+G2", 3, 3)
    assert r.ranks == pytest.approx({1: 1 / 3, 2: 2 / 3, 3: 1.0})
    # non-mate scores .8 .669 .193 0 -.6 -.6: FPIR .34 -> ceil(1.02) = 2nd largest .669 -> probe 4 only;
    # FPIR .5 -> ceil(1.5) = 2nd -> the same
    assert r.tpir == pytest.approx({0.34: 1 / 3, 0.5: 1 / 3})


# ----------------------------------------------------------------------------- files and whole path

IMAGES = [("a.png", 1, 10, 0.9), ("b.png", 1, 10, 0.5), ("c.png", 1, 11, 1.0), ("d.png", 2, 20, 0.8),
          ("e.png", 3, 30, 1.0), ("f.png", 4, 40, 0.7), ("g.png", 5, 50, 1.0), ("h.png", 6, 60, 0.6)]
PAIRS = [(1, 2, 1), (1, 3, 0), (2, 4, 0), (3, 5, 1), (4, 6, 1), (5, 6, 0), (1, 6, 0), (2, 5, 0)]


def write_ijb(root, rng):
    """meta/ and loose_crop/ of a tiny IJB set; returns the aligned faces (a 112x112 crop each)."""
    faces = {name: rng.randint(0, 256, size=(112, 112, 3)).astype(np.uint8) for name, *_ in IMAGES}
    write_ijb_set(root, "ijbx", [(n, t, m, s, faces[n]) for n, t, m, s in IMAGES], PAIRS,
                  galleries=[("G1", [(1, 100, "a.png"), (1, 100, "b.png"), (2, 200, "d.png"), (3, 300, "e.png")])],
                  probes=[(4, 200, "f.png"), (5, 300, "g.png"), (6, 999, "h.png")], seed=int(rng.randint(1000)))
    return faces


def test_gallery_list_names(tmp_path):
    meta = tmp_path / "meta"
    meta.mkdir()
    assert ijb.gallery_names("IJBB", str(meta)) == ("S1", "S2")  # insightface's IJB-B names
    assert ijb.gallery_names("IJBC", str(meta)) == ("G1", "G2")
    (meta / "ijbb_1N_gallery_G1.csv").write_text("TEMPLATE_ID,SUBJECT_ID\n1,1\n")
    assert ijb.gallery_names("IJBB", str(meta)) == ("G1", "G2")  # only the other naming present
    (meta / "ijbb_1N_gallery_S2.csv").write_text("TEMPLATE_ID,SUBJECT_ID\n1,1\n")
    assert ijb.gallery_names("IJBB", str(meta)) == ("S1", "S2")


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
    result = ijb.evaluate_ijb(emb, str(tmp_path), "IJBX", fars=(0.01, 0.2, 0.5), protocol_1n="ijb_evals")
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
    fpr, tpr, _ = sk_roc_curve(labels, expected)
    tars = [tpr[np.flatnonzero(np.abs(fpr - f) == np.abs(fpr - f).min())[-1]] for f in (0.01, 0.2, 0.5)]
    np.testing.assert_allclose(result.tars, tars)
    assert [r.gallery for r in result.identification] == ["G1"] and result.identification[0].mated == 2
    # the command, in-process
    prefix = str(tmp_path / "m" / "model")
    os.makedirs(os.path.dirname(prefix))
    mx.model.save_checkpoint(prefix, 1, tiny_symbol(), arg, aux)
    assert load_script("ijb").main(["--data-dir", str(tmp_path), "--target", "IJBX", "--model", f"{prefix},1",
                                    "--batch-size", "4", "--protocol-1n", "ijb_evals"]) == 0
    out = capsys.readouterr().out
    assert "[IJBX]" in out and "TAR(%)" in out and "1:N G1 (ijb_evals: 3 probes, 2 mated, 1 non-mated" in out
    # the default protocol searches every probe among all galleries: subject 999 has none
    with pytest.raises(FaceKDError, match=r"probe template 6 \(subject 999\) has no template in gallery G1; "
                                          r"--protocol-1n ijb_1n searches every probe"):
        load_script("ijb").main(["--data-dir", str(tmp_path), "--target", "IJBX", "--model", f"{prefix},1"])
    with pytest.raises(FaceKDError, match=r"unknown 1:N protocol 'nist' for --protocol-1n"):
        load_script("ijb").main(["--data-dir", str(tmp_path), "--target", "IJBX", "--model", f"{prefix},1",
                                 "--protocol-1n", "nist"])


def test_missing_image(tmp_path):
    write_ijb(tmp_path, np.random.RandomState(2))
    os.remove(tmp_path / "loose_crop" / "c.png")
    arg, aux = tiny_params((112, 112))
    emb = Embedder(tiny_symbol(), arg, aux, [mx.cpu()], 4)
    with pytest.raises(FaceKDError, match=r"loose_crop/c.png"):
        ijb.evaluate_ijb(emb, str(tmp_path), "IJBX")
