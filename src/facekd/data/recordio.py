"""The insightface training-set layout over MXNet's own ``mx.recordio``.

For N images of K identities (docs/formats.md):

* key 0: header label ``[N+1, N+1+K]``, empty payload;
* keys 1..N: one encoded image each, with its label (scalar, ``[class, aligned]``
  or a soft ``[teacher..., class]`` row);
* keys N+1..N+K: ``[first_key, last_key+1]`` of each identity, empty payload;

plus ``property`` = ``num_classes,height,width``. :class:`RecordDataset` reads and
validates such a folder; :class:`RecordDatasetWriter` writes one atomically.
"""
import ctypes
import os
import struct
import warnings

import mxnet as mx
import numpy as np

from ..config import read_property
from ..errors import FaceKDError, mxnet_cause
from . import labels as L
from .images import decode
from ..atomic import atomic_path

FLOAT32_EXACT = 2 ** 24  # keys and class ids are stored as float32 labels
_LABEL_SAMPLE = 16  # image labels checked on open, besides the first and the last


def write_property(folder, num_classes, height, width):
    """Write ``folder/property`` (``num_classes,height,width``) atomically."""
    with atomic_path(os.path.join(folder, "property")) as tmp, open(tmp, "w") as f:
        f.write(f"{int(num_classes)},{int(height)},{int(width)}\n")


_INDEX_CHUNK = 1 << 23  # bytes of .idx text parsed at a time


def _index_lines(idx_path):
    """Count the lines of an index file (a last line without newline counts)."""
    count, last = 0, b"\n"
    with open(idx_path, "rb") as f:
        for block in iter(lambda: f.read(_INDEX_CHUNK), b""):
            count += block.count(b"\n")
            last = block[-1:]
    return count + (last != b"\n")


def _index_blocks(idx_path):
    """The index text in blocks of whole lines."""
    rest = b""
    with open(idx_path, "rb") as f:
        for block in iter(lambda: f.read(_INDEX_CHUNK), b""):
            block = rest + block
            cut = block.rfind(b"\n") + 1
            rest = block[cut:]
            if cut:
                yield block[:cut]
    if rest:
        yield rest + b"\n"


def _index_pairs(block, idx_path):
    """int64 (key, offset) pairs of one block of whole lines; a malformed line is an error."""
    lines = block.count(b"\n")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        try:
            pairs = np.fromstring(block.decode("ascii", errors="replace"), dtype=np.int64, sep=" ")
        except (DeprecationWarning, ValueError):
            pairs = None
    if pairs is None or pairs.size != 2 * lines:
        raise FaceKDError(f"{idx_path}: not an MXNet index (expected lines 'key<TAB>offset' of integers); "
                          "rebuild it with face2rec2.py")
    return pairs[0::2], pairs[1::2]


def read_index(idx_path):
    """Record offsets of an MXNet ``.idx`` file as int64 (M,), indexed by key; keys must be 0..M-1.

    The text is parsed a few MB at a time straight into the offset array, so reading the
    index of millions of records costs little more than the array itself (8 bytes a record).
    """
    size = _index_lines(idx_path)
    offsets = np.empty(size, dtype=np.int64)
    seen = np.zeros(size, dtype=bool)
    out_of_range = False
    for block in _index_blocks(idx_path):
        keys, offs = _index_pairs(block, idx_path)
        inside = (keys >= 0) & (keys < size)
        out_of_range |= not inside.all()
        offsets[keys[inside]] = offs[inside]
        seen[keys[inside]] = True
    if size and not seen[0]:
        raise FaceKDError(f"{idx_path}: record 0 (the header [N+1, N+1+K]) is absent; this is not an "
                          "insightface training set, rebuild it with face2rec2.py")
    # M lines whose keys all lie in 0..M-1 and cover it: no key is missing or repeated
    if out_of_range or not seen.all():
        raise FaceKDError(f"{idx_path}: record keys are not exactly 0..{size - 1} "
                          "(missing or duplicate keys); rebuild the dataset with face2rec2.py")
    return offsets


