"""Targets whose pairs share images (as LFW's do): each distinct image is decoded and embedded once, and
every number equals that of embedding all 2P pair slots, computed here per slot in float64 NumPy."""
import cv2
import numpy as np
import pytest
from sklearn.model_selection import KFold

from facekd.data.binfile import save_bin
from facekd.errors import FaceKDError
from facekd.evaluation import verification as V

from evalhelpers import SIZE, load_script

DISTINCT, PAIRS, EMB = 7, 30, 5


class CountingEmbedder:
    """A deterministic, flip-sensitive fake network: an integer projection of the pixels (exact in float32),
    counting the rows it is given and keeping them."""

    def __init__(self, batch_size=4, seed=0):
        self.batch_size, self.emb_size = batch_size, EMB
        self.weights = np.random.RandomState(seed).randint(-3, 4, size=(SIZE[0] * SIZE[1] * 3, EMB))
        self.rows = []

    def embed(self, images):
        images = np.asarray(images)
        self.rows.extend(images)
        return project(images, self.weights).astype(np.float32)


def project(images, weights):
    """The fake network's output of uint8 images, in integers: the same whatever the batch."""
    return np.asarray(images, dtype=np.int64).reshape(len(images), -1) @ weights


def encode_png(rgb):
    ok, buf = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    assert ok
    return buf.tobytes()


def shared_target(path, seed=0):
    """A .bin of PAIRS pairs over DISTINCT images (pairs share images, some pairs repeat one image on both
    sides); returns (the RGB image of each of the 2P slots, issame)."""
    rng = np.random.RandomState(seed)
    pictures = [rng.randint(0, 256, size=SIZE + (3,)).astype(np.uint8) for _ in range(DISTINCT)]
    payloads = [encode_png(p) for p in pictures]
    slots = rng.randint(0, DISTINCT, size=2 * PAIRS)
    slots[:4] = [0, 0, 1, 0]  # a pair of one image, and image 0 in three slots
    bins = [bytes(payloads[s]) for s in slots]  # equal bytes, separate objects
    issame = [bool(k % 2 == 0) for k in range(PAIRS)]
    save_bin(str(path), bins, issame)
    decoded = [cv2.imdecode(np.frombuffer(b, np.uint8), cv2.IMREAD_COLOR)[..., ::-1] for b in bins]
    return np.stack(decoded), np.array(issame), len(set(slots.tolist()))


# ----------------------------------------------------------------------------- float64 reference per slot

def reference(slot_images, issame, weights, nfolds=10):
    """XNorm, fold accuracies, best thresholds, VAL and FAR of the protocol over every slot."""
    orig = project(slot_images, weights).astype(np.float64)
    flip = project(slot_images[:, :, ::-1], weights).astype(np.float64)
    xnorm = np.mean([np.sqrt(np.sum(v * v)) for v in np.concatenate([orig, flip])])
    score = orig + flip
    score = score / np.sqrt(np.sum(score * score, axis=1, keepdims=True))
    dist = np.array([np.sum((score[2 * i] - score[2 * i + 1]) ** 2) for i in range(len(issame))])
    acc_thr, val_thr = np.arange(0, 4, 0.01), np.arange(0, 4, 0.001)
    accuracies, best, vals, fars = [], [], [], []
    for train, test in KFold(n_splits=nfolds, shuffle=False).split(dist):
        train_acc = [np.mean((dist[train] < t) == issame[train]) for t in acc_thr]
        b = int(np.argmax(train_acc))
        best.append(acc_thr[b])
        accuracies.append(np.mean((dist[test] < acc_thr[b]) == issame[test]))
        far = [np.mean(dist[train][~issame[train]] < t) for t in val_thr]
        t = interpolated_threshold(far, val_thr, 1e-3)
        vals.append(np.mean(dist[test][issame[test]] < t))
        fars.append(np.mean(dist[test][~issame[test]] < t))
    return xnorm, np.array(accuracies), np.array(best), np.mean(vals), np.mean(fars)


def interpolated_threshold(far, thresholds, target):
    """Walk the FAR curve: the last threshold at or below ``target``, moved linearly towards the next one."""
    if max(far) < target:
        return 0.0
    chosen = thresholds[0]
    for i, f in enumerate(far):
        if f > target:
            break
        chosen = thresholds[i]
        if i + 1 < len(far) and far[i + 1] > target and f < target:
            return thresholds[i] + (target - f) / (far[i + 1] - f) * (thresholds[i + 1] - thresholds[i])
    return chosen


# ----------------------------------------------------------------------------- tests

