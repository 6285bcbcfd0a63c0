"""ONNX export through MXNet's own exporter (``mx.onnx.export_model``), with the repairs it needs.

MXNet 1.9.1's converters get three things of these networks wrong; each is repaired in the
graph, never in the numbers the graph computes, and listed in the model's metadata:

* BatchNorm with ``fix_gamma=True`` (every ``fc1`` but PocketNet's): MXNet computes it with
  gamma = 1 whatever the stored gamma (weight decay moves it from 1 during training); the
  converter scales by the stored gamma. Repair: such a BatchNorm becomes ``fix_gamma=False``
  with a gamma of ones, the function MXNet computes.
* FullyConnected on a 4-D map (PocketNet's ``pre_fc1``): the converter's Gemm does not
  flatten. Repair: the explicit Flatten the embedder also inserts.
* PReLU (``LeakyReLU act_type='prelu'``): ONNX broadcasts the slope numpy-style, from the
  last axis, so a (C,) slope of an NCHW map scales the width axis (an error, or wrong numbers
  when W == C). Repair: the slope initializer becomes (C, 1, 1), one slope per channel.

Two more edits make the model conventional: the weights are initializers only, not graph
inputs (onnxruntime then folds and fuses them, and the model has the one input ``data``),
and the dynamic batch axis is named ``N``. The graph keeps MXNet's preprocessing nodes
(``_minusscalar0``, ``_mulscalar0``: ``(x - 127.5) * 0.0078125``), so the input is raw 0..255
RGB as in training, and insightface's onnxruntime face-analysis code, which looks for those
node names, feeds it raw pixels.
"""
import json
import os
import tempfile
from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..atomic import atomic_path
from ..errors import FaceKDError
from ..symbols.shapes import infer_shape

INPUT_NAME = "data"
BATCH_DIM = "N"
FLOAT_ONNX = "model.onnx"
INT8_ONNX = "model-int8.onnx"


@dataclass(frozen=True)
class Repair:
    """One fix of the exported graph: ``apply`` returns what it changed (a count, 0 = nothing)."""
    name: str
    reason: str
    apply: Callable


def _true(value):
    return str(value).strip().lower() in ("true", "1")


# ----------------------------------------------------------------------------- on the MXNet graph
# apply(symbol, arg_params, aux_params) -> (symbol, count); may replace entries of arg_params

def _ones_for_fixed_gamma(symbol, arg_params, aux_params):
    import mxnet as mx

    graph = json.loads(symbol.tojson())
    nodes, count = graph["nodes"], 0
    for node in nodes:
        attrs = node.setdefault("attrs", {})
        if node["op"] == "BatchNorm" and _true(attrs.get("fix_gamma", "True")):
            gamma = nodes[node["inputs"][1][0]]["name"]
            attrs["fix_gamma"] = "False"
            arg_params[gamma] = mx.nd.ones(arg_params[gamma].shape, dtype=arg_params[gamma].dtype)
            count += 1
    return (mx.sym.load_json(json.dumps(graph)) if count else symbol), count


def _flatten_before_fc(symbol, arg_params, aux_params):
    from ..embedder import flatten_fc_inputs

    flat = flatten_fc_inputs(symbol)
    return flat, len(flat.get_internals().list_outputs()) - len(symbol.get_internals().list_outputs())


GRAPH_REPAIRS = (
    Repair("fixed-gamma-as-ones", "BatchNorm fix_gamma=True is exported as fix_gamma=False with gamma = 1 "
           "(MXNet's exporter ignores fix_gamma)", _ones_for_fixed_gamma),
    Repair("flatten-before-fc", "an explicit Flatten before every FullyConnected on a map (MXNet's exporter "
           "makes a Gemm that does not flatten; the slim graph has them already)", _flatten_before_fc),
)


# ----------------------------------------------------------------------------- on the ONNX graph
# apply(model, ranks) -> count; ranks: MXNet node name -> rank of its first input

