"""The verification protocol against hand-computed cases and an independent brute-force reference."""
import numpy as np
import pytest
from sklearn.model_selection import KFold

from facekd.errors import FaceKDError
from facekd.evaluation import verification as V
from facekd.vectors import normalize_rows

from evalhelpers import SIZE, write_target


def pairs_at_distances(dists):
    """Unit 2-D embeddings (2P, 2) whose pair i has squared Euclidean distance dists[i]."""
    out = []
    for k, d in enumerate(dists):
        base = 0.37 * k  # rotate each pair differently
        theta = np.arccos(1.0 - d / 2.0)  # |a - b|^2 = 2 - 2 cos(theta) for unit vectors
        out += [[np.cos(base), np.sin(base)], [np.cos(base + theta), np.sin(base + theta)]]
    return np.array(out)


# ----------------------------------------------------------------------------- brute force reference

def ref_accuracy(threshold, dist, issame):
    predict = dist < threshold
    tp = np.sum(predict & issame)
    fp = np.sum(predict & ~issame)
    tn = np.sum(~predict & ~issame)
    fn = np.sum(~predict & issame)
    tpr = 0.0 if tp + fn == 0 else tp / (tp + fn)
    fpr = 0.0 if fp + tn == 0 else fp / (fp + tn)
    return tpr, fpr, (tp + tn) / dist.size


def ref_val_far(threshold, dist, issame):
    predict = dist < threshold
    return np.sum(predict & issame) / np.sum(issame), np.sum(predict & ~issame) / np.sum(~issame)


def ref_threshold(far, thresholds, target):
    """Scan the piecewise-linear FAR curve for the largest threshold with FAR <= target."""
    if max(far) < target:
        return 0.0
    best = thresholds[0]
    for i in range(len(far)):
        if far[i] <= target:
            best = thresholds[i]
            if i + 1 < len(far) and far[i + 1] > target:
                best = thresholds[i] + (thresholds[i + 1] - thresholds[i]) * (target - far[i]) / (far[i + 1] - far[i])
                break
        else:
            break
    return best


def ref_protocol(emb, issame, nfolds):
    emb = np.asarray(emb, dtype=np.float64)
    dist = np.sum((emb[0::2] - emb[1::2]) ** 2, axis=1)
    idx = np.arange(len(dist))
    thresholds = np.arange(0, 4, 0.01)
    acc, tprs, fprs = [], [], []
    for train, test in KFold(n_splits=nfolds, shuffle=False).split(idx):
        acc_train = [ref_accuracy(t, dist[train], issame[train])[2] for t in thresholds]
        b = int(np.argmax(acc_train))
        rows = [ref_accuracy(t, dist[test], issame[test]) for t in thresholds]
        tprs.append([r[0] for r in rows])
        fprs.append([r[1] for r in rows])
        acc.append(ref_accuracy(thresholds[b], dist[test], issame[test])[2])
    vthr = np.arange(0, 4, 0.001)
    val = []
    for train, test in KFold(n_splits=nfolds, shuffle=False).split(idx):
        far = [ref_val_far(t, dist[train], issame[train])[1] for t in vthr]
        val.append(ref_val_far(ref_threshold(far, vthr, 1e-3), dist[test], issame[test])[0])
    return np.array(acc), np.mean(tprs, 0), np.mean(fprs, 0), np.array(val)


# ----------------------------------------------------------------------------- tests

@pytest.mark.parametrize("n,k", [(10, 10), (13, 10), (25, 10), (6000, 10), (7, 3)])
def test_kfold_matches_sklearn(n, k):
    ours = V.kfold(n, k)
    theirs = list(KFold(n_splits=k, shuffle=False).split(np.arange(n)))
    assert len(ours) == len(theirs)
    for (a, b), (c, d) in zip(ours, theirs):
        np.testing.assert_array_equal(a, c)
        np.testing.assert_array_equal(b, d)
    train, test = V.kfold(5, 1)[0]
    np.testing.assert_array_equal(train, np.arange(5))
    np.testing.assert_array_equal(test, np.arange(5))
    with pytest.raises(FaceKDError, match="--nfolds"):
        V.kfold(5, 6)


