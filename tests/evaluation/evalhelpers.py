"""Helpers of the evaluation tests: a tiny flip-sensitive network, .bin targets, script loading."""
import importlib.util
import os

import cv2
import mxnet as mx
import numpy as np

from facekd.data.binfile import save_bin

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

SIZE = (8, 8)


def tiny_symbol(emb=6):
    """data -> 3x3 conv -> relu -> FullyConnected pre_fc1 -> BatchNorm fc1 -> fc7 -> softmax."""
    x = mx.sym.Convolution(mx.sym.Variable("data") / 255.0, kernel=(3, 3), num_filter=4, name="conv0")
    x = mx.sym.Activation(x, act_type="relu")
    x = mx.sym.FullyConnected(x, num_hidden=emb, name="pre_fc1")
    x = mx.sym.BatchNorm(x, fix_gamma=True, eps=2e-5, name="fc1")
    x = mx.sym.FullyConnected(x, num_hidden=3, no_bias=True, name="fc7")
    return mx.sym.SoftmaxOutput(x, name="softmax")


def tiny_params(size=SIZE, emb=6, seed=0):
    rng = np.random.RandomState(seed)
    h, w = size
    arg = {"conv0_weight": rng.randn(4, 3, 3, 3), "conv0_bias": rng.randn(4) * 0.1,
           "pre_fc1_weight": rng.randn(emb, 4 * (h - 2) * (w - 2)) * 0.3, "pre_fc1_bias": rng.randn(emb),
           "fc1_gamma": np.ones(emb), "fc1_beta": rng.randn(emb) * 0.1, "fc7_weight": rng.randn(3, emb)}
    aux = {"fc1_moving_mean": rng.randn(emb) * 0.1, "fc1_moving_var": rng.rand(emb) + 0.5}
    return ({k: mx.nd.array(v) for k, v in arg.items()}, {k: mx.nd.array(v) for k, v in aux.items()})


def write_target(path, rng, n_pairs=10, size=SIZE, odd_size=None):
    """A PNG .bin target; returns the RGB images as they should be decoded (and resized)."""
    images, bins = [], []
    for i in range(2 * n_pairs):
        shape = odd_size if odd_size and i % 5 == 0 else size
        rgb = rng.randint(0, 256, size=shape + (3,)).astype(np.uint8)
        ok, buf = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        bins.append(buf.tobytes())
        images.append(cv2.resize(rgb, (size[1], size[0]), interpolation=cv2.INTER_LINEAR)
                      if shape != size else rgb)
    issame = [bool(v) for v in rng.rand(n_pairs) < 0.5]
    save_bin(str(path), bins, issame)
    return np.stack(images), np.array(issame)


def load_script(name):
    """The module of recognition/eval/<name>.py (scripts are not a package)."""
    path = os.path.join(ROOT, "recognition", "eval", f"{name}.py")
    spec = importlib.util.spec_from_file_location(f"facekd_script_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def plain_fc1(arg, aux, images):
    """Raw fc1 outputs (float32) of uint8 RGB NHWC ``images``, from one forward of a plain
    ``mx.mod.Module`` over the uncut graph's ``fc1_output`` (no project code involved)."""
    images = np.asarray(images)
    data = mx.nd.array(images.transpose(0, 3, 1, 2).astype(np.float32))
    symbol = tiny_symbol(emb=arg["pre_fc1_bias"].shape[0]).get_internals()["fc1_output"]
    module = mx.mod.Module(symbol, data_names=["data"], label_names=None, context=mx.cpu())
    module.bind(data_shapes=[("data", data.shape)], for_training=False)
    module.set_params({k: v for k, v in arg.items() if k != "fc7_weight"}, aux)
    module.forward(mx.io.DataBatch(data=[data]), is_train=False)
    return module.get_outputs()[0].asnumpy()


def plain_flip_pair(arg, aux, images):
    """(original, flip) raw fc1 outputs of uint8 RGB NHWC ``images``, in one plain forward."""
    images = np.asarray(images)
    out = plain_fc1(arg, aux, np.concatenate([images, images[:, :, ::-1]]))
    return out[:len(images)], out[len(images):]


def write_ijb_set(root, name, faces, pairs, galleries=(), probes=(), seed=0):
    """``meta/`` and ``loose_crop/`` of an IJB-layout set in insightface's file formats.

    ``faces``: (image name, template, media, detector score, 112x112 RGB face) rows;
    ``pairs``: (template, template, 0/1); ``galleries``: (list name, rows); ``probes``: rows, a
    row being (template, subject, image name). Each face is pasted at an integer offset into a
    larger random canvas and its landmarks are the ArcFace template moved by that offset, so the
    aligned crop is the face itself. The landmark file lists the images in reverse order.
    """
    from facekd.data.align import ARCFACE_TEMPLATE

    rng = np.random.RandomState(seed)
    meta, crops = root / "meta", root / "loose_crop"
    meta.mkdir(parents=True)
    crops.mkdir()
    tid_lines, lmk_lines = [], []
    for k, (image, template, media, score, face) in enumerate(faces):
        dx, dy = 5 + 3 * (k % 7), 11 + k % 5
        canvas = rng.randint(0, 256, size=(150, 140, 3)).astype(np.uint8)
        canvas[dy:dy + 112, dx:dx + 112] = face
        cv2.imwrite(str(crops / image), cv2.cvtColor(canvas, cv2.COLOR_RGB2BGR))
        landmarks = ARCFACE_TEMPLATE + [dx, dy]
        tid_lines.append(f"{image} {template} {media}")
        lmk_lines.append(" ".join([image] + [f"{v:.4f}" for v in landmarks.reshape(-1)] + [repr(float(score))]))
    (meta / f"{name}_face_tid_mid.txt").write_text("\n".join(tid_lines) + "\n")
    (meta / f"{name}_name_5pts_score.txt").write_text("\n".join(reversed(lmk_lines)) + "\n")
    (meta / f"{name}_template_pair_label.txt").write_text("".join(f"{a} {b} {y}\n" for a, b, y in pairs))
    header = "TEMPLATE_ID,SUBJECT_ID,FILENAME\n"
    for list_name, rows in list(galleries) + ([("probe_mixed", probes)] if probes else []):
        stem = f"1N_gallery_{list_name}" if list_name != "probe_mixed" else "1N_probe_mixed"
        (meta / f"{name}_{stem}.csv").write_text(header + "".join(f"{t},{s},{f}\n" for t, s, f in rows))
