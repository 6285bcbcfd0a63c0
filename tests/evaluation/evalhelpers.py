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
