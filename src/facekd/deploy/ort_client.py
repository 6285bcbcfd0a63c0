"""The MXNet side's handle on onnxruntime: a worker process in ``.venv-ort`` and an embedder over it.

:class:`OrtWorker` starts ``python -m facekd.deploy.ort_worker`` with the interpreter of the
onnxruntime environment, sends it requests and exchanges arrays as ``.npy`` files in a
temporary folder that it removes on close. :class:`OnnxEmbedder` has the interface of
:class:`facekd.embedder.Embedder` (``batch_size``, ``emb_size``, ``image_size``, ``embed``), so
the verification protocol and the inference commands run an ONNX model unchanged.
"""
import json
import os
import shutil
import subprocess
import tempfile

import numpy as np

from ..errors import FaceKDError
from ..runtime import physical_cores

ORT_VENV = ".venv-ort"
ORT_PYTHON_ENV = "FACEKD_ORT_PYTHON"
WORKER_MODULE = "facekd.deploy.ort_worker"
_STDERR_TAIL = 600


def work_threads(environ=None):
    """Threads for onnxruntime's work (not its timing): the thread count the user gave MXNet
    (``OMP_NUM_THREADS``, ``MXNET_OMP_MAX_THREADS``), else one per physical core."""
    environ = os.environ if environ is None else environ
    for name in ("OMP_NUM_THREADS", "MXNET_OMP_MAX_THREADS"):
        value = environ.get(name, "").strip()
        if value.isdigit() and int(value) > 0:
            return int(value)
    return physical_cores()


def default_ort_python():
    """``$FACEKD_ORT_PYTHON``, else ``.venv-ort/bin/python`` of the current folder (made by ``make venv-ort``)."""
    return os.environ.get(ORT_PYTHON_ENV) or os.path.join(ORT_VENV, "bin", "python")


def add_ort_argument(parser):
    parser.add_argument("--ort-python", default=None,
                        help=f"Python of the onnxruntime environment (default ${ORT_PYTHON_ENV}, else "
                             f"{ORT_VENV}/bin/python, made by 'make venv-ort')")