class _OffsetTable:
    """Read-only key -> offset mapping over a NumPy array (lean stand-in for MXNet's dict)."""

    def __init__(self, offsets):
        self.offsets = offsets

    def __getitem__(self, key):
        if not 0 <= key < self.offsets.size:
            raise KeyError(key)
        return int(self.offsets[key])

    def __contains__(self, key):
        return 0 <= key < self.offsets.size

    def __len__(self):
        return self.offsets.size


class _IndexedReader(mx.recordio.MXIndexedRecordIO):
    """MXNet's indexed reader with the index parsed once into NumPy (fast on millions of keys)."""

    def __init__(self, idx_path, rec_path, offsets):
        self._table = _OffsetTable(offsets)
        super().__init__(idx_path, rec_path, "r")

    def open(self):
        mx.recordio.MXRecordIO.open(self)
        self.idx = self._table
        self.keys = range(len(self._table))
        self.fidx = None

    def close(self):
        mx.recordio.MXRecordIO.close(self)

    def read(self):
        """The next record's bytes (None at the end), as MXRecordIO.read.

        MXNet's own read casts each record to a ``c_char * size`` array type, and ctypes keeps
        every such type forever: a few KB for each distinct record size, tens of MB over a
        dataset of JPEGs. ``string_at`` copies the same bytes without creating a type.
        """
        self._check_pid(allow_reset=False)
        buf, size = ctypes.c_char_p(), ctypes.c_size_t()
        mx.base.check_call(mx.base._LIB.MXRecordIOReaderReadRecord(self.handle, ctypes.byref(buf),
                                                                   ctypes.byref(size)))
        return ctypes.string_at(buf, size.value) if buf else None

    def read_position(self):
        """Byte offset of the next record the reader will return (MXNet's C API MXRecordIOReaderTell)."""
        pos = ctypes.c_size_t()
        mx.base.check_call(mx.base._LIB.MXRecordIOReaderTell(self.handle, ctypes.byref(pos)))
        return pos.value


def _unpack_label(header):
    """The label of an unpacked record header as a float32 1-D array."""
    if header.flag > 0:
        return np.array(header.label, dtype=np.float32)
    return np.array([header.label], dtype=np.float32)


def _unpack(record, path, key):
    """mx.recordio.unpack with a clear error for a corrupt record."""
    try:
        return mx.recordio.unpack(record)
    except (ValueError, struct.error):
        raise FaceKDError(f"{path}: record {key} is corrupt ({len(record)} bytes do not hold its "
                          "header and label); rebuild the dataset") from None


def _range_label(record, path, key, what):
    """[a, b) integer pair stored in a header/identity record."""
    header, payload = _unpack(record, path, key)
    label = _unpack_label(header)
    if header.flag != 2 or label.size != 2 or np.any(label != np.round(label)):
        raise FaceKDError(f"{path}: record {key} should be the {what} (a label of 2 integers, flag 2), "
                          f"got flag {header.flag} label {label[:4].tolist()}; the file is not an "
                          "insightface training set, rebuild it with face2rec2.py")
    return int(label[0]), int(label[1])