def _prelu_slope_per_channel(model, ranks):
    from onnx import numpy_helper

    inits = {t.name: t for t in model.graph.initializer}
    count = 0
    for node in model.graph.node:
        if node.op_type != "PRelu" or node.input[1] not in inits:
            continue
        rank = ranks.get(node.name)
        if rank is None:
            raise FaceKDError(f"PRelu {node.name}: its input's rank is unknown; cannot place the slope per channel")
        tensor = inits[node.input[1]]
        slope = numpy_helper.to_array(tensor)
        if slope.ndim == 1 and rank > 2:
            tensor.CopyFrom(numpy_helper.from_array(slope.reshape((-1,) + (1,) * (rank - 2)), tensor.name))
            count += 1
    return count


def _weights_not_inputs(model, ranks):
    inits = {t.name for t in model.graph.initializer}
    keep = []
    for value in model.graph.input:
        if value.name not in inits:
            keep.append(type(value)())
            keep[-1].CopyFrom(value)  # a copy: the originals go with the deletion below
    count = len(model.graph.input) - len(keep)
    del model.graph.input[:]
    model.graph.input.extend(keep)
    return count


def _named_batch_axis(model, ranks):
    count = 0
    for value in list(model.graph.input) + list(model.graph.output):
        dim = value.type.tensor_type.shape.dim[0]
        if not dim.HasField("dim_value"):
            dim.dim_param = BATCH_DIM
            count += 1
    return count


ONNX_REPAIRS = (
    Repair("prelu-slope-per-channel", "PRelu slopes reshaped (C,) -> (C, 1, 1) (ONNX broadcasts from the last "
           "axis, MXNet per channel)", _prelu_slope_per_channel),
    Repair("weights-not-inputs", "weights are initializers only, the one graph input is data", _weights_not_inputs),
    Repair("named-batch-axis", f"the dynamic batch axis is named {BATCH_DIM}", _named_batch_axis),
)


# ----------------------------------------------------------------------------- facts of the graph

def input_normalisation(symbol):
    """``(mean, scale)`` of the graph's own ``(data - mean) * scale``, or None when it has none."""
    graph = json.loads(symbol.tojson())
    nodes = graph["nodes"]
    consumers = {}
    for i, node in enumerate(nodes):
        for src, _, _ in node.get("inputs", []):
            consumers.setdefault(src, []).append(i)
    data = next((i for i, n in enumerate(nodes) if n["op"] == "null" and n["name"] == INPUT_NAME), None)
    first = consumers.get(data, [])
    if len(first) != 1 or nodes[first[0]]["op"] != "_minus_scalar":
        return None
    second = consumers.get(first[0], [])
    if len(second) != 1 or nodes[second[0]]["op"] != "_mul_scalar":
        return None
    return float(nodes[first[0]]["attrs"]["scalar"]), float(nodes[second[0]]["attrs"]["scalar"])


def prelu_input_ranks(symbol, image_size):
    """{LeakyReLU node name: rank of its data input} for an input of ``image_size``."""
    graph = json.loads(symbol.tojson())
    nodes = graph["nodes"]
    internals = symbol.get_internals()
    _, out_shapes, _ = infer_shape(internals, data=(1, 3) + tuple(image_size))
    shapes = dict(zip(internals.list_outputs(), out_shapes))
    ranks = {}
    for node in nodes:
        if node["op"] == "LeakyReLU":
            src = nodes[node["inputs"][0][0]]
            key = src["name"] if src["op"] == "null" else f"{src['name']}_output"
            shape = shapes.get(key) or shapes.get(f"{src['name']}_output{node['inputs'][0][1]}")
            if shape is not None:
                ranks[node["name"]] = len(shape)
    return ranks


