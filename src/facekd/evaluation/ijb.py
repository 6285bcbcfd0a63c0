"""IJB-B / IJB-C template-based evaluation: 1:1 verification (TAR @ FAR) and 1:N identification.

Meta files (insightface's layout, ``<data_dir>/meta`` or ``<data_dir>`` itself; ``name`` = ijbb/ijbc):

* ``<name>_face_tid_mid.txt``        image, template id, media id
* ``<name>_name_5pts_score.txt``     image, 10 landmark values (x1 y1 ... x5 y5), detector score
* ``<name>_template_pair_label.txt`` template, template, 0/1
* optional 1:N: the gallery lists ``<name>_1N_gallery_G1.csv`` and ``_G2.csv`` (IJB-C; IJB-B's
  are ``_S1.csv`` and ``_S2.csv``) and ``<name>_1N_probe_mixed.csv`` (header line, then
  TEMPLATE_ID, SUBJECT_ID, ...)

Loose crops live in ``<data_dir>/loose_crop``. The steps follow insightface's
``recognition/_evaluation_/ijb/ijb_11.py`` (docs/evaluation.md names each one): every face is
aligned to the 112x112 template and embedded, original and flip; the image feature is the
flip sum (``use_flip_test``), kept at its norm (``use_norm_score``) or normalised, times the
detector score (``use_detector_score``); features are averaged per media, the media summed per
template and the sum L2-normalised; a pair's score is the cosine of its templates. TAR at a
FAR is the TPR of the point of scikit-learn's ROC nearest to that FAR. 1:N: ``ijb_search.py``.
"""
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from ..errors import FaceKDError
from ..vectors import normalize_rows
from .ijb_search import DEFAULT_PROTOCOL_1N, FPIRS, PROTOCOLS_1N, RANKS, lookup
from .verification import embed_with_flip

FARS = (1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1)
GALLERY_LISTS = {"ijbb": ("S1", "S2")}   # the 1:N gallery list names of a target ...
DEFAULT_GALLERY_LISTS = ("G1", "G2")     # ... and of every other (IJB-C's)


@dataclass(frozen=True)
class FeatureOptions:
    """insightface's three switches of ijb_11.py / ijb_1n.py, with their defaults (all on)."""
    use_flip_test: bool = True        # image feature = original + flip (else the original alone)
    use_norm_score: bool = True       # keep the feature's norm (else normalise each image feature)
    use_detector_score: bool = True   # multiply each image feature by its detector score

    @property
    def mode(self):
        """insightface's TestMode letters: N, D, F with 1 for on (N1 = norm kept, as in ijb_11.py)."""
        return f"N{self.use_norm_score:d}D{self.use_detector_score:d}F{self.use_flip_test:d}"


@dataclass
class IJBMeta:
    name: str
    image_dir: str
    images: list            # image file names, relative to image_dir
    templates: np.ndarray   # (N,) int64
    medias: np.ndarray      # (N,) int64
    landmarks: np.ndarray   # (N, 5, 2) float32, (x, y) rows
    scores: np.ndarray      # (N,) float32 detector scores
    pairs: np.ndarray       # (P, 2) int64 template ids
    labels: np.ndarray      # (P,) int64 0/1
    galleries: dict = field(default_factory=dict)  # gallery name -> (template ids, subject ids)
    probes: tuple = None                           # (template ids, subject ids) or None


@dataclass
class IJBResult:
    fars: tuple
    tars: np.ndarray        # TAR at each FAR
    fpr: np.ndarray         # the ROC the TARs are read from (scikit-learn's, as insightface plots it)
    tpr: np.ndarray
    identification: list    # SearchResult rows of the 1:N protocol (empty without 1:N lists)
    scores: np.ndarray = None  # cosine score of each template pair, in the order of the pair list
    options: FeatureOptions = FeatureOptions()


# ----------------------------------------------------------------------------- meta files

def _rows(path, min_cols, skip_header=False):
    if not os.path.isfile(path):
        raise FaceKDError(f"IJB meta file {path} not found; check --data-dir and --target")
    with open(path) as f:
        lines = f.read().splitlines()
    if skip_header:
        lines = lines[1:]
    rows = []
    for i, line in enumerate(lines, 2 if skip_header else 1):
        parts = line.replace(",", " ").split()
        if not parts:
            continue
        if len(parts) < min_cols:
            raise FaceKDError(f"{path}:{i}: expected at least {min_cols} fields, got {len(parts)}")
        rows.append((i, parts))
    if not rows:
        raise FaceKDError(f"{path}: no rows")
    return rows


