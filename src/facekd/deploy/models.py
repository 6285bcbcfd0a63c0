"""A model argument (``prefix,epoch`` or ``model.onnx``) opened as an embedder, one kind per runtime.

Both kinds have the :class:`facekd.embedder.Embedder` interface: an MXNet checkpoint (training
or slim) is bound by MXNet in this process; an ``.onnx`` model runs in the onnxruntime
worker (:class:`facekd.deploy.ort_client.OnnxEmbedder`).
"""
import contextlib
from dataclasses import dataclass
from typing import Callable

from ..registry import Registry

MODEL_KINDS = Registry("model kind", "--model")


@dataclass(frozen=True)
class ModelKind:
    name: str
    matches: Callable  # (text) -> bool
    open: Callable  # (text, options) -> context manager yielding an embedder


@dataclass(frozen=True)
class OpenOptions:
    batch_size: int = 64
    image_size: tuple = (112, 112)
    cpu_contexts: int = 1
    ort_python: str = None
    flag: str = "--model"


@contextlib.contextmanager
def _open_mxnet(text, options):
    from ..checkpoints import parse_model_arg
    from ..embedder import Embedder
    from ..training.contexts import get_contexts

    prefix, epoch = parse_model_arg(text, options.flag)
    yield Embedder.from_checkpoint(prefix, epoch, get_contexts(options.cpu_contexts), options.batch_size,
                                   options.image_size)


@contextlib.contextmanager
def _open_onnx(text, options):
    from .ort_client import OnnxEmbedder, OrtWorker

    with OrtWorker(options.ort_python) as worker:
        yield OnnxEmbedder(worker, text, options.batch_size, options.image_size)


MODEL_KINDS.register("onnx", ModelKind("onnx", lambda text: str(text).lower().endswith(".onnx"), _open_onnx))
MODEL_KINDS.register("mxnet", ModelKind("mxnet", lambda text: True, _open_mxnet))
KIND_ORDER = ("onnx", "mxnet")  # the first kind whose test matches; MXNet's prefix,epoch takes the rest


def model_kind(text):
    """The :class:`ModelKind` of a ``--model`` argument."""
    return next(MODEL_KINDS.get(n) for n in KIND_ORDER if MODEL_KINDS.get(n).matches(text))


def open_embedder(text, options=OpenOptions()):
    """Context manager yielding the embedder of ``text`` (``prefix,epoch`` or ``*.onnx``)."""
    return model_kind(text).open(text, options)
