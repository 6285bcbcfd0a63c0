"""From a training checkpoint to a device: slim checkpoint, ONNX, parity, INT8, measurements.

Two environments take part. The MXNet one (``.venv``) cuts the checkpoint
(:mod:`.slim`), exports it with MXNet's own exporter (:mod:`.onnx_export`) and drives the
rest (:mod:`.exporter`). onnxruntime's wheels need a newer numpy than MXNet 1.9.1 accepts,
so everything onnxruntime does (running a model, :mod:`.quantize`, timing) happens in a
worker process of the second environment (``.venv-ort``, :mod:`.ort_worker`), reached through
:mod:`.ort_client`, arrays travelling as ``.npy`` files. The modules the worker imports
(:mod:`.measure`, :mod:`.quantize`, :mod:`.ort_worker`) never import MXNet.
"""