def _numbers(path, rows, cols, kind):
    try:
        return np.array([[kind(p[c]) for c in cols] for _, p in rows])
    except ValueError:
        for i, p in rows:
            try:
                [kind(p[c]) for c in cols]
            except ValueError:
                raise FaceKDError(f"{path}:{i}: expected numbers in columns {list(cols)}, got {p}") from None
        raise


def gallery_names(target, meta_dir):
    """The 1:N gallery list names of ``target``: S1, S2 for IJB-B, G1, G2 otherwise; the other
    naming when none of the expected files is present."""
    name = target.lower()
    preferred = GALLERY_LISTS.get(name, DEFAULT_GALLERY_LISTS)
    other = DEFAULT_GALLERY_LISTS if preferred != DEFAULT_GALLERY_LISTS else GALLERY_LISTS["ijbb"]

    def present(names):
        return any(os.path.isfile(os.path.join(meta_dir, f"{name}_1N_gallery_{g}.csv")) for g in names)

    return preferred if present(preferred) or not present(other) else other


def meta_paths(data_dir, target):
    """{kind: path} of the meta files of ``target`` (IJBB/IJBC) under ``data_dir``; galleries as
    ``1N_gallery_<name>.csv`` in their order."""
    name = target.lower()
    meta_dir = os.path.join(data_dir, "meta")
    if not os.path.isdir(meta_dir):
        meta_dir = data_dir
    kinds = ["face_tid_mid.txt", "name_5pts_score.txt", "template_pair_label.txt", "1N_probe_mixed.csv"]
    kinds += [f"1N_gallery_{g}.csv" for g in gallery_names(target, meta_dir)]
    return {kind: os.path.join(meta_dir, f"{name}_{kind}") for kind in kinds}


def _subject_list(path):
    rows = _rows(path, 2, skip_header=True)
    values = _numbers(path, rows, (0, 1), int).astype(np.int64)
    tids, first = np.unique(values[:, 0], return_index=True)
    return tids, values[first, 1]


def read_ijb_meta(data_dir, target):
    """Read and cross-check the meta files of an IJB target."""
    if not os.path.isdir(data_dir):
        raise FaceKDError(f"--data-dir {data_dir} is not a folder")
    paths = meta_paths(data_dir, target)
    p_tid, p_lmk, p_pair = paths["face_tid_mid.txt"], paths["name_5pts_score.txt"], paths["template_pair_label.txt"]
    tid_rows = _rows(p_tid, 3)
    images = [p[0] for _, p in tid_rows]
    tm = _numbers(p_tid, tid_rows, (1, 2), int).astype(np.int64)
    lmk_rows = _rows(p_lmk, 12)
    lmk_names = [p[0] for _, p in lmk_rows]
    lmk = _numbers(p_lmk, lmk_rows, range(1, 12), float)
    if lmk_names != images:
        index = {n: k for k, n in enumerate(lmk_names)}
        missing = [n for n in images if n not in index]
        if missing or len(lmk_names) != len(images):
            raise FaceKDError(f"{p_lmk}: lists {len(lmk_names)} images, {p_tid} lists {len(images)}"
                              f"{f' (e.g. {missing[0]} has no landmarks)' if missing else ''}; "
                              f"the two files must describe the same images")
        lmk = lmk[[index[n] for n in images]]
    pair_rows = _rows(p_pair, 3)
    pairs = _numbers(p_pair, pair_rows, (0, 1, 2), int).astype(np.int64)
    if not np.isin(pairs[:, 2], (0, 1)).all():
        raise FaceKDError(f"{p_pair}: labels must be 0 or 1")
    known = np.unique(tm[:, 0])
    unknown = np.setdiff1d(pairs[:, :2], known)
    if unknown.size:
        raise FaceKDError(f"{p_pair}: template {unknown[0]} (and {unknown.size - 1} more) not in {p_tid}")
    galleries = {}
    for kind, path in paths.items():
        if kind.startswith("1N_gallery_") and os.path.isfile(path):
            galleries[kind[len("1N_gallery_"):-len(".csv")]] = _subject_list(path)
    probes = _subject_list(paths["1N_probe_mixed.csv"]) if galleries and os.path.isfile(
        paths["1N_probe_mixed.csv"]) else None
    for label, (tids, _) in list(galleries.items()) + ([("probe", probes)] if probes else []):
        unknown = np.setdiff1d(tids, known)
        if unknown.size:
            raise FaceKDError(f"IJB 1:N {label} list: template {unknown[0]} not in {p_tid}")
    return IJBMeta(target.lower(), os.path.join(data_dir, "loose_crop"), images, tm[:, 0], tm[:, 1],
                   lmk[:, :10].reshape(-1, 5, 2).astype(np.float32), lmk[:, 10].astype(np.float32),
                   pairs[:, :2], pairs[:, 2], galleries if probes is not None else {}, probes)


