"""The stepwise soft-dataset preparation (the scripts that replace the reference notebooks).

Layout of the working folder ``DIR`` written by :func:`extract_images` and filled in
by the later steps::

    DIR/images/<class>/<key>.<ext>   the record's image bytes, unchanged (.jpg or .png)
    DIR/labels/index.tsv             one line per image in record-key order:
                                     key <TAB> class id <TAB> path relative to DIR/images
    DIR/labels/embeddings.npy        float32 (N, d): row i is the teacher's raw fc1 output
                                     for line i of index.tsv (written by :func:`save_embeddings`)

:func:`write_soft_lst` joins the two into a ``.lst`` of soft labels, grouped by class,
which ``data_prepare/face2rec2.py`` packs into ``train.rec``/``train.idx``/``property``.
Every output is written under a temporary name and renamed when complete
(:func:`staged_output` for folders, ``<name>.partial`` for files). Every output folder
carries a marker file :data:`MARKER` naming the tool that wrote it; ``--overwrite``
replaces only a folder whose marker names the same tool (:func:`check_output_folder`).
"""
import glob
import os
import shutil
import time
from collections import namedtuple

import numpy as np

from ..atomic import check_writable_dir, clear_leftovers
from ..errors import FaceKDError
from . import labels as label_layout
from .outputs import (PARTIAL, check_output, check_output_folder, check_separate, is_inside, notice,
                      recover_leftovers, remove_path, replace_path, staged_output)

INDEX_FILE = "index.tsv"
EMBEDDINGS_FILE = "embeddings.npy"

StepSummary = namedtuple("StepSummary", "num_images num_classes seconds path")

_MAGIC = ((b"\xff\xd8\xff", ".jpg"), (b"\x89PNG\r\n\x1a\n", ".png"))


def image_extension(payload, where="record"):
    """File extension of encoded image bytes, from their magic number (.jpg or .png)."""
    for magic, ext in _MAGIC:
        if payload[:len(magic)] == magic:
            return ext
    raise FaceKDError(f"{where}: payload is neither JPEG nor PNG (starts with {payload[:8]!r})")


def _progress(total, desc, enabled):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="img", disable=not enabled, smoothing=0.1)


def check_teacher_args(model, batch_size):
    """The cheap checks of :func:`load_teacher` (the ``--model`` format, ``--batch-size``); ``(prefix, epoch)``."""
    from ..checkpoints import parse_model_arg

    if batch_size < 1:
        raise FaceKDError(f"--batch-size must be >= 1, got {batch_size}")
    return parse_model_arg(model, "--model")


def load_teacher(model, batch_size, cpu_contexts=1, image_size=(112, 112)):
    """facekd.embedder.Embedder of ``model`` ("prefix,epoch") over the GPUs of CUDA_VISIBLE_DEVICES,
    else ``cpu_contexts`` CPU contexts; ``batch_size`` images per forward over all of them."""
    from ..embedder import Embedder
    from ..training.contexts import get_contexts

    prefix, epoch = check_teacher_args(model, batch_size)
    return Embedder.from_checkpoint(prefix, epoch, get_contexts(cpu_contexts), batch_size, image_size)


def input_class_id(label, rec_path, key, num_classes, width=None):
    """Class id of the label of input record ``key``, checked against ``num_classes`` (the input's
    property): an error names the input file and key, never the output being written."""
    arr = np.asarray(label, dtype=np.float32).reshape(-1)
    prop = os.path.join(os.path.dirname(rec_path), "property")
    if width is not None and arr.size != width:
        raise FaceKDError(f"{rec_path} record {key}: label has {arr.size} values, record 1 has {width}; "
                          "every image needs the same label layout, rebuild the dataset with face2rec2.py")
    if arr.size in (0, 3):
        raise FaceKDError(f"{rec_path} record {key}: a label of {arr.size} values has no meaning "
                          "(expected a class id, [class, aligned] or d+1 floats); rebuild the dataset")
    value = float(arr[-1] if arr.size >= 4 else arr[0])
    if not (np.isfinite(value) and value == int(value) and 0 <= value < num_classes):
        raise FaceKDError(f"{rec_path} record {key}: class id {value:g} is not an integer in "
                          f"0..{num_classes - 1} (num_classes of {prop}); fix that record's label "
                          "(rebuild the dataset with face2rec2.py) or num_classes in the property file")
    return int(value)


