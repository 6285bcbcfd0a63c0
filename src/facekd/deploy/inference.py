"""Face embeddings as verification computes them, for files, and the cosine verdict of two faces.

The embedding of a face is the verification protocol's score embedding: the raw embeddings
of the image and of its horizontal flip, from the same batch, summed and L2-normalised
(:func:`facekd.evaluation.verification.embed_with_flip` and ``flip_embeddings``). Two faces
compare by the cosine of their embeddings; they are "same" when it exceeds the threshold.
Verification's threshold on the squared distance ``d`` of unit vectors is the cosine
``1 - d / 2`` (``d = 2 - 2 cos``), which ``verification.py`` prints.
"""
import os

import numpy as np

from ..errors import FaceKDError

DEFAULT_THRESHOLD = 0.3
CHUNK_BATCHES = 8  # images read per chunk, in batches of the embedder


def face_embeddings(embedder, images, progress=None):
    """float32 (N, d) unit-length flip-summed embeddings of uint8 RGB (N, H, W, 3) images."""
    from ..evaluation.verification import embed_with_flip, flip_embeddings

    orig, flip = embed_with_flip(embedder, images, progress=progress)
    embeddings, _ = flip_embeddings(orig, flip)
    return embeddings.astype(np.float32)


def embed_files(embedder, paths, out, progress="embed"):
    """Fill ``out`` (N, d) with the embeddings of the face files ``paths``, a chunk of images at a time."""
    from tqdm import tqdm

    from .faces import read_faces

    chunk = max(1, embedder.batch_size // 2) * CHUNK_BATCHES
    with tqdm(total=len(paths), desc=progress, unit="img", disable=not progress) as bar:
        for start in range(0, len(paths), chunk):
            part = paths[start:start + chunk]
            out[start:start + len(part)] = face_embeddings(embedder, read_faces(part, embedder.image_size))
            bar.update(len(part))
    return out


def cosine(a, b):
    """Cosine of two embeddings (float64)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    denominator = np.linalg.norm(a) * np.linalg.norm(b)
    return float(a @ b / denominator) if denominator > 0 else 0.0


def check_threshold(value, flag="--threshold"):
    if not np.isfinite(value) or not -1.0 <= value <= 1.0:
        raise FaceKDError(f"{flag} {value}: a cosine threshold lies in [-1, 1] (verification.py prints one)")
    return float(value)


def verdict(cos, threshold):
    """``"same"`` when ``cos > threshold`` (verification's ``distance < threshold``), else ``"different"``."""
    return "same" if cos > threshold else "different"


def names_path(features_path):
    """``feats.txt`` beside ``feats.npy``: the image of each row, one a line."""
    root, ext = os.path.splitext(features_path)
    if ext.lower() != ".npy":
        raise FaceKDError(f"--out {features_path}: the features are a NumPy array; name the file *.npy")
    return root + ".txt"