class RecordDataset:
    """Reader of ``folder/{prefix}.rec``, ``.idx`` and ``property``, validated on open.

    Opening parses the index, the header and the identity records, and checks a
    sample of image labels (first, last and a few in between) for one width; it
    does not read every image.
    """

    def __init__(self, folder, prefix="train"):
        self.folder = folder
        self.rec_path = os.path.join(folder, prefix + ".rec")
        self.idx_path = os.path.join(folder, prefix + ".idx")
        for path in (self.rec_path, self.idx_path):
            if not os.path.isfile(path):
                raise FaceKDError(f"{path}: file not found; a dataset folder needs {prefix}.rec, "
                                  f"{prefix}.idx and property (build them with data_prepare/face2rec2.py)")
        prop = read_property(folder)
        if prop is None:
            raise FaceKDError(f"{os.path.join(folder, 'property')}: file not found; write one line "
                              "'num_classes,height,width' (e.g. 85742,112,112)")
        self.num_classes, height, width = prop
        self.image_size = (height, width)
        self._class_of_identity = None
        offsets = read_index(self.idx_path)
        if offsets.size == 0:
            raise FaceKDError(f"{self.idx_path}: the index is empty; rebuild the dataset with face2rec2.py")
        self._offsets = offsets
        self._reader = _IndexedReader(self.idx_path, self.rec_path, offsets)
        try:
            self._validate()
        except BaseException:
            self.close()
            raise

    # ------------------------------------------------------------------ validation
    def _raw(self, key, sequential=False):
        """The bytes of record ``key``: read at its index offset, or (``sequential``) the next record
        of the reader, which :meth:`iter_records` has placed at that offset.

        A damaged file (MXNet's framing check fails, or the bytes cannot hold the record header
        and the label it declares) is one line naming the file, the key and the byte offset;
        a record at or past the end of the file, or the last stored record running past it,
        means the file is truncated.
        """
        offset = int(self._offsets[key])

        def damaged(cause):
            return FaceKDError(f"{self.rec_path}: record {key} at byte {offset} is corrupt ({cause}); "
                               "the file is damaged, re-copy or rebuild it")

        def truncated(what):
            return FaceKDError(f"{self.rec_path}: record {key} at byte {offset} {what}, the file ends at "
                               f"byte {os.path.getsize(self.rec_path)}; the file is truncated, re-copy or rebuild it")

        try:
            record = self._reader.read() if sequential else self._reader.read_idx(key)
        except mx.base.MXNetError as exc:
            with open(self.rec_path, "rb") as f:  # MXNet's frame: magic, then 29 bits of length
                f.seek(offset)
                frame = f.read(8)
            size = os.path.getsize(self.rec_path)
            later = (self._offsets > offset) & (self._offsets < size)  # records stored after this one
            if len(frame) == 8 and not later.any():
                magic, length = struct.unpack("<II", frame)
                length &= (1 << 29) - 1  # the top 3 bits flag multi-part records
                if magic == 0xCED7230A and offset + 8 + length > size:
                    raise truncated(f"is cut short ({length} bytes declared)") from None
            cause = mxnet_cause(exc)
            raise damaged("MXNet cannot read it" if cause.startswith("Traceback") else cause) from None
        if record is None:
            raise truncated("is missing")
        if len(record) < mx.recordio._IR_SIZE:
            raise damaged(f"{len(record)} bytes cannot hold a {mx.recordio._IR_SIZE}-byte record header")
        flag = struct.unpack_from("I", record)[0]
        if mx.recordio._IR_SIZE + 4 * flag > len(record):
            raise damaged(f"its header declares a {flag}-float label, {len(record)} bytes cannot hold it")
        return record

    def _validate(self):
        start, stop = _range_label(self._raw(0), self.rec_path, 0, "header [N+1, N+1+K]")
        n, k = start - 1, stop - start
        if n < 1 or k < 0:
            raise FaceKDError(f"{self.rec_path}: header [{start}, {stop}] describes {n} images and {k} "
                              "identities; expected N >= 1 and K >= 0")
        if self._offsets.size != n + k + 1:
            raise FaceKDError(f"{self.rec_path}: header says {n} images + {k} identities = {n + k + 1} "
                              f"records, but {self.idx_path} has {self._offsets.size}; rebuild the dataset")
        self.num_images, self.num_identities = n, k
        idents = np.array([_range_label(self._raw(key), self.rec_path, key, "identity range [first, last+1]")
                           for key in range(n + 1, n + k + 1)], dtype=np.int64).reshape(k, 2)
        if k:
            bad = np.flatnonzero((idents[:, 0] < 1) | (idents[:, 1] > n + 1) | (idents[:, 0] >= idents[:, 1]))
            if bad.size:
                a, b = idents[bad[0]]
                raise FaceKDError(f"{self.rec_path}: identity record {n + 1 + bad[0]} range [{a}, {b}) is "
                                  f"empty or outside the images 1..{n}; rebuild the dataset")
            order = np.argsort(idents[:, 0], kind="stable")
            ordered = idents[order]
            clash = np.flatnonzero(ordered[1:, 0] < ordered[:-1, 1])
            if clash.size:
                i, j = order[clash[0]], order[clash[0] + 1]
                raise FaceKDError(f"{self.rec_path}: identity records {n + 1 + i} {idents[i].tolist()} and "
                                  f"{n + 1 + j} {idents[j].tolist()} overlap; rebuild the dataset")
        self.identities = idents
        sample = np.unique(np.concatenate([[1, n], np.linspace(1, n, _LABEL_SAMPLE + 2).astype(np.int64)]))
        first_label, first_payload = self.read(1)
        if first_label.size == 3:
            raise FaceKDError(f"{self.rec_path}: image labels of width 3 have no meaning "
                              "(expected 1, 2 or d+1 with d >= 3)")
        layout = L.describe(first_label)
        for key in sample:
            label, _ = self.read(int(key))
            if label.size != layout.width:
                raise FaceKDError(f"{self.rec_path}: image labels mix widths ({layout.width} at key 1, "
                                  f"{label.size} at key {key}); every image needs the same label layout")
            if not np.isfinite(label).all():
                raise FaceKDError(f"{self.rec_path}: image {key}: its label contains NaN or infinity; "
                                  "fix the record or rebuild the dataset")
            cls = L.class_id(label)
            if not 0 <= cls < self.num_classes:
                raise FaceKDError(f"{self.rec_path}: image {key} has class id {cls}, outside 0..{self.num_classes - 1} "
                                  f"of {os.path.join(self.folder, 'property')}; fix num_classes there")
        self.layout = layout
        shape = decode(first_payload, f"{self.rec_path} record 1").shape[:2]
        if tuple(shape) != self.image_size:
            raise FaceKDError(f"{self.rec_path}: images are {shape[0]}x{shape[1]} but "
                              f"{os.path.join(self.folder, 'property')} says {self.image_size[0]}x{self.image_size[1]}")

    # ------------------------------------------------------------------ access
    @property
    def class_of_identity(self):
        """Class id of each identity (int64 (K,)), read from its first image on first use."""
        if self._class_of_identity is None:
            self._class_of_identity = np.array([L.class_id(self.read(int(first))[0])
                                                for first in self.identities[:, 0]], dtype=np.int64)
        return self._class_of_identity

    def read(self, key):
        """(label float32 1-D, payload bytes) of record ``key`` (1..N for images)."""
        if not 0 <= key < self._offsets.size:
            raise FaceKDError(f"{self.rec_path}: key {key} is outside 0..{self._offsets.size - 1}")
        header, payload = _unpack(self._raw(key), self.rec_path, key)
        return _unpack_label(header), payload

    def read_images(self, keys):
        """(labels float32 (n, w), payloads) of image records ``keys``, every label checked against
        the dataset's layout and class count (the first bad one is an error naming its key)."""
        records = [self.read(int(k)) for k in keys]
        bad = L.first_bad_label([r[0] for r in records], self.layout, self.num_classes)
        if bad is not None:
            i, reason = bad
            raise FaceKDError(f"{self.rec_path}: image record {int(keys[i])}: {reason} (property: "
                              f"{self.num_classes} classes); fix the record or rebuild the dataset")
        return np.stack([r[0] for r in records]), [r[1] for r in records]

    def iter_records(self, start=1, stop=None):
        """Yield (key, label, payload) for keys start..stop-1 (default: all images), reading sequentially."""
        stop = self.num_images + 1 if stop is None else stop
        if not (0 <= start <= stop <= self._offsets.size):
            raise FaceKDError(f"{self.rec_path}: key range [{start}, {stop}) is outside 0..{self._offsets.size}")
        offsets, reader = self._offsets, self._reader
        for key in range(start, stop):
            if key == start or reader.read_position() != offsets[key]:  # seek only out of file order
                reader.seek(key)
            header, payload = _unpack(self._raw(key, sequential=True), self.rec_path, key)
            yield key, _unpack_label(header), payload

    def reopen(self):
        """Reopen the file handle (call in a child process after fork)."""
        self._reader.close()
        self._reader.open()

    def close(self):
        if getattr(self, "_reader", None) is not None:
            self._reader.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        return (f"RecordDataset({self.folder!r}: {self.num_images} images, {self.num_identities} identities, "
                f"{self.num_classes} classes, labels {self.layout.kind}/{self.layout.width})")