class OrtWorker:
    """A running onnxruntime worker; use as a context manager (``with OrtWorker(python) as w:``)."""

    def __init__(self, python=None, flag="--ort-python"):
        python = python or default_ort_python()
        self.python, self.flag = python, flag
        if not (os.path.isfile(python) and os.access(python, os.X_OK)):
            raise FaceKDError(f"{flag} {python}: no such Python; run 'make venv-ort' (the onnxruntime "
                              f"environment, requirements-ort.txt) or pass {flag} PATH")
        self._folder = tempfile.mkdtemp(prefix="facekd-ort-")
        self._stderr = tempfile.TemporaryFile()
        self._count = 0
        try:
            self._proc = subprocess.Popen([python, "-m", WORKER_MODULE], stdin=subprocess.PIPE,
                                          stdout=subprocess.PIPE, stderr=self._stderr, text=True, bufsize=1)
            self.versions = self.call("hello")
        except BaseException:
            self.close()
            raise

    # ------------------------------------------------------------------ protocol
    def call(self, op, **args):
        """The result of ``op`` in the worker; its error becomes a FaceKDError."""
        try:
            self._proc.stdin.write(json.dumps({"op": op, "args": args}) + "\n")
            self._proc.stdin.flush()
            line = self._proc.stdout.readline()
        except (BrokenPipeError, OSError):
            line = ""
        if not line:
            raise FaceKDError(f"the onnxruntime worker ({self.flag} {self.python}) stopped: "
                              f"{self._stderr_tail()}; check that it is the environment 'make venv-ort' makes")
        reply = json.loads(line)
        if not reply.get("ok"):
            raise FaceKDError(reply.get("error", "the onnxruntime worker failed"))
        return reply["result"]

    def _stderr_tail(self):
        self._stderr.seek(0)
        lines = [l.strip() for l in self._stderr.read().decode("utf-8", "replace").splitlines() if l.strip()]
        return lines[-1][-_STDERR_TAIL:] if lines else "no message"

    def put(self, array):
        """Path of a new ``.npy`` file in the exchange folder holding ``array`` as float32."""
        self._count += 1
        path = os.path.join(self._folder, f"in{self._count}.npy")
        np.save(path, np.ascontiguousarray(array, dtype=np.float32))
        return path

    def take(self, path):
        """The array of ``path``, which is then removed."""
        try:
            return np.load(path, allow_pickle=False)
        finally:
            if os.path.exists(path):
                os.remove(path)

    def scratch(self, name):
        """A path in the exchange folder for the worker to write."""
        self._count += 1
        return os.path.join(self._folder, f"{self._count}-{name}")

    # ------------------------------------------------------------------ operations
    def inspect(self, model, threads=None):
        """Input and output names and shapes, and the metadata, of ``model`` (loaded for :meth:`run`)."""
        return self.call("inspect", model=os.path.abspath(model), threads=threads or work_threads())

    def run(self, model, images, threads=None):
        """Raw outputs (N, d) of ``model`` on float32 (N, 3, H, W) ``images`` (threads: :func:`work_threads`)."""
        src, out = self.put(images), self.scratch("out.npy")
        try:
            self.call("embed", model=os.path.abspath(model), images=src, output=out,
                      threads=threads or work_threads())
            return self.take(out)
        finally:
            os.remove(src)

    def quantize(self, model, output, images, input_name):
        """Write the INT8 model of ``model`` to ``output``, calibrated on ``images``; returns the method."""
        src = self.put(images)
        try:
            return self.call("quantize", model=os.path.abspath(model), output=os.path.abspath(output),
                             images=src, input_name=input_name)["method"]
        finally:
            os.remove(src)

    def latency_ms(self, model, image, runs, warmup):
        src = self.put(image)
        try:
            return self.call("latency", model=os.path.abspath(model), image=src, runs=runs, warmup=warmup)["ms"]
        finally:
            os.remove(src)

    def images_per_second(self, model, images, runs, warmup, threads=None):
        src = self.put(images)
        try:
            return self.call("throughput", model=os.path.abspath(model), images=src, runs=runs, warmup=warmup,
                             threads=threads or physical_cores())["images_per_second"]
        finally:
            os.remove(src)

    # ------------------------------------------------------------------ lifetime
    def close(self):
        proc = getattr(self, "_proc", None)
        if proc is not None and proc.poll() is None:
            try:
                proc.stdin.close()
                proc.wait(timeout=20)
            except (OSError, subprocess.TimeoutExpired):
                proc.kill()
                proc.wait()
        shutil.rmtree(self._folder, ignore_errors=True)
        self._stderr.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class OnnxEmbedder:
    """An ``.onnx`` embedding model run by an :class:`OrtWorker`, with the Embedder's interface."""

    def __init__(self, worker, path, batch_size, image_size=None, threads=None):
        self.worker, self.path, self.name = worker, path, path
        self.batch_size = int(batch_size)
        if self.batch_size < 1:
            raise FaceKDError(f"--batch-size {batch_size}: must be >= 1")
        self.threads = threads
        info = worker.inspect(path, threads)
        self.input_name, self.metadata = info["input"], info["metadata"]
        self.image_size = tuple(info["input_shape"][2:])
        if image_size is not None and tuple(image_size) != self.image_size:
            raise FaceKDError(f"{path}: the model takes {self.image_size[0]}x{self.image_size[1]} images, "
                              f"not {image_size[0]}x{image_size[1]}; pass --image-size "
                              f"{self.image_size[0]},{self.image_size[1]}")
        dim = info["output_shape"][1]
        self.emb_size = int(dim) if dim else int(self.embed(np.zeros((1, 3) + self.image_size, np.float32)).shape[1])

    def embed(self, images):
        """Raw output (N, d) float32 of uint8 RGB (N, H, W, 3) or float (N, 3, H, W) images, in batches."""
        images = self._check_images(images)
        nhwc = images.dtype == np.uint8
        parts = []
        for start in range(0, len(images), self.batch_size):
            chunk = images[start:start + self.batch_size]
            chunk = chunk.transpose(0, 3, 1, 2) if nhwc else chunk
            parts.append(self.worker.run(self.path, chunk.astype(np.float32), self.threads))
        if not parts:
            return np.empty((0, getattr(self, "emb_size", 0)), dtype=np.float32)
        return np.concatenate(parts).astype(np.float32, copy=False)

    def _check_images(self, images):
        images = np.asarray(images)
        h, w = self.image_size
        if images.ndim == 4 and images.dtype == np.uint8 and images.shape[1:] == (h, w, 3):
            return images
        if images.ndim == 4 and np.issubdtype(images.dtype, np.floating) and images.shape[1:] == (3, h, w):
            return images
        raise FaceKDError(f"{self.name}: images of shape {images.shape} and dtype {images.dtype}; expected "
                          f"uint8 RGB (N, {h}, {w}, 3) or float (N, 3, {h}, {w}) (resize to {h}x{w} first)")
