"""MegaFace-style identification: probe identities against one gallery image plus distractors.

Features (as insightface's ``gen_megaface.py``): each image and its horizontal flip go
through the network, the two raw ``fc1`` outputs are summed and the sum L2-normalised;
with several networks the normalised vectors are concatenated and normalised again.
The same float32 vectors are written as devkit feature files (``devkit_matrix.py``) and
scored here.

Protocol (the devkit's): for every probe identity and every ordered pair (gallery image g,
probe image p) of its images, g is placed among the first n distractors and p is searched:
rank-1 when p is closer (cosine, equivalently L2 between unit vectors) to g than to every
distractor. Verification: genuine pairs are the same-identity probe pairs, impostors every
probe image against every distractor; TAR at FAR = 1e-6 is the TPR of the ROC point with
the largest FPR not above 1e-6. Both are reported as n grows (10, 100, ...).
docs/evaluation.md gives every step with its source.
"""
import os
from dataclasses import dataclass

import numpy as np

from ..errors import FaceKDError
from ..vectors import normalize_rows
from .devkit_matrix import vector_bytes

MEGAFACE_FAR = 1e-6
TOOL = "identification.py"


@dataclass
class IdentificationRow:
    distractors: int
    rank1: float
    tar: float        # TAR at ``far``
    far: float


# ----------------------------------------------------------------------------- features

def megaface_features(raw):
    """Devkit features (N, D) float32 from ``[(orig, flip), ...]``, one raw (N, d_i) pair per network.

    Per network: ``normalise(orig + flip)`` (float64); the networks' vectors concatenated and
    normalised again.
    """
    if not raw:
        raise FaceKDError("no network given (--model)")
    parts = []
    for orig, flip in raw:
        orig = np.asarray(orig, dtype=np.float64)
        flip = np.asarray(flip, dtype=np.float64)
        if orig.shape != flip.shape:
            raise FaceKDError(f"flipped embeddings {flip.shape} do not match the originals {orig.shape}")
        parts.append(normalize_rows(orig + flip))
    return normalize_rows(np.concatenate(parts, axis=1)).astype(np.float32)


def check_algo(algo):
    """``--algo`` becomes part of every file name: a non-empty name without path separators."""
    if not algo or os.sep in algo or (os.altsep and os.altsep in algo) or algo in (".", ".."):
        raise FaceKDError(f"--algo {algo!r}: the algorithm name goes into every feature file name "
                          f"(<image>_<algo>.bin); give a plain name such as y1md")
    return algo


def feature_path(out_dir, image_name, algo):
    """``<out_dir>/<image name>_<algo>.bin`` (sub-folders of the image name are kept)."""
    return os.path.join(out_dir, f"{image_name}_{algo}.bin")


def write_features(out_dir, image_names, features, algo, progress=None):
    """One devkit feature file per image under ``out_dir`` (a staging folder); returns the paths."""
    from tqdm import tqdm

    if len(image_names) != len(features):
        raise FaceKDError(f"{len(image_names)} image names for {len(features)} features")
    paths = []
    for name, vec in tqdm(zip(image_names, features), total=len(image_names), desc=progress or "write",
                          unit="file", disable=not progress or len(image_names) < 2000):
        path = feature_path(out_dir, name, algo)
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        with open(path, "wb") as f:
            f.write(vector_bytes(vec))
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
    # Genuine similarities: every same-identity ordered pair, with its probe-side index.
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
        # at most k impostors may score above the threshold: FAR = k / impostors <= far
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


def _check_embedders(embedders):
    if not embedders:
        raise FaceKDError("no network given (--model)")
    sizes = {tuple(e.image_size) for e in embedders}
    if len(sizes) > 1:
        raise FaceKDError(f"the --model networks take different input sizes {sorted(sizes)}; "
                          f"features of one image are concatenated, so give networks of one input size")
    return embedders


def embed_folder(embedders, folder, names, progress=None):
    """Devkit features (N, D) float32 of the (aligned) images of a folder, see :func:`megaface_features`."""
    from tqdm import tqdm

    from ..data.images import decode
    from .verification import embed_with_flip, fit_image

    embedders = _check_embedders(list(embedders))
    size = tuple(embedders[0].image_size)
    chunk = max(1, min(e.batch_size for e in embedders) // 2) * 8
    width = sum(e.emb_size for e in embedders)
    out = np.empty((len(names), width), dtype=np.float32)
    for start in tqdm(range(0, len(names), chunk), desc=progress or "embed", unit="chunk",
                      disable=not progress):
        part = names[start:start + chunk]
        images = np.empty((len(part),) + size + (3,), dtype=np.uint8)
        for k, name in enumerate(part):
            path = os.path.join(folder, name)
            with open(path, "rb") as f:
                images[k] = fit_image(decode(f.read(), path), size, path)
        out[start:start + len(part)] = megaface_features([embed_with_flip(e, images) for e in embedders])
    return out


def check_feature_out(feature_out, overwrite, probe_dir, distractor_dir):
    """Before any work: ``--feature-out`` apart from the inputs, new (or ours with ``--overwrite``), writable."""
    from ..data.outputs import check_output_folder, check_separate

    check_separate(probe_dir, "--probe", feature_out, "--feature-out")
    check_separate(distractor_dir, "--distractors", feature_out, "--feature-out")
    check_output_folder(feature_out, overwrite, TOOL, "--feature-out")


def identify_folders(embedders, probe_dir, distractor_dir, sizes=None, far=MEGAFACE_FAR, feature_out="",
                     algo="facekd", overwrite=False):
    """Embed a probe folder (``<identity>/<image>``) and a distractor folder, optionally write the
    devkit feature files (``<feature_out>/probe/...``, ``<feature_out>/distractors/...``, the
    folder appearing only when complete), and return the identification rows."""
    from ..data.outputs import staged_output

    if not 0 < far < 1:
        raise FaceKDError(f"--far must lie in (0, 1), got {far}")
    if feature_out:
        check_algo(algo)
        check_feature_out(feature_out, overwrite, probe_dir, distractor_dir)
    probe_names, probe_labels = probe_identities(probe_dir)
    distractor_names = list_images(distractor_dir, "--distractors")
    if sizes and (min(sizes) < 1 or max(sizes) > len(distractor_names)):
        raise FaceKDError(f"--sizes {','.join(map(str, sizes))}: distractor counts must lie in "
                          f"1..{len(distractor_names)} (the images in --distractors {distractor_dir})")
    probe_feats = embed_folder(embedders, probe_dir, probe_names, "embed probes")
    distractor_feats = embed_folder(embedders, distractor_dir, distractor_names, "embed distractors")
    if feature_out:
        with staged_output(feature_out, overwrite, "--feature-out", TOOL, "megaface features") as staged:
            write_features(os.path.join(staged, "probe"), probe_names, probe_feats, algo, "write probes")
            write_features(os.path.join(staged, "distractors"), distractor_names, distractor_feats, algo,
                           "write distractors")
    return megaface_identification(probe_feats, probe_labels, distractor_feats, sizes, far, progress=True)