def target_files(src_dir):
    """The verification targets ``src_dir/*.bin``, sorted."""
    return sorted(glob.glob(os.path.join(glob.escape(src_dir), "*.bin")))


def copy_targets(src_dir, dst_dir):
    """Copy the verification targets ``src_dir/*.bin`` into ``dst_dir``; returns their names."""
    names = []
    for path in target_files(src_dir):
        shutil.copyfile(path, os.path.join(dst_dir, os.path.basename(path)))
        names.append(os.path.basename(path))
    return names


# ----------------------------------------------------------------------------- step 1: images

def image_path(cls, key, ext):
    """Path of an extracted image relative to ``DIR/images``."""
    return f"{cls}/{key}{ext}"


EXTRACT_TOOL = "bin_get_images.py"


def extract_images(data_dir, out_dir, overwrite=False, progress=True):
    """Step 1: write every image of ``data_dir/train.rec`` to ``out_dir/images`` plus the index."""
    from .recordio import RecordDataset

    start = time.time()
    classes = set()
    check_separate(data_dir, "--data-dir", out_dir)
    check_output_folder(out_dir, overwrite, EXTRACT_TOOL)
    with RecordDataset(data_dir) as ds, \
            staged_output(out_dir, overwrite, tool=EXTRACT_TOOL, kind="work-folder") as staged:
        images_dir = os.path.join(staged, "images")
        labels_dir = os.path.join(staged, "labels")
        os.makedirs(images_dir)
        os.makedirs(labels_dir)
        with open(os.path.join(labels_dir, INDEX_FILE), "w") as index, \
                _progress(ds.num_images, "extract", progress) as bar:
            for key, label, payload in ds.iter_records():
                cls = input_class_id(label, ds.rec_path, key, ds.num_classes, ds.layout.width)
                rel = image_path(cls, key, image_extension(payload, f"{ds.rec_path} record {key}"))
                if cls not in classes:
                    os.makedirs(os.path.join(images_dir, str(cls)), exist_ok=True)
                    classes.add(cls)
                with open(os.path.join(images_dir, rel), "wb") as f:
                    f.write(payload)
                index.write(f"{key}\t{cls}\t{rel}\n")
                bar.update(1)
        num_images = ds.num_images
    return StepSummary(num_images, len(classes), time.time() - start, out_dir)


# ----------------------------------------------------------------------------- index

IndexEntry = namedtuple("IndexEntry", "key cls path")


def _index_path(labels_dir):
    path = os.path.join(labels_dir, INDEX_FILE)
    if not os.path.isfile(path):
        raise FaceKDError(f"--labels {labels_dir}: no {INDEX_FILE}; run data_prepare/bin_get_images.py first")
    return path


def count_index(labels_dir):
    """Number of images listed in ``labels_dir/index.tsv``."""
    with open(_index_path(labels_dir), "rb") as f:
        return sum(1 for _ in f)


def iter_index(labels_dir):
    """Yield :class:`IndexEntry` for each line of ``labels_dir/index.tsv``, in order."""
    path = _index_path(labels_dir)
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, 1):
            try:
                line = raw.decode("utf-8")
                parts = line.rstrip("\n").split("\t")
                if len(parts) != 3 or "\0" in line:
                    raise ValueError
                yield IndexEntry(int(parts[0]), int(parts[1]), parts[2])
            except ValueError:  # UnicodeDecodeError included
                raise FaceKDError(f"{path} line {lineno}: expected 'key<TAB>class<TAB>path', "
                                  f"got {raw.rstrip()[:80]!r}; re-run data_prepare/bin_get_images.py") from None


