"""Small builders shared by the data-layer tests (images, raw MXNet-written datasets)."""
import os

import cv2
import mxnet as mx
import numpy as np


def face_like(seed, size=112):
    """A deterministic RGB uint8 test image with some structure (gradients + a disc)."""
    rng = np.random.RandomState(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    img = np.stack([(xx * 2 + seed * 7) % 256, (yy * 2 + seed * 13) % 256,
                    np.full_like(xx, rng.randint(0, 256))], axis=-1).astype(np.uint8)
    cv2.circle(img, (size // 2, size // 2), size // 4, tuple(int(v) for v in rng.randint(0, 256, 3)), -1)
    return img


def png_bytes(rgb):
    """Lossless PNG bytes of an RGB image, encoded by OpenCV directly (independent of facekd)."""
    ok, buf = cv2.imencode(".png", np.ascontiguousarray(rgb[..., ::-1]))
    assert ok
    return buf.tobytes()


def write_raw_dataset(folder, labels, payloads, identities, header=None, order=None,
                      prop="10,112,112"):
    """Write a dataset with MXNet's API only: header, images, identity records, property.

    ``identities`` are [first, last+1] pairs; ``header`` overrides the [N+1, N+1+K]
    header label (None for the correct one, False to omit record 0); ``order``
    permutes the order records are written in (keys stay the same).
    """
    os.makedirs(folder, exist_ok=True)
    n, k = len(labels), len(identities)
    records = {}
    if header is not False:
        head = [n + 1, n + 1 + k] if header is None else header
        records[0] = mx.recordio.pack(mx.recordio.IRHeader(0, np.array(head, np.float32), 0, 0), b"")
    for i, (label, payload) in enumerate(zip(labels, payloads)):
        records[i + 1] = mx.recordio.pack(mx.recordio.IRHeader(0, label, i + 1, 0), payload)
    for j, rng in enumerate(identities):
        records[n + 1 + j] = mx.recordio.pack(mx.recordio.IRHeader(0, np.array(rng, np.float32), n + 1 + j, 0), b"")
    rec = mx.recordio.MXIndexedRecordIO(os.path.join(folder, "train.idx"), os.path.join(folder, "train.rec"), "w")
    for key in (sorted(records) if order is None else order):
        rec.write_idx(key, records[key])
    rec.close()
    if prop is not None:
        with open(os.path.join(folder, "property"), "w") as f:
            f.write(prop)


def dots_image(points, size, radius=3):
    """Black RGB image of (height, width) ``size`` with white discs at the given (x, y) points."""
    img = np.zeros((size[0], size[1], 3), np.uint8)
    for x, y in points:
        cv2.circle(img, (int(round(x * 16)), int(round(y * 16))), radius * 16, (255, 255, 255), -1,
                   lineType=cv2.LINE_AA, shift=4)
    return img


def dot_centres(img, points, window=7):
    """Intensity-weighted centre of the bright pixels within ``window`` px of each expected (x, y)."""
    gray = img.astype(np.float64).mean(axis=2)
    centres = []
    for x, y in points:
        x0, y0 = int(round(x)) - window, int(round(y)) - window
        patch = gray[y0:y0 + 2 * window + 1, x0:x0 + 2 * window + 1]
        yy, xx = np.mgrid[0:patch.shape[0], 0:patch.shape[1]]
        centres.append([x0 + (xx * patch).sum() / patch.sum(), y0 + (yy * patch).sum() / patch.sum()])
    return np.array(centres)


def rotate_scale(points, scale, degrees, shift):
    """scale * R(degrees) @ p + shift for each (x, y) row, in float64."""
    t = np.deg2rad(degrees)
    rot = np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])
    return scale * np.asarray(points, np.float64) @ rot.T + np.asarray(shift, np.float64)


def read_bin_file(path):
    """(payloads, issame) of a .bin target, read with plain pickle (as insightface reads it)."""
    import pickle

    with open(path, "rb") as f:
        return pickle.load(f)


def run_make_synthetic(argv, capsys):
    """(exit code, stdout, stderr) of data_prepare/make_synthetic.py's main under the CLI wrapper."""
    import runpy

    from facekd.errors import run_cli

    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    main = runpy.run_path(os.path.join(root, "data_prepare", "make_synthetic.py"))["main"]
    try:
        run_cli(main, argv)
        code = 0
    except SystemExit as exc:
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err
