"""IJB-B / IJB-C template-based evaluation: 1:1 verification (TAR @ FAR) and 1:N identification.

Meta files (insightface's layout, ``<data_dir>/meta`` or ``<data_dir>`` itself; ``name`` = ijbb/ijbc):

* ``<name>_face_tid_mid.txt``        image, template id, media id
* ``<name>_name_5pts_score.txt``     image, 10 landmark values (x1 y1 ... x5 y5), detector score
* ``<name>_template_pair_label.txt`` template, template, 0/1
* optional 1:N: ``<name>_1N_gallery_G1.csv``, ``<name>_1N_gallery_G2.csv``, ``<name>_1N_probe_mixed.csv``
  (header line, then TEMPLATE_ID, SUBJECT_ID, ...)

Loose crops live in ``<data_dir>/loose_crop``. Each face is aligned to the 112x112 template,
embedded original + flip (summed), multiplied by its detector score, averaged per media,
summed per template and L2-normalised; a pair's score is the cosine of its templates.
"""
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from ..errors import FaceKDError
from ..vectors import normalize_rows
from .verification import embed_with_flip

FARS = (1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1)
FPIRS = (0.01, 0.1)
RANKS = (1, 5, 10)
GALLERIES = ("G1", "G2")


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
    fpr: np.ndarray         # full ROC
    tpr: np.ndarray
    identification: dict    # gallery name -> IdentificationResult
    scores: np.ndarray = None  # cosine score of each template pair, in the order of the pair list


@dataclass
class IdentificationResult:
    ranks: dict             # rank -> identification rate of the mated probes
    tpir: dict              # FPIR -> TPIR (rank 1)
    mated: int
    nonmated: int


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


def meta_paths(data_dir, target):
    """{kind: path} of the meta files of ``target`` (IJBB/IJBC) under ``data_dir``."""
    name = target.lower()
    meta_dir = os.path.join(data_dir, "meta")
    if not os.path.isdir(meta_dir):
        meta_dir = data_dir
    return {kind: os.path.join(meta_dir, f"{name}_{kind}") for kind in (
        "face_tid_mid.txt", "name_5pts_score.txt", "template_pair_label.txt",
        "1N_gallery_G1.csv", "1N_gallery_G2.csv", "1N_probe_mixed.csv")}


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
    for g in GALLERIES:
        path = paths[f"1N_gallery_{g}.csv"]
        if os.path.isfile(path):
            galleries[g] = _subject_list(path)
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