class IdentityTracker:
    """Checks a stream of image labels and forms identities where the class id changes.

    ``where`` names the source in errors. Images of one class must be contiguous
    (a class id that re-appears later is refused) and all labels share one width.
    """

    def __init__(self, where):
        self.where = where
        self.count = 0
        self.width = None
        self.max_class = -1
        self.identities = []  # [first image index (0-based), end]
        self._current = None
        self._seen = set()

    def add(self, label, item=None):
        """Validate one label; returns it as float32 1-D. ``item`` names it in errors (default: its index)."""
        item = f"image {self.count + 1}" if item is None else item
        arr = np.asarray(label, dtype=np.float32).reshape(-1)
        if arr.size in (0, 3):
            raise FaceKDError(f"{self.where}: {item}: a label of width {arr.size} has no meaning "
                              "(expected a class id, [class, aligned] or d+1 floats with d >= 3)")
        if not np.all(np.isfinite(arr)):
            raise FaceKDError(f"{self.where}: {item}: label contains NaN or infinity")
        if self.width is None:
            self.width = arr.size
        elif arr.size != self.width:
            raise FaceKDError(f"{self.where}: {item}: label width {arr.size} differs from the first "
                              f"image's {self.width}; every image needs the same label layout")
        value = arr[-1] if L.describe(arr).kind == L.SOFT else arr[0]
        if value < 0 or value != np.round(value) or value >= FLOAT32_EXACT:
            raise FaceKDError(f"{self.where}: {item}: class id {value} is not an integer in 0..{FLOAT32_EXACT - 1}")
        cls = int(value)
        if cls != self._current:
            if cls in self._seen:
                raise FaceKDError(f"{self.where}: {item}: class {cls} re-appears after other classes; "
                                  "images of one class must be contiguous (sort the list by class)")
            self._seen.add(cls)
            self._current = cls
            self.identities.append([self.count, self.count + 1])
        else:
            self.identities[-1][1] = self.count + 1
        self.max_class = max(self.max_class, cls)
        self.count += 1
        return arr


