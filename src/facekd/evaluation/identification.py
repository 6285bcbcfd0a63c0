"""MegaFace-style identification: probe identities against one gallery image plus distractors.

For every probe identity and every ordered pair (gallery image g, probe image p) of its
images, g is placed among the first n distractors and p is searched: rank-1 when p is
closer (cosine) to g than to every distractor. Verification: genuine pairs are the
same-identity probe pairs, impostors every probe image against every distractor; TAR is
taken at FAR = 1e-6. Both are reported as n grows (10, 100, ...).

Features can be written in the MegaFace devkit's ``.bin`` format: int32 rows, cols,
bytes per element (4), OpenCV type (5 = CV_32F), then rows*cols float32.
"""
import os
from dataclasses import dataclass

import numpy as np

from ..errors import FaceKDError
from ..vectors import normalize_rows
from ..atomic import atomic_path

CV_32F = 5
MEGAFACE_FAR = 1e-6


@dataclass
class IdentificationRow:
    distractors: int
    rank1: float
    tar: float        # TAR at ``far``
    far: float


# ----------------------------------------------------------------------------- feature files

def write_feature(path, vector):
    """One MegaFace feature file (rows = d, cols = 1), written atomically."""
    vec = np.asarray(vector, dtype=np.float32).reshape(-1)
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(np.array([vec.size, 1, 4, CV_32F], dtype="<i4").tobytes())
        f.write(vec.astype("<f4").tobytes())


def read_feature(path):
    """The float32 vector (rows*cols) of a MegaFace feature file."""
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 16:
        raise FaceKDError(f"{path}: {len(data)} bytes, too short for a MegaFace feature header")
    rows, cols, size, kind = np.frombuffer(data[:16], dtype="<i4")
    if size != 4 or kind != CV_32F or rows < 0 or cols < 0 or len(data) != 16 + 4 * rows * cols:
        raise FaceKDError(f"{path}: header rows={rows} cols={cols} size={size} type={kind} does not "
                          f"describe a float32 (type 5) matrix of {(len(data) - 16) // 4} values")
    return np.frombuffer(data[16:], dtype="<f4").astype(np.float32)


def feature_path(out_dir, image_name, algo):
    """``<out_dir>/<image name>_<algo>.bin`` (sub-folders of the image name are kept)."""
    return os.path.join(out_dir, f"{image_name}_{algo}.bin")


def write_features(out_dir, image_names, features, algo):
    """Write one feature file per image; returns the paths."""
    if len(image_names) != len(features):
        raise FaceKDError(f"{len(image_names)} image names for {len(features)} features")
    paths = []
    for name, vec in zip(image_names, features):
        path = feature_path(out_dir, name, algo)
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        write_feature(path, vec)
        paths.append(path)
    return paths


# ----------------------------------------------------------------------------- protocol

def distractor_sizes(available, start=10):
    """10, 100, ... up to ``available``, plus ``available`` itself when it is not a power of ten."""
    if available < 1:
        raise FaceKDError("the distractor set is empty")
    sizes, n = [], start
    while n <= available:
        sizes.append(n)
        n *= 10
    if not sizes or sizes[-1] != available:
        sizes.append(available)
    return sizes


def _kth_largest(values, k):
    """The (k+1)-th largest value (k = 0: the maximum)."""
    return np.partition(values, len(values) - 1 - k)[len(values) - 1 - k]


