"""Parameter and FLOP counts of a symbol, from its JSON graph and inferred shapes (no binding).

``count_flops`` modes:

* ``"conv_fc"`` (insightface): 2 per multiply-accumulate of Convolution and
  FullyConnected layers (a grouped convolution does 1/groups of the MACs); biases,
  BatchNorm, activations and additions are free.
* ``"pocketnet"`` (the PocketNet paper's table): ``"conv_fc"`` plus BatchNorm
  2 per output element, activations (PReLU) 1 per output element and pooling
  kernel-area (9 for 3x3) per output element.
"""
import json

import mxnet as mx
import numpy as np

from ..errors import FaceKDError, mxnet_cause
from .shapes import infer_shape

MODES = ("conv_fc", "pocketnet")
DEFAULT_SHAPE = (1, 3, 112, 112)


def _is_excluded(name, inputs):
    return name in inputs or name == "softmax_label" or name.startswith("fc7")


def _infer(sym, data_shape, shapes):
    inputs = dict(shapes, data=tuple(data_shape))
    internals = sym.get_internals()
    try:
        arg_shapes, out_shapes, _ = infer_shape(internals, **inputs)
    except mx.base.MXNetError as exc:
        raise FaceKDError(f"cannot infer the network's shapes for input {inputs}: "
                          f"{mxnet_cause(exc)}") from None
    if arg_shapes is None or any(s is None or 0 in s for s in out_shapes):
        raise FaceKDError(f"cannot infer all of the network's shapes from {inputs}; "
                          "pass the shapes of its other inputs")
    args = dict(zip(internals.list_arguments(), arg_shapes))
    outputs = dict(zip(internals.list_outputs(), out_shapes))
    return inputs, args, outputs


def count_params(sym, data_shape=DEFAULT_SHAPE, **shapes):
    """Number of learnable parameters: arguments except inputs, ``softmax_label`` and ``fc7*``.

    Auxiliary states (BatchNorm moving mean/var) are not counted. ``shapes`` gives the
    shapes of inputs other than ``data`` when the graph has any.
    """
    inputs, args, _ = _infer(sym, data_shape, shapes)
    return int(sum(int(np.prod(s)) for name, s in args.items() if not _is_excluded(name, inputs)))


def _entry_shape(nodes, entry, outputs):
    """Shape of graph entry ``[node_id, output_index, ...]`` (a variable or an op output)."""
    node, index = nodes[entry[0]], entry[1]
    name = node["name"]
    keys = (name,) if node["op"] == "null" else (f"{name}_output", f"{name}_output{index}")
    for key in keys:
        if key in outputs:
            return outputs[key]
    raise FaceKDError(f"no inferred shape for {name!r} (output {index})")


def _kernel_area(attrs, in_shape):
    if attrs.get("global_pool", "False") in ("True", "true", "1"):
        return int(np.prod(in_shape[2:]))
    kernel = [int(k) for k in attrs["kernel"].strip("()[] ").split(",") if k.strip()]
    return int(np.prod(kernel))


def count_flops(sym, data_shape=DEFAULT_SHAPE, mode="conv_fc", **shapes):
    """FLOPs of one forward pass at ``data_shape`` (batch included), per ``mode`` (see module doc)."""
    if mode not in MODES:
        raise FaceKDError(f"unknown FLOP counting mode {mode!r}; use one of {', '.join(MODES)}")
    _, _, outputs = _infer(sym, data_shape, shapes)
    nodes = json.loads(sym.tojson())["nodes"]
    total = 0
    for node_id, node in enumerate(nodes):
        op = node["op"]
        if op == "null":
            continue
        counted = op in ("Convolution", "FullyConnected") or (
            mode == "pocketnet" and op in ("BatchNorm", "LeakyReLU", "Activation", "Pooling"))
        if not counted:
            continue
        out_elems = int(np.prod(_entry_shape(nodes, [node_id, 0], outputs)))
        if op in ("Convolution", "FullyConnected"):
            weight = _entry_shape(nodes, node["inputs"][1], outputs)
            if op == "Convolution":  # weight (out, in/groups, kh, kw): MACs per output element
                total += 2 * out_elems * int(np.prod(weight[1:]))
            else:  # weight (out, in): MACs per output element = in
                total += 2 * out_elems * int(weight[1])
        elif mode == "pocketnet":
            if op == "BatchNorm":
                total += 2 * out_elems
            elif op in ("LeakyReLU", "Activation"):
                total += out_elems
            elif op == "Pooling":
                in_shape = _entry_shape(nodes, node["inputs"][0], outputs)
                total += out_elems * _kernel_area(node.get("attrs", {}), in_shape)
    return total


def format_flops(n):
    """Human-readable count: 440.2M, 24.2G, 13.5K."""
    for scale, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "K")):
        if abs(n) >= scale:
            return f"{n / scale:.1f}{suffix}"
    return str(int(n))