class _IndexWritingRecordIO(mx.recordio.MXIndexedRecordIO):
    """MXNet's indexed record writer without its in-memory key -> offset dict and key list.

    The files are the same (``key\toffset`` index lines, written by MXNet's own
    ``fidx``), but memory stays flat over millions of records.
    """

    def __init__(self, idx_path, rec_path):
        super().__init__(idx_path, rec_path, "w")

    def write_idx(self, idx, buf):
        position = self.tell()
        self.write(buf)
        self.fidx.write("%s\t%d\n" % (str(idx), position))


class RecordDatasetWriter:
    """Writes ``folder/{prefix}.rec/.idx`` (+ ``property`` when ``prefix == 'train'``) atomically.

    Records go to temporary files (``train.rec.tmp<pid>``, ``train.idx.tmp<pid>``) that
    :meth:`commit` renames into place; :meth:`abort` (or an exception inside ``with``)
    removes them. Those of a writer killed before it could (its process gone) are removed
    when the next writer of the same files starts, with a line on stderr. Key 0 is
    written first as a fixed-size placeholder and filled in on commit, so the
    file has the usual insightface order.
    """

    def __init__(self, folder, num_classes=None, image_size=(112, 112), prefix="train", overwrite=False,
                 write_property_file=None):
        self.folder = folder
        self.rec_path = os.path.join(folder, prefix + ".rec")
        self.idx_path = os.path.join(folder, prefix + ".idx")
        self.num_classes = num_classes
        self.image_size = tuple(int(v) for v in image_size)
        self.write_property_file = prefix == "train" if write_property_file is None else write_property_file
        for path in (self.rec_path, self.idx_path):
            if os.path.exists(path) and not overwrite:
                raise FaceKDError(f"{path}: already exists; remove it or pass overwrite=True (--overwrite)")
        os.makedirs(folder, exist_ok=True)
        import glob
        import sys

        from ..atomic import TMP_TAG, clear_leftovers

        prog = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "facekd"
        for final in (self.rec_path, self.idx_path, self.rec_path + ".header"):
            clear_leftovers(glob.escape(final) + TMP_TAG + "*",
                            lambda m: print(f"{prog}: {m}", file=sys.stderr, flush=True))
        self._tmp_rec = f"{self.rec_path}{TMP_TAG}{os.getpid()}"
        self._tmp_idx = f"{self.idx_path}{TMP_TAG}{os.getpid()}"
        self._tmp_header = f"{self.rec_path}.header{TMP_TAG}{os.getpid()}"
        self._tracker = IdentityTracker(self.rec_path)
        self._writer = _IndexWritingRecordIO(self._tmp_idx, self._tmp_rec)
        self._writer.write_idx(0, self._header_record(0, 0))
        self._header_size = self._writer.tell()
        self._open = True

    @staticmethod
    def _header_record(n, k):
        return mx.recordio.pack(mx.recordio.IRHeader(0, np.array([n + 1, n + 1 + k], np.float32), 0, 0), b"")

    def add(self, label, payload, item=None):
        """Append one image (encoded bytes) with its label (number or 1-D float array)."""
        if not self._open:
            raise FaceKDError(f"{self.rec_path}: the writer is already committed or aborted")
        arr = self._tracker.add(label, item)
        if not isinstance(payload, (bytes, bytearray, memoryview)) or len(payload) == 0:
            raise FaceKDError(f"{self.rec_path}: image {self._tracker.count}: payload must be non-empty "
                              "encoded image bytes")
        key = self._tracker.count
        value = float(arr[0]) if arr.size == 1 else arr
        self._writer.write_idx(key, mx.recordio.pack(mx.recordio.IRHeader(0, value, key, 0), bytes(payload)))

    @property
    def num_images(self):
        return self._tracker.count

    def commit(self):
        """Write identity records, header and property; rename into place. Returns (N, K)."""
        if not self._open:
            raise FaceKDError(f"{self.rec_path}: the writer is already committed or aborted")
        try:
            n, idents = self._tracker.count, self._tracker.identities
            k = len(idents)
            if n == 0:
                raise FaceKDError(f"{self.rec_path}: no images were added; nothing to write")
            if n + k + 1 >= FLOAT32_EXACT:
                raise FaceKDError(f"{self.rec_path}: {n + k + 1} records exceed what float32 labels can index")
            num_classes = self._tracker.max_class + 1 if self.num_classes is None else int(self.num_classes)
            if self._tracker.max_class >= num_classes:
                raise FaceKDError(f"{self.rec_path}: class id {self._tracker.max_class} does not fit "
                                  f"num_classes={num_classes}")
            for i, (first, end) in enumerate(idents):
                key = n + 1 + i
                rng = np.array([first + 1, end + 1], np.float32)
                self._writer.write_idx(key, mx.recordio.pack(mx.recordio.IRHeader(0, rng, key, 0), b""))
            self._writer.close()
            self._fill_header(n, k)
            if self.write_property_file:
                write_property(self.folder, num_classes, *self.image_size)
            os.replace(self._tmp_rec, self.rec_path)
            os.replace(self._tmp_idx, self.idx_path)
        except BaseException:
            self.abort()
            raise
        self._open = False
        self.num_classes = num_classes
        return n, k

    def _fill_header(self, n, k):
        """Overwrite the placeholder record 0 with the real header, framed by MXNet itself."""
        framed = mx.recordio.MXRecordIO(self._tmp_header, "w")
        framed.write(self._header_record(n, k))
        framed.close()
        with open(self._tmp_header, "rb") as f:
            header = f.read()
        os.remove(self._tmp_header)
        with open(self._tmp_rec, "r+b") as f:
            placeholder = f.read(self._header_size)
            if len(header) != self._header_size or header[:8] != placeholder[:8]:
                raise FaceKDError(f"{self.rec_path}: header record framing changed size; cannot finalise")
            f.seek(0)
            f.write(header)

    def abort(self):
        """Remove the temporary files; nothing is left behind."""
        if getattr(self, "_writer", None) is not None:
            self._writer.close()
        for path in (getattr(self, "_tmp_rec", None), getattr(self, "_tmp_idx", None),
                     getattr(self, "_tmp_header", None)):
            if path and os.path.exists(path):
                os.remove(path)
        self._open = False

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None and self._open:
            self.commit()
        elif self._open:
            self.abort()

    def __del__(self):
        if getattr(self, "_open", False):
            try:
                self.abort()
            except Exception:  # interpreter shutdown: best effort only
                pass