def test_perfectly_separable():
    issame = np.array([True, False] * 20)
    dists = np.where(issame, 0.4995, 1.9995)
    res = V.evaluate_embeddings(pairs_at_distances(dists), issame)
    assert res.acc == 1.0 and res.std == 0.0
    # the first threshold of the grid above 0.4995 wins on every fold
    np.testing.assert_allclose(res.best_thresholds, 0.5)
    # FAR jumps from 0 (t = 1.999) to 1 (t = 2.000): threshold 1.999001 accepts every same pair only
    assert res.val == 1.0 and res.val_std == 0.0 and res.far == 0.0
    t = V.ACC_THRESHOLDS
    np.testing.assert_array_equal(res.tpr, (t > 0.4995).astype(float))
    np.testing.assert_array_equal(res.fpr, (t > 1.9995).astype(float))


def test_hand_computed_folds():
    # 20 pairs, even = same (0.3055), odd = different (1.0055); pair 0 is a hard positive
    # (1.5055), pair 3 a hard negative (0.2055). 10 folds of two pairs each.
    issame = np.array([True, False] * 10)
    dists = np.where(issame, 0.3055, 1.0055)
    dists[0], dists[3] = 1.5055, 0.2055
    res = V.evaluate_embeddings(pairs_at_distances(dists), issame)
    # every fold trains to threshold 0.31; fold 0 misses the hard positive, fold 1 the hard negative
    np.testing.assert_allclose(res.best_thresholds, 0.31)
    np.testing.assert_allclose(res.fold_accuracies, [0.5, 0.5] + [1.0] * 8)
    assert res.acc == pytest.approx(0.9) and res.std == pytest.approx(0.2)
    # VAL: folds with the hard negative in training stop at 0.205009 (no same pair accepted);
    # fold 1 trains without it, stops at 1.005001 and accepts both of its pairs
    assert res.val == pytest.approx(0.1) and res.val_std == pytest.approx(0.3) and res.far == pytest.approx(0.1)
    i = int(np.argmin(np.abs(V.ACC_THRESHOLDS - 0.31)))
    assert res.tpr[i] == pytest.approx(0.9) and res.fpr[i] == pytest.approx(0.1)
    far = np.r_[np.zeros(206), np.full(800, 1 / 9), np.ones(3994)]
    assert V.far_threshold(far, V.VAL_THRESHOLDS, 1e-3) == pytest.approx(0.205009)


@pytest.mark.parametrize("seed,nfolds", [(0, 10), (2, 5)])
def test_matches_brute_force_reference(seed, nfolds):
    rng = np.random.RandomState(seed)
    n_pairs = 120
    issame = rng.rand(n_pairs) < 0.5
    base = rng.randn(n_pairs, 16)
    other = np.where(issame[:, None], base + 0.9 * rng.randn(n_pairs, 16), rng.randn(n_pairs, 16))
    emb = normalize_rows(np.stack([base, other], 1).reshape(-1, 16))
    res = V.evaluate_embeddings(emb, issame, nfolds)
    acc, tpr, fpr, val = ref_protocol(emb, issame, nfolds)
    np.testing.assert_allclose(res.fold_accuracies, acc)
    np.testing.assert_allclose(res.tpr, tpr)
    np.testing.assert_allclose(res.fpr, fpr)
    assert res.val == pytest.approx(val.mean()) and res.val_std == pytest.approx(val.std())
    assert 0.6 < res.acc < 1.0  # a case that is neither trivial nor random


def test_xnorm_and_flip_combination():
    orig = np.array([[3.0, 4.0], [0.0, 2.0]])
    flip = np.array([[6.0, 8.0], [1.0, 0.0]])
    emb, xnorm = V.flip_embeddings(orig, flip)
    assert xnorm == pytest.approx((5 + 2 + 10 + 1) / 4)
    np.testing.assert_allclose(emb, [[0.6, 0.8], [1 / np.sqrt(5), 2 / np.sqrt(5)]])