def _batches(iterable, size):
    batch = []
    for item in iterable:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


# ----------------------------------------------------------------------------- step 2: vectors

def load_images(images_dir, entries):
    """Decode the images of index ``entries`` into uint8 RGB (B, H, W, 3)."""
    from .images import decode

    out = []
    for e in entries:
        path = os.path.join(images_dir, e.path)
        try:
            with open(path, "rb") as f:
                payload = f.read()
        except OSError as exc:
            raise FaceKDError(f"--images {images_dir}: cannot read {e.path} ({exc.strerror}); "
                              "re-run data_prepare/bin_get_images.py") from None
        out.append(decode(payload, path))
    shapes = {img.shape for img in out}
    if len(shapes) != 1:
        raise FaceKDError(f"--images {images_dir}: images of one batch differ in size {sorted(shapes)}")
    return np.stack(out)


def first_image_size(images_dir, labels_dir):
    """(height, width) of the first indexed image (the teacher is bound for that size)."""
    for entry in iter_index(labels_dir):
        return load_images(images_dir, [entry]).shape[1:3]
    raise FaceKDError(f"--labels {labels_dir}: {INDEX_FILE} is empty")


def embeddings_path(labels_dir):
    return os.path.join(labels_dir, EMBEDDINGS_FILE)


EMBED_TOOL = "save_embeddings.py"


def check_embeddings_output(labels_dir, overwrite):
    """Before loading the teacher: leftovers of a killed run cleared (or the previous vectors
    restored, see :func:`recover_leftovers`), an existing ``embeddings.npy`` only with
    ``overwrite``, and ``labels_dir`` writable."""
    _index_path(labels_dir)
    recover_leftovers(embeddings_path(labels_dir), EMBED_TOOL, "--labels")
    check_output(embeddings_path(labels_dir), overwrite, "--labels")
    check_writable_dir(labels_dir, "--labels")


def save_embeddings(embedder, images_dir, labels_dir, overwrite=False, progress=True):
    """Step 2: the teacher's raw fc1 output of every indexed image -> ``labels_dir/embeddings.npy``.

    One float32 (N, d) ``.npy`` written through a memmap, batch by batch (``embedder.batch_size``),
    under ``embeddings.npy.partial`` until complete.
    """
    start = time.time()
    check_embeddings_output(labels_dir, overwrite)
    n = count_index(labels_dir)
    if n == 0:
        raise FaceKDError(f"--labels {labels_dir}: {INDEX_FILE} is empty")
    final = embeddings_path(labels_dir)
    staged = final + PARTIAL
    vectors = np.lib.format.open_memmap(staged, mode="w+", dtype=np.float32, shape=(n, embedder.emb_size))
    written = False
    try:
        row = 0
        with _progress(n, "embed", progress) as bar:
            for entries in _batches(iter_index(labels_dir), embedder.batch_size):
                emb = embedder.embed(load_images(images_dir, entries))
                check_finite(emb, [e.key for e in entries], "teacher")
                vectors[row:row + len(entries)] = emb
                row += len(entries)
                bar.update(len(entries))
        vectors.flush()
        written = True
    finally:
        del vectors  # closes the memmap before the rename or the removal
        if not written:
            remove_path(staged)
    replace_path(staged, final)
    return StepSummary(n, None, time.time() - start, final)


def check_finite(vectors, keys, who):
    """Raise when a teacher vector has NaN/inf (a broken checkpoint), naming the record key."""
    bad = ~np.isfinite(vectors).all(axis=1)
    if bad.any():
        key = keys[int(np.argmax(bad))]
        raise FaceKDError(f"{who} produced a non-finite embedding for record {key}; check --model")


