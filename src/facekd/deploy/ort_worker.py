"""The onnxruntime worker: run in ``.venv-ort`` as ``python -m facekd.deploy.ort_worker``.

It answers one JSON request per line on stdin with one JSON reply per line on stdout;
arrays travel as ``.npy`` files in a folder the client owns (:mod:`facekd.deploy.ort_client`).
A request is ``{"op": NAME, "args": {...}}``, a reply ``{"ok": true, "result": ...}`` or
``{"ok": false, "error": "one line"}``. Everything that prints (onnxruntime, the
quantizer) is sent to stderr, so stdout carries replies only.

``.onnx`` files are untrusted input: a model is read as bytes, parsed and checked before
onnxruntime sees it (weights in external files, which onnxruntime would open by relative
path, and operators outside the standard domains are refused), and onnxruntime is given
the checked bytes, never the path.
"""
import json
import os
import sys

import numpy as np

from ..errors import FaceKDError
from ..runtime import physical_cores
from .measure import images_per_second, median_latency_ms

ALLOWED_DOMAINS = ("", "ai.onnx", "com.microsoft")  # standard operators, and onnxruntime's own (quantized)
FLOAT_INPUT = "tensor(float)"


def _one_line(exc):
    text = " ".join(str(exc).split())
    return text if text else type(exc).__name__


def _node_domains(graph):
    """Domains of every node of ``graph`` and of the sub-graphs of its control-flow nodes."""
    import onnx

    for node in graph.node:
        yield node.domain
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                yield from _node_domains(attr.g)
            for sub in attr.graphs:
                yield from _node_domains(sub)


def read_model(path):
    """(ModelProto, bytes) of a self-contained ``.onnx`` file, checked."""
    import onnx
    from google.protobuf.message import DecodeError

    if not os.path.isfile(path):
        raise FaceKDError(f"{path}: ONNX model not found")
    with open(path, "rb") as f:
        data = f.read()
    try:
        model = onnx.ModelProto.FromString(data)
    except (DecodeError, ValueError, RuntimeError):
        raise FaceKDError(f"{path}: not an ONNX model (its bytes do not parse as one)") from None
    if not model.graph.node:
        raise FaceKDError(f"{path}: not an ONNX model (no graph nodes)")
    external = [t.name for t in model.graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL]
    if external:
        raise FaceKDError(f"{path}: weights ({external[0]}, ...) are stored in external files; only "
                          "self-contained models are loaded, save it with save_as_external_data=False")
    foreign = sorted(set(_node_domains(model.graph)) - set(ALLOWED_DOMAINS))
    if foreign:
        raise FaceKDError(f"{path}: operators of the custom domain(s) {', '.join(foreign)}; only standard "
                          "ONNX operators are run, re-export the model without custom operators")
    return model, data


class Sessions:
    """onnxruntime sessions of checked models, one per (model file, thread count, timing or not)."""

    def __init__(self):
        self._sessions = {}
        self.metadata = {}  # model path -> its metadata_props

    def get(self, path, threads, timing=False):
        """The session of ``path`` on ``threads`` threads; ``timing`` sessions keep onnxruntime's default
        busy-waiting threads (lowest latency), the others let idle threads sleep (kinder to shared CPUs)."""
        import onnxruntime as ort

        key = (os.path.abspath(path), int(threads), bool(timing))
        if key not in self._sessions:
            model, data = read_model(path)
            self.metadata[key[0]] = {p.key: p.value for p in model.metadata_props}
            del model
            options = ort.SessionOptions()
            options.intra_op_num_threads = int(threads)
            options.inter_op_num_threads = 1
            options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
            options.log_severity_level = 3  # errors only
            if not timing:
                options.add_session_config_entry("session.intra_op.allow_spinning", "0")
            try:
                session = ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
            except Exception as exc:  # onnxruntime's own failure to load the graph
                raise FaceKDError(f"{path}: onnxruntime cannot load the model ({_one_line(exc)})") from None
            check_signature(session, path)
            self._sessions[key] = session
        return self._sessions[key]

    def run(self, path, threads, images, timing=False):
        session = self.get(path, threads, timing)
        try:
            return session.run(None, {session.get_inputs()[0].name: images})[0]
        except Exception as exc:
            raise FaceKDError(f"{path}: onnxruntime failed to run the model on input {images.shape} "
                              f"({_one_line(exc)})") from None