def test_flip_batching_equals_one_at_a_time(make_embedder):
    images = np.random.RandomState(0).randint(0, 256, size=(7,) + SIZE + (3,)).astype(np.uint8)
    batched = make_embedder(batch_size=4, contexts=2)
    orig, flip = V.embed_with_flip(batched, images)
    single = make_embedder(batch_size=1)
    ref_orig = np.concatenate([single.embed(img[None]) for img in images])
    ref_flip = np.concatenate([single.embed(img[None, :, ::-1]) for img in images])
    np.testing.assert_allclose(orig, ref_orig, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(flip, ref_flip, rtol=1e-5, atol=1e-5)
    assert np.abs(orig - flip).max() > 1e-2  # the network is not flip-invariant: the test means something
    # odd batch size: one padded slot per forward
    orig3, flip3 = V.embed_with_flip(make_embedder(batch_size=3), images)
    np.testing.assert_allclose(orig3, ref_orig, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(flip3, ref_flip, rtol=1e-5, atol=1e-5)


def test_load_target_and_evaluate_model(tmp_path, make_embedder):
    rng = np.random.RandomState(5)
    images, issame = write_target(tmp_path / "synth_easy.bin", rng, odd_size=(10, 12))
    vset = V.load_target(str(tmp_path / "synth_easy.bin"), SIZE)
    assert vset.name == "synth_easy" and vset.images.dtype == np.uint8
    np.testing.assert_array_equal(vset.images, images)
    np.testing.assert_array_equal(vset.issame, issame)
    emb = make_embedder(batch_size=4)
    res = V.evaluate(emb, vset, batch_size=4)
    single = make_embedder(batch_size=1)
    orig = np.concatenate([single.embed(img[None]) for img in images])
    flip = np.concatenate([single.embed(img[None, :, ::-1]) for img in images])
    xnorm = np.mean(np.r_[np.linalg.norm(orig.astype(np.float64), axis=1), np.linalg.norm(flip, axis=1)])
    assert res.xnorm == pytest.approx(xnorm, rel=1e-5)
    ref = V.evaluate_embeddings(normalize_rows(orig.astype(np.float64) + flip), issame, 10)
    assert res.acc == pytest.approx(ref.acc) and res.std == pytest.approx(ref.std)
    assert V.find_targets(str(tmp_path), ["lfw", "synth_easy", "synth_age"]) == [str(tmp_path / "synth_easy.bin")]
    with pytest.raises(FaceKDError, match="lfw.bin not found"):
        V.load_target(str(tmp_path / "lfw.bin"))


def test_format_log_lines():
    res = V.VerificationResult(0.9945, 0.0035, 21.35453, 0.9, 0.01, 0.001, None, None, None, None)
    assert V.format_log("lfw", 2000, res) == ["[lfw][2000]XNorm: 21.354530",
                                              "[lfw][2000]Accuracy-Flip: 0.99450+-0.00350"]


def test_embedding_count_mismatch():
    with pytest.raises(FaceKDError, match="expected twice as many"):
        V.evaluate_embeddings(np.zeros((6, 2)), [True, False])


def test_printed_rows_parse_back():
    """The rows verification.py prints are read back (by the bench harness) with the same numbers."""
    result = V.evaluate_embeddings(np.random.default_rng(0).normal(size=(40, 8)), [True, False] * 10, 5)
    line = V.format_row("./models/y1/model,1", "lfw", result)
    rows = V.parse_verification_rows(["noise\n", line + "\n", "[lfw]x\tXNorm: nan-ish\tAccuracy-Flip: a\n"])
    assert len(rows) == 1
    row = rows[0]
    assert (row.model, row.target) == ("./models/y1/model,1", "lfw")
    assert row.acc == pytest.approx(result.acc, abs=5e-6) and row.std == pytest.approx(result.std, abs=5e-6)