def test_distinct_images_embedded_once_with_the_numbers_of_every_slot(tmp_path):
    slot_images, issame, distinct = shared_target(tmp_path / "shared.bin")
    vset = V.load_target(str(tmp_path / "shared.bin"), SIZE)
    assert len(vset.images) == distinct < 2 * PAIRS and vset.num_slots == 2 * PAIRS
    np.testing.assert_array_equal(vset.images[vset.slots], slot_images)  # every slot finds its picture
    assert len({img.tobytes() for img in vset.images}) == distinct

    embedder = CountingEmbedder(batch_size=4)
    res = V.evaluate(embedder, vset, batch_size=4)
    assert len(embedder.rows) == 2 * distinct  # the distinct images and their flips, nothing more
    shown = {img.tobytes() for img in embedder.rows}
    assert shown == {img.tobytes() for img in vset.images} | {img[:, ::-1].tobytes() for img in vset.images}

    xnorm, accuracies, best, val, far = reference(slot_images, issame, embedder.weights)
    assert res.xnorm == pytest.approx(xnorm, rel=1e-12)
    np.testing.assert_allclose(res.fold_accuracies, accuracies, atol=1e-12)
    np.testing.assert_allclose(res.best_thresholds, best, atol=1e-12)
    assert res.acc == pytest.approx(np.mean(accuracies)) and res.std == pytest.approx(np.std(accuracies))
    assert res.val == pytest.approx(val) and res.far == pytest.approx(far)
    # the repeated slots weigh in: XNorm over the distinct images alone differs
    once = np.linalg.norm(project(vset.images, embedder.weights).astype(np.float64), axis=1)
    once_flip = np.linalg.norm(project(vset.images[:, :, ::-1], embedder.weights).astype(np.float64), axis=1)
    assert abs(np.mean(np.r_[once, once_flip]) - xnorm) > 1e-6 * xnorm


def test_raw_embeddings_per_distinct_image_or_per_slot(tmp_path):
    slot_images, issame, distinct = shared_target(tmp_path / "shared.bin", seed=3)
    vset = V.load_target(str(tmp_path / "shared.bin"), SIZE)
    weights = CountingEmbedder(seed=3).weights
    per_image = (project(vset.images, weights), project(vset.images[:, :, ::-1], weights))
    per_slot = (project(slot_images, weights), project(slot_images[:, :, ::-1], weights))
    a, b = V.evaluate(per_image, vset), V.evaluate(per_slot, vset)
    xnorm, accuracies, best, _, _ = reference(slot_images, issame, weights)
    for res in (a, b):
        assert res.xnorm == pytest.approx(xnorm, rel=1e-12)
        np.testing.assert_allclose(res.fold_accuracies, accuracies, atol=1e-12)
        np.testing.assert_allclose(res.best_thresholds, best, atol=1e-12)
    with pytest.raises(FaceKDError, match=rf"^shared: {distinct + 1} embeddings for {PAIRS} pairs; expected "
                                          rf"{distinct} \(one per distinct image\) or {2 * PAIRS}"):
        V.evaluate(np.ones((distinct + 1, EMB)), vset)
    with pytest.raises(FaceKDError, match="^shared: .* flipped embeddings"):
        V.evaluate((per_image[0], per_slot[1][:-1]), vset)


def test_target_without_repeats_keeps_one_image_per_slot(tmp_path):
    rng = np.random.RandomState(1)
    pictures = [rng.randint(0, 256, size=SIZE + (3,)).astype(np.uint8) for _ in range(20)]
    save_bin(str(tmp_path / "plain.bin"), [encode_png(p) for p in pictures], [True, False] * 5)
    vset = V.load_target(str(tmp_path / "plain.bin"), SIZE)
    np.testing.assert_array_equal(vset.slots, np.arange(20))
    np.testing.assert_array_equal(vset.images, np.stack(pictures))


def test_command_names_the_distinct_images(tmp_path, checkpoint, capsys):
    prefix, epoch = checkpoint
    data = tmp_path / "data"
    data.mkdir()
    _, _, distinct = shared_target(data / "shared.bin")
    script = load_script("verification")
    assert script.main(["--data-dir", str(data), "--model", f"{prefix},{epoch}", "--target", "shared",
                        "--batch-size", "4", "--image-size", "8,8"]) == 0
    out = capsys.readouterr().out
    assert (f"[shared] {PAIRS} pairs hold {distinct} distinct images: each is embedded once (with its flip) "
            f"for its {2 * PAIRS} pair slots") in out
    assert len(V.parse_verification_rows(out.splitlines())) == 1