def load_embeddings(labels_dir, expected_rows):
    """Memmap of ``labels_dir/embeddings.npy``, validated against the index length."""
    path = embeddings_path(labels_dir)
    if not os.path.isfile(path):
        raise FaceKDError(f"--labels {labels_dir}: no {EMBEDDINGS_FILE}; run data_prepare/save_embeddings.py first")
    vectors = np.load(path, mmap_mode="r")
    if vectors.ndim != 2 or vectors.shape[0] != expected_rows or vectors.dtype != np.float32:
        raise FaceKDError(f"{path}: expected float32 ({expected_rows}, d), got {vectors.dtype} {vectors.shape}; "
                          "re-run data_prepare/save_embeddings.py --overwrite")
    return vectors


# ----------------------------------------------------------------------------- step 3: .lst

def soft_lst_entries(images_dir, labels_dir):
    """Yield one aligned :class:`facekd.data.lst.LstEntry` per indexed image, in index order:
    the absolute image path and the soft label [teacher vector, class id]."""
    from .lst import LstEntry

    n = count_index(labels_dir)
    vectors = load_embeddings(labels_dir, n)
    images_dir = os.path.abspath(images_dir)
    row = 0
    for chunk in _batches(iter_index(labels_dir), 4096):
        soft = label_layout.make_soft(vectors[row:row + len(chunk)], [e.cls for e in chunk])
        row += len(chunk)
        for e, label in zip(chunk, soft):
            yield LstEntry(True, os.path.join(images_dir, e.path), label)


def write_soft_lst(images_dir, labels_dir, lst_path, overwrite=False, targets_dir=None, progress=True):
    """Step 3: ``lst_path`` (e.g. OUT/train.lst) of soft labels, grouped by class, for face2rec2.py.

    With ``targets_dir``, its ``*.bin`` verification targets are copied beside the list.
    """
    from tqdm import tqdm

    from .lst import write_lst

    start = time.time()
    if not lst_path.endswith(".lst"):
        raise FaceKDError(f"--out {lst_path}: the list name must end in .lst (e.g. OUT/train.lst)")
    if os.path.isdir(lst_path):
        raise FaceKDError(f"--out {lst_path} is a folder; give the list file to write, e.g. {lst_path}/train.lst")
    if not os.path.isdir(images_dir):
        raise FaceKDError(f"--images {images_dir}: not a folder; pass the images folder written by "
                          "data_prepare/bin_get_images.py")
    folder = os.path.dirname(os.path.abspath(lst_path))
    if targets_dir is not None:
        if not os.path.isdir(targets_dir):
            raise FaceKDError(f"--targets {targets_dir}: not a folder; pass the original dataset folder")
        if os.path.realpath(targets_dir) == os.path.realpath(folder):
            raise FaceKDError(f"--out {lst_path} is in the --targets folder {targets_dir}: its .bin files would be "
                              "copied onto themselves and face2rec2.py there would replace that dataset; "
                              "write the list to a new folder")
    if is_inside(os.path.realpath(folder), os.path.realpath(images_dir)):  # not among the images it lists
        raise FaceKDError(f"--out {lst_path} is inside the input --images {images_dir}; "
                          "write the list to a new folder")
    clear_leftovers(glob.escape(lst_path) + ".tmp*", lambda m: notice(f"save_lst.py: {m}"))
    check_output(lst_path, overwrite)
    if targets_dir is not None and not overwrite:
        for path in target_files(targets_dir):
            there = os.path.join(folder, os.path.basename(path))
            if os.path.lexists(there):
                raise FaceKDError(f"--out {lst_path}: {there} already exists and --targets would replace it; "
                                  "choose another folder or pass --overwrite")
    n = count_index(labels_dir)
    load_embeddings(labels_dir, n)  # fail before the progress bar starts
    check_writable_dir(folder, "--out")
    os.makedirs(folder, exist_ok=True)
    entries = tqdm(soft_lst_entries(images_dir, labels_dir), total=n, desc="lst", unit="img",
                   disable=not progress, smoothing=0.1)
    write_lst(lst_path, entries)
    if targets_dir is not None:
        copy_targets(targets_dir, folder)
    return StepSummary(n, None, time.time() - start, lst_path)
