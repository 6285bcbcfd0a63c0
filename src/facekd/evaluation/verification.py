"""THE pair-verification protocol on ``<target>.bin`` files (insightface's protocol).

A target is decoded once into a uint8 (U, H, W, 3) array of its distinct images and kept:
targets reuse images across pairs (LFW's 12,000 pair slots hold about 7,700 images), and
identical encoded bytes are one image, decoded and embedded once. Originals and their
horizontal flips go through the network in the same batches; the raw embeddings are then
expanded to the 2P pair slots, so every number is that of embedding each slot: XNorm is
the mean L2 norm of all 2P x 2 raw embeddings; the score embedding is ``normalise(orig + flip)``;
distance is squared Euclidean; accuracy is the 10-fold (contiguous folds) accuracy
at the threshold chosen on the other nine folds; VAL is taken at FAR = 1e-3.
"""
import os
from dataclasses import dataclass

import numpy as np

from ..errors import FaceKDError
from ..vectors import normalize_rows

ACC_THRESHOLDS = np.arange(0, 4, 0.01)
VAL_THRESHOLDS = np.arange(0, 4, 0.001)
VAL_FAR = 1e-3


@dataclass
class VerificationSet:
    """A decoded target: ``images`` uint8 (U, H, W, 3) RGB, its distinct images; ``slots`` (2P,) int maps
    pair slot k to its row of ``images``: pair i = images[slots[2i]], images[slots[2i+1]].

    ``slots`` defaults to ``arange(len(images))`` (every slot its own image, U = 2P).
    """
    name: str
    images: np.ndarray
    issame: np.ndarray
    path: str = ""
    slots: np.ndarray = None

    def __post_init__(self):
        if self.slots is None:
            if len(self.images) != 2 * len(self.issame):
                raise FaceKDError(f"{self.name}: {len(self.images)} images for {len(self.issame)} pairs (expected "
                                  "twice as many, or slots naming the images of each pair)")
            self.slots = np.arange(len(self.images))
        self.slots = np.asarray(self.slots, dtype=np.int64)
        if self.slots.shape != (2 * len(self.issame),):
            raise FaceKDError(f"{self.name}: {self.slots.size} pair slots for {len(self.issame)} pairs "
                              "(expected twice as many)")
        if len(self.slots) and (self.slots.min() < 0 or self.slots.max() >= len(self.images)):
            raise FaceKDError(f"{self.name}: a pair slot names an image outside 0..{len(self.images) - 1}")

    @property
    def num_pairs(self):
        return len(self.issame)

    @property
    def num_slots(self):
        """2P: the images of the pairs, repeated ones counted each time."""
        return len(self.slots)

    @property
    def slots_are_rows(self):
        """True when slot k is image k (no image repeated)."""
        return len(self.images) == self.num_slots and np.array_equal(self.slots, np.arange(self.num_slots))

    def per_slot(self, rows, what="embeddings"):
        """``rows`` of the distinct images (U rows) expanded to the 2P slots; 2P rows are returned as they are."""
        rows = np.asarray(rows)
        if len(rows) == len(self.images):
            return rows if self.slots_are_rows else rows[self.slots]
        if len(rows) == self.num_slots:
            return rows
        expected = (f"{self.num_slots}" if len(self.images) == self.num_slots
                    else f"{len(self.images)} (one per distinct image) or {self.num_slots} (one per pair slot)")
        raise FaceKDError(f"{self.name}: {len(rows)} {what} for {self.num_pairs} pairs; expected {expected}")


@dataclass
class VerificationResult:
    """Fold accuracies summarised, XNorm, VAL @ FAR, and the fold-averaged ROC over ACC_THRESHOLDS."""
    acc: float
    std: float
    xnorm: float
    val: float
    val_std: float
    far: float
    tpr: np.ndarray
    fpr: np.ndarray
    best_thresholds: np.ndarray
    fold_accuracies: np.ndarray


# ----------------------------------------------------------------------------- targets

def target_path(data_dir, name):
    return os.path.join(data_dir, f"{name}.bin")