def megaface_identification(probe_feats, probe_labels, distractor_feats, sizes=None, far=MEGAFACE_FAR,
                            chunk=8192, progress=False):
    """Rank-1 rate and TAR @ ``far`` for each number of distractors (the first n of the given order)."""
    from tqdm import tqdm

    if not 0 < far < 1:
        raise FaceKDError(f"--far must lie in (0, 1), got {far}")
    probes = normalize_rows(probe_feats)
    labels = np.asarray(probe_labels)
    distractors = normalize_rows(distractor_feats)
    if len(probes) != len(labels):
        raise FaceKDError(f"{len(probes)} probe features for {len(labels)} labels")
    if probes.shape[1] != distractors.shape[1]:
        raise FaceKDError(f"probe features are {probes.shape[1]}-d, distractors {distractors.shape[1]}-d")
    sizes = sorted(set(sizes or distractor_sizes(len(distractors))))
    if sizes[0] < 1 or sizes[-1] > len(distractors):
        raise FaceKDError(f"distractor counts {sizes} must lie in 1..{len(distractors)}")
    # Genuine similarities: every same-identity pair, with its probe-side index.
    classes, inverse = np.unique(labels, return_inverse=True)
    members = [np.flatnonzero(inverse == c) for c in range(len(classes))]
    members = [m for m in members if len(m) >= 2]
    if not members:
        raise FaceKDError("no probe identity has two or more images")
    gen_probe, gen_gallery = [], []
    for m in members:
        g, p = np.meshgrid(m, m, indexing="ij")
        off = g != p
        gen_gallery.append(g[off])
        gen_probe.append(p[off])
    gen_probe = np.concatenate(gen_probe)
    gen_gallery = np.concatenate(gen_gallery)
    genuine = np.einsum("ij,ij->i", probes[gen_probe], probes[gen_gallery])
    used = np.unique(gen_probe)  # probe images that take part (identities with >= 2 images)
    p_used = probes[used]
    slot = np.full(len(probes), -1)
    slot[used] = np.arange(len(used))

    chunk = max(1, min(chunk, 4_000_000 // len(used)))  # bound the (probes x chunk) score block
    k_max = int(np.floor(far * len(used) * sizes[-1] + 1e-9))
    best = np.full(len(used), -np.inf)      # running max over distractors, per probe image
    top = np.full(0, -np.inf)               # running k_max+1 largest impostor scores
    rows, done = [], 0
    bar = tqdm(total=sizes[-1], desc="distractors", unit="img", disable=not progress)
    for n in sizes:
        while done < n:
            stop = min(done + chunk, n)
            sims = p_used @ distractors[done:stop].T
            best = np.maximum(best, sims.max(axis=1))
            merged = np.concatenate([top, sims.reshape(-1)])
            keep = min(k_max + 1, merged.size)
            top = np.partition(merged, merged.size - keep)[merged.size - keep:]
            bar.update(stop - done)
            done = stop
        rank1 = float((genuine > best[slot[gen_probe]]).mean())
        k = int(np.floor(far * len(used) * n + 1e-9))
        threshold = _kth_largest(top, k)
        # unordered genuine pairs: each appears twice above with the same score, so the rate is unchanged
        rows.append(IdentificationRow(n, rank1, float((genuine > threshold).mean()), far))
    bar.close()
    return rows


def format_rows(model, rows):
    """One line per distractor count."""
    return [f"{model}\tdistractors {r.distractors}\trank-1: {100 * r.rank1:.2f}\t"
            f"TAR@FAR={r.far:g}: {100 * r.tar:.2f}" for r in rows]


# ----------------------------------------------------------------------------- image folders

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")


def list_images(folder, what):
    """Sorted image paths (relative to ``folder``) found recursively."""
    if not os.path.isdir(folder):
        raise FaceKDError(f"{what} {folder} is not a folder")
    found = []
    for root, _, files in os.walk(folder):
        for f in files:
            if f.lower().endswith(IMAGE_EXTENSIONS):
                found.append(os.path.relpath(os.path.join(root, f), folder))
    if not found:
        raise FaceKDError(f"{what} {folder} holds no .jpg/.png images")
    return sorted(found)


def probe_identities(folder):
    """(relative image paths, identity labels) of a probe folder laid out ``<identity>/<image>``."""
    names = list_images(folder, "--probe")
    flat = [n for n in names if os.sep not in n]
    if flat:
        raise FaceKDError(f"--probe {folder}: {flat[0]} is not inside an identity sub-folder "
                          f"(expected <identity>/<image>)")
    identities = [n.split(os.sep, 1)[0] for n in names]
    return names, np.unique(identities, return_inverse=True)[1]


def embed_folder(embedder, folder, names, progress=None):
    """Raw embeddings, original + flip summed, of the (aligned) images of a folder."""
    from ..data.images import decode
    from .verification import embed_with_flip, fit_image

    chunk = max(1, embedder.batch_size // 2) * 8
    out = np.empty((len(names), embedder.emb_size), dtype=np.float32)
    from tqdm import tqdm

    for start in tqdm(range(0, len(names), chunk), desc=progress or "embed", unit="chunk",
                      disable=not progress):
        part = names[start:start + chunk]
        images = np.empty((len(part),) + tuple(embedder.image_size) + (3,), dtype=np.uint8)
        for k, name in enumerate(part):
            path = os.path.join(folder, name)
            with open(path, "rb") as f:
                images[k] = fit_image(decode(f.read(), path), embedder.image_size, path)
        orig, flip = embed_with_flip(embedder, images)
        out[start:start + len(part)] = orig + flip
    return out


def identify_folders(embedder, probe_dir, distractor_dir, sizes=None, far=MEGAFACE_FAR, feature_out="",
                     algo="facekd"):
    """Embed a probe folder (``<identity>/<image>``) and a distractor folder, optionally write the
    MegaFace feature files (``<feature_out>/probe/...``, ``<feature_out>/distractors/...``), and
    return the identification rows."""
    probe_names, probe_labels = probe_identities(probe_dir)
    distractor_names = list_images(distractor_dir, "--distractors")
    probe_feats = embed_folder(embedder, probe_dir, probe_names, "embed probes")
    distractor_feats = embed_folder(embedder, distractor_dir, distractor_names, "embed distractors")
    if feature_out:
        write_features(os.path.join(feature_out, "probe"), probe_names, probe_feats, algo)
        write_features(os.path.join(feature_out, "distractors"), distractor_names, distractor_feats, algo)
    return megaface_identification(probe_feats, probe_labels, distractor_feats, sizes, far, progress=True)