def embed_faces(embedder, meta, progress=True):
    """(N, d) float32: embedding of each aligned face, original + flip summed."""
    from tqdm import tqdm

    if tuple(embedder.image_size) != (112, 112):
        raise FaceKDError(f"IJB faces are aligned to 112x112; the model takes {embedder.image_size}")
    n = len(meta.images)
    chunk = max(1, embedder.batch_size // 2) * 8
    feats = np.empty((n, embedder.emb_size), dtype=np.float32)

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
            orig, flip = embed_with_flip(embedder, faces)
            feats[start:start + len(faces)] = orig + flip
            bar.update(len(faces))
    return feats


def template_features(face_feats, templates, medias, scores=None):
    """(template ids sorted, (T, d) L2-normalised features): score-weighted, media mean, template sum."""
    feats = np.asarray(face_feats, dtype=np.float64)
    if scores is not None:
        feats = feats * np.asarray(scores, dtype=np.float64)[:, None]
    keys = np.stack([np.asarray(templates, np.int64), np.asarray(medias, np.int64)], axis=1)
    groups, inverse = np.unique(keys, axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    order = np.argsort(inverse, kind="stable")
    starts = np.flatnonzero(np.r_[True, np.diff(inverse[order]) != 0])
    media_mean = np.add.reduceat(feats[order], starts, axis=0) / np.bincount(inverse)[:, None]
    tids, t_starts = np.unique(groups[:, 0], return_index=True)  # groups are sorted by template
    return tids, normalize_rows(np.add.reduceat(media_mean, t_starts, axis=0))


def _lookup(tids, wanted, what):
    wanted = np.asarray(wanted, dtype=np.int64)
    pos = np.searchsorted(tids, wanted)
    pos = np.minimum(pos, len(tids) - 1)
    bad = tids[pos] != wanted
    if bad.any():
        raise FaceKDError(f"{what}: template {wanted[bad][0]} has no features")
    return pos


def pair_scores(tids, tfeats, pairs, chunk=100000):
    """Cosine score of each template pair (features already normalised)."""
    a = _lookup(tids, pairs[:, 0], "template pair list")
    b = _lookup(tids, pairs[:, 1], "template pair list")
    out = np.empty(len(pairs))
    for s in range(0, len(pairs), chunk):
        out[s:s + chunk] = np.einsum("ij,ij->i", tfeats[a[s:s + chunk]], tfeats[b[s:s + chunk]])
    return out


# ----------------------------------------------------------------------------- metrics

def roc_curve(labels, scores):
    """Full ROC (no points dropped): (fpr, tpr, thresholds), accepting score >= threshold."""
    labels = np.asarray(labels).astype(bool)
    scores = np.asarray(scores, dtype=np.float64)
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    if n_pos == 0 or n_neg == 0:
        raise FaceKDError(f"ROC needs genuine and impostor pairs; got {n_pos} genuine, {n_neg} impostor")
    order = np.argsort(-scores, kind="stable")
    s, y = scores[order], labels[order]
    last = np.r_[np.flatnonzero(np.diff(s) != 0), len(s) - 1]  # last index of each distinct score
    tps = np.cumsum(y)[last]
    fps = np.cumsum(~y)[last]
    return (np.r_[0.0, fps / n_neg], np.r_[0.0, tps / n_pos], np.r_[np.inf, s[last]])


def tar_at_far(labels, scores, fars=FARS):
    """TAR at each FAR: the ROC point whose FPR is closest to it, the highest TPR among ties (insightface)."""
    fpr, tpr, _ = roc_curve(labels, scores)
    out = []
    for far in fars:
        gap = np.abs(fpr - far)
        out.append(float(tpr[gap == gap.min()].max()))
    return np.array(out)


def identification(tids, tfeats, gallery, probes, ranks=RANKS, fpirs=FPIRS, chunk=4096):
    """Open-set 1:N: rank-k rates of the mated probes and TPIR at FPIR (rank 1, NIST definition)."""
    g_ids, g_subjects = gallery
    p_ids, p_subjects = probes
    g = tfeats[_lookup(tids, g_ids, "1:N gallery")]
    p_pos = _lookup(tids, p_ids, "1:N probe list")
    mated = np.isin(p_subjects, g_subjects)
    rank = np.empty(len(p_ids), dtype=np.int64)
    mate_score = np.full(len(p_ids), -np.inf)
    top = np.empty(len(p_ids))
    for s in range(0, len(p_ids), chunk):
        sims = tfeats[p_pos[s:s + chunk]] @ g.T
        is_mate = p_subjects[s:s + chunk, None] == g_subjects[None, :]
        best = np.where(is_mate, sims, -np.inf).max(axis=1)
        nonmate = np.where(is_mate, -np.inf, sims)
        rank[s:s + chunk] = 1 + (nonmate > best[:, None]).sum(axis=1)
        mate_score[s:s + chunk] = best
        top[s:s + chunk] = sims.max(axis=1)
    n_m, n_nm = int(mated.sum()), int((~mated).sum())
    rates = {r: float((rank[mated] <= r).mean()) if n_m else float("nan") for r in ranks}
    tpir = {}
    nonmated_top = np.sort(top[~mated])[::-1]
    for f in fpirs:
        if not n_m or not n_nm:
            tpir[f] = float("nan")
            continue
        k = int(np.floor(f * n_nm + 1e-9))  # at most k non-mated probes may score above the threshold
        threshold = nonmated_top[k] if k < n_nm else -np.inf
        tpir[f] = float(((rank[mated] == 1) & (mate_score[mated] > threshold)).mean())
    return IdentificationResult(rates, tpir, n_m, n_nm)


# ----------------------------------------------------------------------------- whole evaluation

def evaluate_ijb(embedder, data_dir, target, fars=FARS, progress=True, meta=None):
    """Embed the faces of an IJB target and compute 1:1 TAR @ FAR and, when listed, 1:N results."""
    meta = meta or read_ijb_meta(data_dir, target)
    feats = embed_faces(embedder, meta, progress)
    tids, tfeats = template_features(feats, meta.templates, meta.medias, meta.scores)
    scores = pair_scores(tids, tfeats, meta.pairs)
    fpr, tpr, _ = roc_curve(meta.labels, scores)
    tars = tar_at_far(meta.labels, scores, fars)
    ident = {g: identification(tids, tfeats, gal, meta.probes) for g, gal in meta.galleries.items()}
    return IJBResult(tuple(fars), tars, fpr, tpr, ident, scores)


def format_result(model, target, result):
    """Lines of the IJB command: a TAR @ FAR row, then one line per 1:N gallery."""
    head = "\t".join(f"{f:.0e}" for f in result.fars)
    row = "\t".join(f"{100 * t:.2f}" for t in result.tars)
    lines = [f"[{target}]{model}\tTAR@FAR\t{head}", f"[{target}]{model}\tTAR(%)\t{row}"]
    for g, r in result.identification.items():
        ranks = "\t".join(f"rank-{k}: {100 * v:.2f}" for k, v in r.ranks.items())
        tpir = "\t".join(f"TPIR@FPIR={f:g}: {100 * v:.2f}" for f, v in r.tpir.items())
        lines.append(f"[{target}]{model}\t1:N {g} ({r.mated} mated, {r.nonmated} non-mated probes)\t{ranks}\t{tpir}")
    return lines