def find_targets(data_dir, names):
    """Paths of the ``<name>.bin`` files present in ``data_dir``, in the order of ``names``."""
    return [target_path(data_dir, n) for n in names if os.path.isfile(target_path(data_dir, n))]


def fit_image(rgb, image_size, source="image"):
    """An RGB uint8 image as (h, w, 3), resized (bilinear) when its size differs."""
    import cv2

    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise FaceKDError(f"{source}: expected an RGB uint8 image, got shape {rgb.shape} dtype {rgb.dtype}")
    h, w = image_size
    if rgb.shape[:2] != (h, w):
        rgb = cv2.resize(rgb, (w, h), interpolation=cv2.INTER_LINEAR)
    return rgb


def distinct_payloads(bins):
    """(distinct payloads in first-seen order, slots): ``bins[k] == distinct[slots[k]]``; identical encoded
    bytes are the same image."""
    row_of, distinct = {}, []
    slots = np.empty(len(bins), dtype=np.int64)
    for k, payload in enumerate(bins):
        row = row_of.setdefault(payload, len(distinct))
        if row == len(distinct):
            distinct.append(payload)
        slots[k] = row
    return distinct, slots


def load_target(path, image_size=(112, 112), name=None, progress=True):
    """Decode every distinct image of a ``.bin`` target once (resized to ``image_size`` if needed)."""
    from tqdm import tqdm

    from ..data.binfile import load_bin
    from ..data.images import decode

    if not os.path.isfile(path):
        raise FaceKDError(f"verification target {path} not found; check --data-dir and --target")
    name = name or os.path.splitext(os.path.basename(path))[0]
    bins, issame = load_bin(path)
    if len(issame) == 0:
        raise FaceKDError(f"{path}: the target holds no pairs")
    distinct, slots = distinct_payloads(bins)
    first_slot = np.full(len(distinct), len(slots), dtype=np.int64)
    np.minimum.at(first_slot, slots, np.arange(len(slots)))  # named in errors by its first place in the file
    h, w = image_size
    images = np.empty((len(distinct), h, w, 3), dtype=np.uint8)
    for u, payload in enumerate(tqdm(distinct, desc=f"decode {name}", unit="img", leave=False,
                                     disable=not progress or len(distinct) < 2000)):
        i = int(first_slot[u])
        try:
            rgb = decode(payload)
        except FaceKDError as exc:
            raise FaceKDError(f"{path}: image {i}: {exc}") from None
        images[u] = fit_image(rgb, image_size, f"{path}: image {i}")
    return VerificationSet(name, images, np.asarray(issame, dtype=bool), path, slots)


# ----------------------------------------------------------------------------- embedding

