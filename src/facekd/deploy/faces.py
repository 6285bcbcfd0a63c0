"""Face images into arrays: samples of a RecordIO set (parity, calibration, timing) and image files.

Images are RGB uint8 (N, H, W, 3), the layout of :class:`facekd.embedder.Embedder` and of the
verification protocol; the networks take them as NCHW float of raw 0..255 values.
"""
import os

import numpy as np

from ..errors import FaceKDError

LIST_COMMENT = "#"


def spread_keys(num_images, count):
    """``count`` record keys (1..num_images) spread evenly over the set, first and last included."""
    count = min(int(count), int(num_images))
    if count < 1:
        return np.empty(0, dtype=np.int64)
    return np.unique(np.linspace(1, num_images, count).round().astype(np.int64))


def sample_record_images(folder, count, flag, image_size):
    """``count`` images (uint8 (n, H, W, 3)) spread over the RecordIO set ``folder`` (``flag`` names it)."""
    from ..data.images import decode
    from ..data.recordio import RecordDataset

    if not os.path.isdir(folder):
        raise FaceKDError(f"{flag} {folder} is not a folder; give a RecordIO dataset folder "
                          "(train.rec, train.idx, property)")
    with RecordDataset(folder) as dataset:
        if tuple(dataset.image_size) != tuple(image_size):
            raise FaceKDError(f"{flag} {folder}: its images are {dataset.image_size[0]}x{dataset.image_size[1]} "
                              f"(property), the network takes {image_size[0]}x{image_size[1]}; give a set of "
                              "the network's input size")
        keys = spread_keys(dataset.num_images, count)
        if len(keys) == 0:
            raise FaceKDError(f"{flag} {folder}: the set holds no images")
        out = np.empty((len(keys),) + tuple(image_size) + (3,), dtype=np.uint8)
        for i, key in enumerate(keys):
            _, payload = dataset.read(int(key))
            out[i] = decode(payload, f"{dataset.rec_path}: record {int(key)}", size=dataset.image_size)
    return out


def image_list(source, flag="--images"):
    """``(names, paths)`` of the images of a folder (recursive, sorted, names relative to it) or of a
    list file (one path a line, ``#`` comments; relative paths are relative to the list's folder)."""
    from ..evaluation.identification import list_images

    if os.path.isdir(source):
        names = list_images(source, flag)
        return names, [os.path.join(source, n) for n in names]
    if not os.path.isfile(source):
        raise FaceKDError(f"{flag} {source}: no such folder or list file")
    try:
        with open(source, encoding="utf-8") as f:
            lines = [(i, line.strip()) for i, line in enumerate(f, start=1)]
    except UnicodeDecodeError:
        raise FaceKDError(f"{flag} {source}: not a text list of image paths (one a line); give a folder "
                          "or such a list") from None
    lines = [(i, line) for i, line in lines if line and not line.startswith(LIST_COMMENT)]
    if not lines:
        raise FaceKDError(f"{flag} {source}: the list names no images")
    base = os.path.dirname(os.path.abspath(source))
    names, paths = [], []
    for number, line in lines:
        path = line if os.path.isabs(line) else os.path.join(base, line)
        if not os.path.isfile(path):
            raise FaceKDError(f"{flag} {source}: line {number}: {path} not found; fix the list")
        names.append(line)
        paths.append(path)
    return names, paths


def read_faces(paths, image_size):
    """uint8 RGB (n, H, W, 3) of aligned face files, resized like the verification images when their
    size differs (the verification protocol's :func:`fit_image`)."""
    from ..data.images import decode
    from ..evaluation.verification import fit_image

    out = np.empty((len(paths),) + tuple(image_size) + (3,), dtype=np.uint8)
    for i, path in enumerate(paths):
        try:
            with open(path, "rb") as f:
                payload = f.read()
        except OSError as exc:
            raise FaceKDError(f"{path}: cannot read the image ({exc.strerror or exc})") from None
        out[i] = fit_image(decode(payload, path), image_size, path)
    return out
