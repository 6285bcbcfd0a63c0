"""INT8 static quantization with onnxruntime, calibrated on training images (runs in ``.venv-ort``).

The calibration images come from a RecordIO training set (the MXNet side reads and decodes
them, see :func:`facekd.deploy.faces.sample_record_images`), never from the verification
pairs the INT8 model is then scored on. The float model is first pre-processed
(onnxruntime's symbolic shape inference and graph clean-up), then quantized to QDQ form:
weights signed 8-bit per output channel (depthwise convolutions keep their accuracy),
activations unsigned 8-bit, ranges from the MinMax of the calibration activations.
"""
import os
import tempfile

import numpy as np

from ..atomic import atomic_path
from ..errors import FaceKDError

CALIBRATION_BATCH = 16
METHOD = ("static INT8, QDQ: weights int8 per output channel, activations uint8, MinMax ranges "
          "over {count} calibration images")


def calibration_reader(images, input_name, batch=CALIBRATION_BATCH):
    """An onnxruntime CalibrationDataReader over batches of ``images`` float32 (N, 3, H, W)."""
    from onnxruntime.quantization import CalibrationDataReader

    class ImageBatches(CalibrationDataReader):
        def __init__(self):
            self.rewind()

        def get_next(self):
            start = self._next
            if start >= len(images):
                return None
            self._next = start + batch
            return {input_name: np.ascontiguousarray(images[start:start + batch], dtype=np.float32)}

        def rewind(self):
            self._next = 0

    return ImageBatches()


def input_path_first(graph):
    """Reorder ``graph``'s nodes, still topologically, so that a node reading only weights comes just
    before its first use instead of at the start.

    The quantizer puts the DequantizeLinear of every weight first; insightface's face-analysis
    code looks for the preprocessing nodes (``_minusscalar0``, ``_mulscalar0``) among the first
    eight to know that the model takes raw pixels. With weights placed lazily they stay there.
    """
    nodes = list(graph.node)
    produced_by = {out: i for i, node in enumerate(nodes) for out in node.output}
    inputs = {value.name for value in graph.input}
    on_input_path = [False] * len(nodes)
    for i, node in enumerate(nodes):  # the stored order is topological
        on_input_path[i] = any(name in inputs or (name in produced_by and on_input_path[produced_by[name]])
                               for name in node.input)
    emitted, order = [False] * len(nodes), []

    def emit(i):
        if not emitted[i]:
            for name in nodes[i].input:
                if name in produced_by:
                    emit(produced_by[name])
            emitted[i] = True
            order.append(i)

    for i in range(len(nodes)):
        if on_input_path[i]:
            emit(i)
    for i in range(len(nodes)):  # weight-only nodes that nothing on the input path reads
        emit(i)
    copies = []
    for i in order:
        copy = type(nodes[i])()
        copy.CopyFrom(nodes[i])
        copies.append(copy)
    del graph.node[:]
    graph.node.extend(copies)


def quantize_int8(src, dst, images, input_name="data", batch=CALIBRATION_BATCH):
    """Write the INT8 model of the float model ``src`` to ``dst``, calibrated on ``images``.

    Returns the method description recorded in the INT8 model's metadata. The metadata of
    ``src`` is carried over (the quantizer drops it).
    """
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    images = np.asarray(images)
    if images.ndim != 4 or images.shape[1] != 3 or len(images) == 0:
        raise FaceKDError(f"calibration images of shape {images.shape}; expected (N >= 1, 3, H, W)")
    method = METHOD.format(count=len(images))
    with tempfile.TemporaryDirectory(prefix="facekd-int8-") as tmp:
        prepared, quantized = os.path.join(tmp, "prepared.onnx"), os.path.join(tmp, "int8.onnx")
        quant_pre_process(src, prepared)
        quantize_static(prepared, quantized, calibration_reader(images, input_name, batch),
                        quant_format=QuantFormat.QDQ, per_channel=True, activation_type=QuantType.QUInt8,
                        weight_type=QuantType.QInt8, calibrate_method=CalibrationMethod.MinMax)
        source = onnx.load(src, load_external_data=False)
        model = onnx.load(quantized, load_external_data=False)
    input_path_first(model.graph)
    props = {p.key: p.value for p in source.metadata_props}
    props["facekd.quantization"] = method
    onnx.helper.set_model_props(model, props)
    model.doc_string = source.doc_string
    with atomic_path(dst) as tmp_path, open(tmp_path, "wb") as f:
        f.write(model.SerializeToString())
    return method