def check_signature(session, path):
    """One float input (N, 3, H, W) and one output (N, d): the shape of an embedding model."""
    inputs, outputs = session.get_inputs(), session.get_outputs()
    if len(inputs) != 1 or len(outputs) != 1:
        raise FaceKDError(f"{path}: the model has {len(inputs)} inputs and {len(outputs)} outputs; an "
                          "embedding model has one image input (N, 3, H, W) and one output (N, d)")
    shape, kind = inputs[0].shape, inputs[0].type
    if kind != FLOAT_INPUT or len(shape) != 4 or shape[1] != 3 or not all(isinstance(s, int) for s in shape[2:]):
        raise FaceKDError(f"{path}: input {inputs[0].name} is {kind} {shape}; expected float32 (N, 3, H, W) "
                          "with a fixed image size")
    if len(outputs[0].shape) != 2:
        raise FaceKDError(f"{path}: output {outputs[0].name} has shape {outputs[0].shape}; expected (N, d)")


# ----------------------------------------------------------------------------- operations

def _load(path):
    return np.ascontiguousarray(np.load(path, allow_pickle=False), dtype=np.float32)


def op_hello(sessions):
    import onnx
    import onnxruntime as ort

    return {"onnxruntime": ort.__version__, "onnx": onnx.__version__, "numpy": np.__version__,
            "python": sys.version.split()[0], "cores": physical_cores()}


def op_inspect(sessions, model, threads):
    session = sessions.get(model, threads)
    inp, out = session.get_inputs()[0], session.get_outputs()[0]
    return {"input": inp.name, "input_shape": [s if isinstance(s, int) else None for s in inp.shape],
            "output": out.name, "output_shape": [s if isinstance(s, int) else None for s in out.shape],
            "metadata": sessions.metadata[os.path.abspath(model)]}


def op_embed(sessions, model, images, output, threads):
    result = sessions.run(model, threads, _load(images))
    np.save(output, np.asarray(result, dtype=np.float32))
    return {"shape": list(result.shape)}


def op_quantize(sessions, model, output, images, input_name):
    from .quantize import quantize_int8

    read_model(model)  # checked like any model
    return {"method": quantize_int8(model, output, _load(images), input_name)}


def op_latency(sessions, model, image, runs, warmup):
    """Median ms of one image on one thread."""
    one = _load(image)
    sessions.run(model, 1, one, timing=True)  # load errors surface here, outside the timing
    session = sessions.get(model, 1, timing=True)
    feed = {session.get_inputs()[0].name: one}
    return {"ms": median_latency_ms(lambda: session.run(None, feed), runs, warmup), "threads": 1}


def op_throughput(sessions, model, images, runs, warmup, threads):
    """Images per second of batches of ``images`` on ``threads`` threads."""
    batch = _load(images)
    sessions.run(model, threads, batch, timing=True)
    session = sessions.get(model, threads, timing=True)
    feed = {session.get_inputs()[0].name: batch}
    return {"images_per_second": images_per_second(lambda: session.run(None, feed), len(batch), runs, warmup),
            "threads": int(threads), "batch": len(batch)}


OPS = {"hello": op_hello, "inspect": op_inspect, "embed": op_embed, "quantize": op_quantize,
       "latency": op_latency, "throughput": op_throughput}


def answer(sessions, line):
    """The reply (a dict) to one request line."""
    try:
        request = json.loads(line)
        op = OPS[request["op"]]
        args = request.get("args", {})
    except (ValueError, KeyError, TypeError):
        return {"ok": False, "error": f"malformed request {line[:80]!r}; expected one of {', '.join(OPS)}"}
    try:
        return {"ok": True, "result": op(sessions, **args)}
    except FaceKDError as exc:
        return {"ok": False, "error": _one_line(exc)}
    except Exception as exc:  # a failure inside onnxruntime or onnx: reported, the worker goes on
        return {"ok": False, "error": f"{request['op']} failed: {type(exc).__name__}: {_one_line(exc)}"}


def main():
    replies = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # whatever prints, from Python or C, goes to stderr; replies keep their own stream
    sys.stdout = sys.stderr
    import onnxruntime as ort

    ort.set_default_logger_severity(3)
    sessions = Sessions()
    for line in sys.stdin:
        if line.strip():
            replies.write(json.dumps(answer(sessions, line)) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