def model_metadata(image_size, emb_size, normalisation, source, repairs):
    """The ``metadata_props`` of an exported model: what it takes, what it gives, where it came from."""
    import mxnet as mx
    import onnx

    from .. import __version__

    h, w = image_size
    if normalisation is None:
        norm = {"facekd.normalisation": "none in the graph: the model takes the input as given"}
    else:
        mean, scale = normalisation
        norm = {"facekd.normalisation": f"(x - {mean:g}) * {scale:.10g}, inside the graph "
                                        "(its first nodes _minusscalar0, _mulscalar0)",
                "facekd.input_mean": repr(mean), "facekd.input_scale": repr(scale)}
    return {
        "facekd.input": f"{INPUT_NAME}: float32 ({BATCH_DIM}, 3, {h}, {w}), RGB (not BGR) pixel values 0..255, "
                        f"NCHW, a face aligned to the {h}x{w} five-point template; nothing to subtract or scale",
        **norm,
        "facekd.output": f"fc1: float32 ({BATCH_DIM}, {emb_size}), the raw embedding (not L2-normalised); faces "
                         "compare by the cosine of normalise(f(x) + f(flip(x)))",
        "facekd.embedding_size": str(emb_size),
        "facekd.image_size": f"{h},{w}",
        "facekd.source": source,
        "facekd.exporter": f"mxnet {mx.__version__} mx.onnx.export_model, onnx {onnx.__version__}, "
                           f"facekd {__version__}",
        "facekd.repairs": "; ".join(f"{r.name} x{n}" for r, n in repairs) or "none",
    }


# ----------------------------------------------------------------------------- export

@dataclass
class ExportInfo:
    path: str
    repairs: list  # [(Repair, count)] of the repairs that changed something
    metadata: dict


def export_onnx(slim_model, path, image_size, source, graph_repairs=None, onnx_repairs=None):
    """Write ``slim_model`` (a :class:`facekd.deploy.slim.SlimModel`) as an ONNX model to ``path``, with
    :data:`GRAPH_REPAIRS` and :data:`ONNX_REPAIRS` unless other lists are given."""
    import onnx
    from mxnet import onnx as mx_onnx

    from ..embedder import embedding_size

    h, w = image_size
    symbol, args, auxs = slim_model.symbol, dict(slim_model.arg_params), dict(slim_model.aux_params)
    applied = []
    for repair in GRAPH_REPAIRS if graph_repairs is None else graph_repairs:
        symbol, count = repair.apply(symbol, args, auxs)
        if count:
            applied.append((repair, count))
    with tempfile.TemporaryDirectory(prefix="facekd-onnx-") as tmp:
        raw = os.path.join(tmp, "exported.onnx")
        try:
            mx_onnx.export_model(symbol, {**args, **auxs}, in_shapes=[(1, 3, h, w)], in_types=[np.float32],
                                 onnx_file_path=raw, dynamic=True, dynamic_input_shapes=[(None, 3, h, w)])
        except Exception as exc:  # the exporter raises whatever its converters raise
            cause = " ".join(str(exc).split())[:300] or type(exc).__name__
            raise FaceKDError(f"{source}: MXNet's ONNX exporter cannot convert the graph "
                              f"({type(exc).__name__}: {cause})") from None
        model = onnx.load(raw)
    ranks = prelu_input_ranks(symbol, image_size)
    for repair in ONNX_REPAIRS if onnx_repairs is None else onnx_repairs:
        count = repair.apply(model, ranks)
        if count:
            applied.append((repair, count))
    metadata = model_metadata(image_size, embedding_size(symbol, image_size, source),
                              input_normalisation(symbol), source, applied)
    onnx.helper.set_model_props(model, metadata)
    model.producer_name, model.producer_version = "facekd", metadata["facekd.exporter"]
    model.doc_string = "face embedding model exported by facekd deploy/export.py; see metadata_props"
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as exc:
        raise FaceKDError(f"{source}: the exported ONNX model is invalid ({' '.join(str(exc).split())[:300]})") from None
    with atomic_path(path) as tmp_path, open(tmp_path, "wb") as f:
        f.write(model.SerializeToString())
    return ExportInfo(path, applied, metadata)