# ----------------------------------------------------------------------------- features

def load_aligned(image_dir, names, landmarks):
    """Aligned 112x112 uint8 RGB crops of loose-crop files."""
    from ..data.align import align_face
    from ..data.images import decode

    out = np.empty((len(names), 112, 112, 3), dtype=np.uint8)
    for k, (name, lmk) in enumerate(zip(names, landmarks)):
        path = os.path.join(image_dir, name)
        try:
            with open(path, "rb") as f:
                payload = f.read()
        except OSError as exc:
            raise FaceKDError(f"IJB image {path}: {exc.strerror}; check --data-dir (loose_crop)") from None
        out[k] = align_face(decode(payload, path), lmk)
    return out


def embed_faces(embedder, meta, flip=True, progress=True):
    """Raw ``fc1`` outputs (orig, flip) (N, d) float32 of the aligned faces; flip is None when not asked."""
    from tqdm import tqdm

    if tuple(embedder.image_size) != (112, 112):
        raise FaceKDError(f"IJB faces are aligned to 112x112; the model takes {embedder.image_size}")
    n = len(meta.images)
    chunk = max(1, embedder.batch_size // 2) * 8
    orig = np.empty((n, embedder.emb_size), dtype=np.float32)
    flipped = np.empty_like(orig) if flip else None

    def load(start):
        stop = min(start + chunk, n)
        return load_aligned(meta.image_dir, meta.images[start:stop], meta.landmarks[start:stop])

    starts = list(range(0, n, chunk))
    with ThreadPoolExecutor(max_workers=1) as pool, \
            tqdm(total=n, desc=f"embed {meta.name}", unit="img", disable=not progress or n < 2000) as bar:
        pending = pool.submit(load, starts[0])
        for k, start in enumerate(starts):
            faces = pending.result()
            if k + 1 < len(starts):
                pending = pool.submit(load, starts[k + 1])  # decode the next chunk while this one runs
            stop = start + len(faces)
            if flip:
                orig[start:stop], flipped[start:stop] = embed_with_flip(embedder, faces)
            else:
                orig[start:stop] = embedder.embed(faces)
            bar.update(len(faces))
    return orig, flipped


def image_features(orig, flip, detector_scores, options=FeatureOptions()):
    """(N, d) float64 image features from the raw embeddings: flip sum, norm kept or not, detector weight."""
    feats = np.asarray(orig, dtype=np.float64)
    if options.use_flip_test:
        if flip is None:
            raise FaceKDError("use_flip_test needs the embeddings of the flipped faces")
        feats = feats + np.asarray(flip, dtype=np.float64)
    if not options.use_norm_score:
        feats = normalize_rows(feats)
    if options.use_detector_score:
        feats = feats * np.asarray(detector_scores, dtype=np.float64)[:, None]
    return feats


def template_features(image_feats, templates, medias):
    """(template ids sorted, (T, d) L2-normalised features): mean per media, sum of the media per template."""
    feats = np.asarray(image_feats, dtype=np.float64)
    keys = np.stack([np.asarray(templates, np.int64), np.asarray(medias, np.int64)], axis=1)
    groups, inverse = np.unique(keys, axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    order = np.argsort(inverse, kind="stable")
    starts = np.flatnonzero(np.r_[True, np.diff(inverse[order]) != 0])
    media_mean = np.add.reduceat(feats[order], starts, axis=0) / np.bincount(inverse)[:, None]
    tids, t_starts = np.unique(groups[:, 0], return_index=True)  # groups are sorted by template
    return tids, normalize_rows(np.add.reduceat(media_mean, t_starts, axis=0))


def pair_scores(tids, tfeats, pairs, chunk=100000):
    """Cosine score of each template pair (features already normalised)."""
    a = lookup(tids, pairs[:, 0], "template pair list")
    b = lookup(tids, pairs[:, 1], "template pair list")
    out = np.empty(len(pairs))
    for s in range(0, len(pairs), chunk):
        out[s:s + chunk] = np.einsum("ij,ij->i", tfeats[a[s:s + chunk]], tfeats[b[s:s + chunk]])
    return out


# ----------------------------------------------------------------------------- metrics

def roc_curve(labels, scores):
    """(fpr, tpr, thresholds) of scikit-learn's ``roc_curve`` with its defaults, as ijb_11.py calls it
    (intermediate points dropped: see docs/evaluation.md)."""
    from sklearn.metrics import roc_curve as sklearn_roc_curve

    labels = np.asarray(labels).astype(bool)
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    if n_pos == 0 or n_neg == 0:
        raise FaceKDError(f"ROC needs genuine and impostor pairs; got {n_pos} genuine, {n_neg} impostor")
    return sklearn_roc_curve(labels, np.asarray(scores, dtype=np.float64))


def tar_from_roc(fpr, tpr, fars=FARS):
    """TAR at each FAR: the TPR of the ROC point whose FPR is nearest to it; of equally near points the
    last one, the highest TPR (ijb_11.py reads the flipped curve and keeps the first minimum)."""
    fpr = np.asarray(fpr, dtype=np.float64)
    out = []
    for far in fars:
        gap = np.abs(fpr - far)
        out.append(float(tpr[np.flatnonzero(gap == gap.min())[-1]]))
    return np.array(out)


def tar_at_far(labels, scores, fars=FARS):
    """TAR at each FAR of the template-pair scores (insightface's ijb_11.py)."""
    fpr, tpr, _ = roc_curve(labels, scores)
    return tar_from_roc(fpr, tpr, fars)


# ----------------------------------------------------------------------------- whole evaluation

def evaluate_embeddings(meta, orig, flip, options=FeatureOptions(), fars=FARS, protocol_1n=DEFAULT_PROTOCOL_1N,
                        ranks=RANKS, fpirs=FPIRS):
    """1:1 TAR @ FAR and, when listed, 1:N results from the raw embeddings of the target's faces."""
    search = PROTOCOLS_1N.get(protocol_1n)
    feats = image_features(orig, flip, meta.scores, options)
    tids, tfeats = template_features(feats, meta.templates, meta.medias)
    scores = pair_scores(tids, tfeats, meta.pairs)
    fpr, tpr, _ = roc_curve(meta.labels, scores)
    tars = tar_from_roc(fpr, tpr, fars)
    ident = search(tids, tfeats, meta.galleries, meta.probes, ranks, fpirs) if meta.galleries else []
    return IJBResult(tuple(fars), tars, fpr, tpr, ident, scores, options)


def evaluate_ijb(embedder, data_dir, target, fars=FARS, progress=True, meta=None, options=FeatureOptions(),
                 protocol_1n=DEFAULT_PROTOCOL_1N):
    """Embed the faces of an IJB target and compute 1:1 TAR @ FAR and, when listed, 1:N results."""
    PROTOCOLS_1N.get(protocol_1n)  # an unknown name fails before the embedding
    meta = meta or read_ijb_meta(data_dir, target)
    orig, flip = embed_faces(embedder, meta, options.use_flip_test, progress)
    return evaluate_embeddings(meta, orig, flip, options, fars, protocol_1n)


def format_result(model, target, result):
    """Lines of the IJB command: a TAR @ FAR row, then one line per 1:N result."""
    head = "\t".join(f"{f:.0e}" for f in result.fars)
    row = "\t".join(f"{100 * t:.2f}" for t in result.tars)
    mode = result.options.mode
    lines = [f"[{target}]{model}\tTAR@FAR ({mode})\t{head}", f"[{target}]{model}\tTAR(%)\t{row}"]
    for r in result.identification:
        ranks = "\t".join(f"rank-{k}: {100 * v:.2f}" for k, v in r.ranks.items())
        tpir = "\t".join(f"TPIR@FPIR={f:g}: {100 * v:.2f}" for f, v in r.tpir.items())
        lines.append(f"[{target}]{model}\t1:N {r.gallery} ({r.protocol}: {r.probes} probes, {r.mated} mated, "
                     f"{r.nonmated} non-mated, {r.gallery_size} gallery templates)\t{ranks}\t{tpir}")
    return lines