def embed_with_flip(embedder, images, progress=None):
    """(orig, flip) raw embeddings of uint8 NHWC images; each batch holds originals and their flips."""
    from tqdm import tqdm

    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[3] != 3:
        raise FaceKDError(f"flip batching takes uint8 RGB (N, H, W, 3) images, got {images.dtype} {images.shape}")
    n = len(images)
    half = max(1, embedder.batch_size // 2)
    orig = np.empty((n, embedder.emb_size), dtype=np.float32)
    flip = np.empty_like(orig)
    steps = range(0, n, half)
    for start in tqdm(steps, desc=progress or "embed", unit="batch", leave=False,
                      disable=not progress or len(steps) < 10):
        chunk = images[start:start + half]
        count = len(chunk)
        emb = embedder.embed(np.concatenate([chunk, chunk[:, :, ::-1]]))
        orig[start:start + count] = emb[:count]
        flip[start:start + count] = emb[count:]
    return orig, flip


def flip_embeddings(orig, flip=None):
    """(score embeddings, XNorm): ``normalise(orig + flip)`` and the mean raw L2 norm of all embeddings."""
    orig = np.asarray(orig, dtype=np.float64)
    if flip is None:
        return normalize_rows(orig), float(np.linalg.norm(orig, axis=1).mean())
    flip = np.asarray(flip, dtype=np.float64)
    if flip.shape != orig.shape:
        raise FaceKDError(f"flipped embeddings {flip.shape} do not match the originals {orig.shape}")
    xnorm = float(np.concatenate([np.linalg.norm(orig, axis=1), np.linalg.norm(flip, axis=1)]).mean())
    return normalize_rows(orig + flip), xnorm


# ----------------------------------------------------------------------------- metrics

def kfold(n, nfolds):
    """Contiguous folds as sklearn's KFold(shuffle=False): list of (train, test) index arrays.

    With ``nfolds == 1`` the single fold trains and tests on everything (insightface's LFold).
    """
    if nfolds < 1:
        raise FaceKDError(f"--nfolds must be >= 1, got {nfolds}")
    if nfolds > n:
        raise FaceKDError(f"--nfolds {nfolds} is larger than the number of pairs {n}")
    idx = np.arange(n)
    if nfolds == 1:
        return [(idx, idx)]
    sizes = np.full(nfolds, n // nfolds)
    sizes[: n % nfolds] += 1
    folds, start = [], 0
    for size in sizes:
        test = idx[start:start + size]
        folds.append((np.concatenate([idx[:start], idx[start + size:]]), test))
        start += size
    return folds


def _counts(dist, issame, thresholds):
    """(tp, fp, n_same, n_diff) per threshold, "same" meaning dist < threshold."""
    same = np.sort(dist[issame])
    diff = np.sort(dist[~issame])
    tp = np.searchsorted(same, thresholds, side="left")
    fp = np.searchsorted(diff, thresholds, side="left")
    return tp, fp, len(same), len(diff)


def _rates(tp, fp, n_same, n_diff):
    tpr = tp / n_same if n_same else np.zeros(len(tp))
    fpr = fp / n_diff if n_diff else np.zeros(len(fp))
    return tpr, fpr


def roc_folds(dist, issame, thresholds=ACC_THRESHOLDS, nfolds=10):
    """insightface's calculate_roc: (tpr, fpr averaged over folds, fold accuracies, best thresholds)."""
    dist = np.asarray(dist, dtype=np.float64)
    issame = np.asarray(issame, dtype=bool)
    thresholds = np.asarray(thresholds, dtype=np.float64)
    folds = kfold(len(dist), nfolds)
    tprs = np.zeros((len(folds), len(thresholds)))
    fprs = np.zeros_like(tprs)
    accuracy = np.zeros(len(folds))
    best = np.zeros(len(folds))
    for f, (train, test) in enumerate(folds):
        tp, fp, n_same, n_diff = _counts(dist[train], issame[train], thresholds)
        acc_train = (tp + (n_diff - fp)) / len(train)
        b = int(np.argmax(acc_train))
        tp, fp, n_same, n_diff = _counts(dist[test], issame[test], thresholds)
        tprs[f], fprs[f] = _rates(tp, fp, n_same, n_diff)
        accuracy[f] = (tp[b] + n_diff - fp[b]) / len(test)
        best[f] = thresholds[b]
    return tprs.mean(0), fprs.mean(0), accuracy, best


def _val_far(threshold, dist, issame):
    tp, fp, n_same, n_diff = _counts(dist, issame, np.array([threshold]))
    val, far = _rates(tp, fp, n_same, n_diff)
    return float(val[0]), float(far[0])


def far_threshold(far_train, thresholds, far_target):
    """The largest threshold whose FAR, linearly interpolated between grid points, is <= ``far_target``.

    insightface interpolates ``interp1d(far, thresholds, 'slinear')``, which fails on the runs of
    equal FAR that a step curve always has; on duplicate-free curves both agree. 0 when the
    target FAR is never reached (as insightface).
    """
    far = np.asarray(far_train, dtype=np.float64)
    thr = np.asarray(thresholds, dtype=np.float64)
    if far.max() < far_target:
        return 0.0
    i = int(np.searchsorted(far, far_target, side="right")) - 1  # FAR is non-decreasing
    if i < 0:
        return float(thr[0])
    if i == len(far) - 1 or far[i] == far_target:
        return float(thr[i])
    return float(thr[i] + (far_target - far[i]) / (far[i + 1] - far[i]) * (thr[i + 1] - thr[i]))


def val_at_far(dist, issame, far_target=VAL_FAR, thresholds=VAL_THRESHOLDS, nfolds=10):
    """insightface's calculate_val: (mean VAL, std VAL, mean FAR) over the folds."""
    dist = np.asarray(dist, dtype=np.float64)
    issame = np.asarray(issame, dtype=bool)
    thresholds = np.asarray(thresholds, dtype=np.float64)
    folds = kfold(len(dist), nfolds)
    val = np.zeros(len(folds))
    far = np.zeros(len(folds))
    for f, (train, test) in enumerate(folds):
        tp, fp, n_same, n_diff = _counts(dist[train], issame[train], thresholds)
        _, far_train = _rates(tp, fp, n_same, n_diff)
        threshold = far_threshold(far_train, thresholds, far_target)
        val[f], far[f] = _val_far(threshold, dist[test], issame[test])
    return float(val.mean()), float(val.std()), float(far.mean())


def pair_distances(embeddings):
    """Squared Euclidean distance of each pair (rows 2i and 2i+1)."""
    e = np.asarray(embeddings, dtype=np.float64)
    if len(e) % 2:
        raise FaceKDError(f"{len(e)} embeddings cannot form pairs (expected an even number)")
    return np.sum(np.square(e[0::2] - e[1::2]), axis=1)


def evaluate_embeddings(embeddings, issame, nfolds=10, xnorm=float("nan")):
    """The protocol on ready score embeddings (2P, d) (already normalised)."""
    issame = np.asarray(issame, dtype=bool)
    if len(embeddings) != 2 * len(issame):
        raise FaceKDError(f"{len(embeddings)} embeddings for {len(issame)} pairs (expected twice as many)")
    dist = pair_distances(embeddings)
    tpr, fpr, accuracy, best = roc_folds(dist, issame, ACC_THRESHOLDS, nfolds)
    val, val_std, far = val_at_far(dist, issame, VAL_FAR, VAL_THRESHOLDS, nfolds)
    return VerificationResult(float(accuracy.mean()), float(accuracy.std()), xnorm, val, val_std, far,
                              tpr, fpr, best, accuracy)


def evaluate(embedder_or_embeddings, vset, batch_size=None, nfolds=10, progress=False):
    """Evaluate a model (an Embedder) or raw embeddings on a VerificationSet.

    An Embedder embeds each distinct image (and its flip) once. Raw embeddings are either
    ``(orig, flip)`` arrays or one (N, d) array (no flip), with N = U (one row per distinct image,
    expanded by ``vset.slots``) or N = 2P (one per pair slot). Every number (XNorm included) is
    computed over the 2P slots, as if each slot had been embedded.
    ``batch_size`` is the Embedder's own (kept for the call signature; it must match when given).
    """
    source = embedder_or_embeddings
    if hasattr(source, "embed"):
        if batch_size is not None and batch_size != source.batch_size:
            raise FaceKDError(f"batch size {batch_size} differs from the embedder's {source.batch_size}")
        orig, flip = embed_with_flip(source, vset.images, progress=f"embed {vset.name}" if progress else None)
    elif isinstance(source, (tuple, list)) and len(source) == 2:
        orig, flip = source
    else:
        orig, flip = source, None
    orig = vset.per_slot(orig)
    flip = None if flip is None else vset.per_slot(flip, "flipped embeddings")
    embeddings, xnorm = flip_embeddings(orig, flip)
    return evaluate_embeddings(embeddings, vset.issame, nfolds, xnorm)


# ----------------------------------------------------------------------------- logs

def format_log(name, step, result):
    """The two log lines users grep for: ``[lfw][2000]XNorm: ...`` and ``[lfw][2000]Accuracy-Flip: ...``."""
    return [f"[{name}][{step}]XNorm: {result.xnorm:f}",
            f"[{name}][{step}]Accuracy-Flip: {result.acc:1.5f}+-{result.std:1.5f}"]


_XNORM = "XNorm: "


def format_row(model, name, result):
    """One row of the standalone command: model, target, XNorm, Accuracy-Flip, VAL @ FAR."""
    return (f"[{name}]{model}\t{_XNORM}{result.xnorm:f}\tAccuracy-Flip: {result.acc:1.5f}+-{result.std:1.5f}"
            f"\tVAL@FAR={VAL_FAR:g}: {result.val:1.5f}+-{result.val_std:1.5f} (FAR {result.far:1.5f})")


def cosine_threshold(result):
    """The folds' threshold as a cosine of unit embeddings: ``1 - d / 2`` for their mean squared distance ``d``
    (``|a - b|^2 = 2 - 2 cos``; "same" when the distance is below ``d``, i.e. the cosine above this)."""
    return 1.0 - float(np.mean(result.best_thresholds)) / 2.0


def format_threshold(model, name, result):
    """The line after each row: the threshold chosen, as the cosine ``compare.py --threshold`` takes."""
    d = float(np.mean(result.best_thresholds))
    return (f"[{name}]{model}\tthreshold: cosine > {cosine_threshold(result):.4f} (squared distance < {d:.4f}, "
            f"mean of the {len(result.best_thresholds)} folds' choices)")


@dataclass
class VerificationRow:
    """One row printed by recognition/eval/verification.py."""
    model: str
    target: str
    xnorm: float
    acc: float
    std: float


def parse_verification_rows(lines):
    """The :class:`VerificationRow` of every :func:`format_row` line among ``lines`` (other lines skipped)."""
    rows = []
    for line in lines:
        fields = line.rstrip("\n").split("\t")
        if len(fields) < 3 or not fields[0].startswith("[") or "]" not in fields[0]:
            continue
        if not fields[1].startswith(_XNORM) or not fields[2].startswith("Accuracy-Flip: "):
            continue
        target, _, model = fields[0][1:].partition("]")
        acc_text = fields[2][len("Accuracy-Flip: "):]
        try:
            acc, std = (float(v) for v in acc_text.split("+-"))
            xnorm = float(fields[1][len(_XNORM):])
        except ValueError:
            continue
        rows.append(VerificationRow(model, target, xnorm, acc, std))
    return rows


# ----------------------------------------------------------------------------- command

def verify_models(models, data_dir, targets, batch_size, contexts, nfolds=10, image_size=(112, 112),
                  report=print):
    """Evaluate each ``(prefix, epoch)`` on each target; ``report`` gets one row per model and target.

    Every target and checkpoint is checked before any work; targets are decoded once (each
    distinct image once) and each model is bound once; img/s counts the images embedded
    (distinct ones and their flips). Returns ``[(model label, target name, VerificationResult)]``.
    """
    import time

    from ..checkpoints import checkpoint_paths
    from ..embedder import Embedder

    if not os.path.isdir(data_dir):
        raise FaceKDError(f"--data-dir {data_dir} is not a folder")
    missing = [n for n in targets if not os.path.isfile(target_path(data_dir, n))]
    if missing:
        raise FaceKDError(f"--target: {', '.join(target_path(data_dir, n) for n in missing)} not found "
                          f"(present: {', '.join(_present_targets(data_dir)) or 'no .bin files'})")
    for prefix, epoch in models:
        for path in checkpoint_paths(prefix, epoch):
            if not os.path.isfile(path):
                raise FaceKDError(f"--model: checkpoint file {path} not found")
    sets = [load_target(target_path(data_dir, n), image_size, n) for n in targets]
    for vset in sets:
        if len(vset.images) < vset.num_slots:
            report(f"[{vset.name}] {vset.num_pairs} pairs hold {len(vset.images)} distinct images: each is "
                   f"embedded once (with its flip) for its {vset.num_slots} pair slots")
    rows = []
    for prefix, epoch in models:
        embedder = Embedder.from_checkpoint(prefix, epoch, contexts, batch_size, image_size)
        label = f"{prefix},{epoch}"
        for vset in sets:
            start = time.perf_counter()
            result = evaluate(embedder, vset, nfolds=nfolds, progress=True)
            seconds = time.perf_counter() - start
            rows.append((label, vset.name, result))
            report(f"{format_row(label, vset.name, result)}\t{2 * len(vset.images) / seconds:.1f} img/s")
            report(format_threshold(label, vset.name, result))
    return rows


def _present_targets(data_dir):
    return sorted(os.path.splitext(f)[0] for f in os.listdir(data_dir) if f.endswith(".bin"))
