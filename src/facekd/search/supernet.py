"""The supernet bound on N devices: its weights, its architecture weights, one gradient per batch.

Each device (``mx.cpu(i)`` or ``mx.gpu(i)``) gets an executor of the training symbol bound
for an equal share of the batch, as the trainer's Module does. The first device holds the
master copy of every parameter; the optimisers update it and :meth:`Supernet.broadcast`
copies it to the others. :meth:`Supernet.forward_backward` splits a batch over the
devices and runs forward (batch statistics in the BatchNorms) and backward on each;
:meth:`Supernet.gradients` sums the devices' gradients and divides by their number, so
the result is the gradient of the mean loss over the whole batch.

Parameters whose variable says ``lr_mult`` 0 (the frozen gamma and beta of the
non-affine BatchNorms) get no gradient and are never updated.

Two MXNet 1.9.1 defects would give wrong gradients here, and both are avoided:

* oneDNN (MKLDNN): in float32 on the CPU its kernels return supernet gradients off by
  factors of 2 to 1e30 against the same graph in float64 (tests/search/test_arch_gradient.py
  compares them): :func:`use_plain_kernels`, called by ``recognition/search.py`` before any
  operator runs, turns oneDNN off for the process (``MXNET_MKLDNN_ENABLED=0``);
* common-subexpression elimination (below, :func:`exact_gradients`).
"""
import contextlib
import logging
import os

import numpy as np

import mxnet as mx

from ..errors import FaceKDError
from ..losses import objective_index
from ..symbols.common import make_initializer
from .network import ALPHAS, DATA, LABEL

ACC_OUTPUT = "monitor_acc_output"
CSE_VARIABLE = "MXNET_ELIMINATE_COMMON_EXPR"
ONEDNN_VARIABLE = "MXNET_MKLDNN_ENABLED"
FALLBACK_LOG_VARIABLE = "MXNET_STORAGE_FALLBACK_LOG_VERBOSE"


def use_plain_kernels(environ=None):
    """Turn MXNet's oneDNN kernels off for this process; only effective before its first operator
    runs (MXNet reads the setting once). Also keeps MXNet from logging each operator that then runs
    without them."""
    environ = os.environ if environ is None else environ
    environ[ONEDNN_VARIABLE] = "0"
    environ.setdefault(FALLBACK_LOG_VARIABLE, "0")


def onednn_may_run(dtype, environ=None):
    """Whether float32 supernet operators may run on oneDNN kernels (the build has them and they
    were not turned off)."""
    environ = os.environ if environ is None else environ
    if np.dtype(dtype) != np.float32 or environ.get(ONEDNN_VARIABLE) == "0":
        return False
    return mx.runtime.Features().is_enabled("MKLDNN")


@contextlib.contextmanager
def exact_gradients():
    """Bind without MXNet's common-subexpression elimination (``MXNET_ELIMINATE_COMMON_EXPR=0``).

    With it, MXNet 1.9.1 merges the supernet's repeated ``relu(x)`` / ``min(x, 0)`` (the
    PReLUs of the four convolutions of an edge share their input) and the backward pass no
    longer matches the forward: the architecture gradient of a 2-node cell differed from
    central differences by 26% in float64; without it they agree to 1e-5 or better
    (tests/search/test_arch_gradient.py).
    """
    previous = os.environ.get(CSE_VARIABLE)
    os.environ[CSE_VARIABLE] = "0"
    try:
        yield
    finally:
        if previous is None:
            del os.environ[CSE_VARIABLE]
        else:
            os.environ[CSE_VARIABLE] = previous


def _frozen(attrs):
    return float(attrs.get("__lr_mult__", 1.0)) == 0.0


class Supernet:
    """Executors of ``symbol`` on ``contexts``, ``per_device_batch`` images of ``data_shape`` each."""

    def __init__(self, symbol, contexts, per_device_batch, data_shape, dtype="float32"):
        self.symbol = symbol
        self.contexts = list(contexts)
        self.per_device_batch = int(per_device_batch)
        self.dtype = np.dtype(dtype)
        if onednn_may_run(self.dtype):
            logging.warning("MXNet's oneDNN kernels are on: their supernet gradients are wrong in MXNet 1.9.1; "
                            "run the search through recognition/search.py, or set %s=0 before MXNet runs",
                            ONEDNN_VARIABLE)
        attrs = symbol.attr_dict()
        self.attrs = attrs
        inputs = {DATA, LABEL}
        names = [n for n in symbol.list_arguments() if n not in inputs]
        self.alpha_names = [n for n in ALPHAS.values() if n in names]
        self.weight_names = [n for n in names if n not in self.alpha_names and not _frozen(attrs.get(n, {}))]
        self.frozen_names = [n for n in names if n not in self.alpha_names and n not in self.weight_names]
        self.aux_names = symbol.list_auxiliary_states()
        trained = set(self.weight_names) | set(self.alpha_names)
        grad_req = {n: ("write" if n in trained else "null") for n in symbol.list_arguments()}
        shapes = {DATA: (self.per_device_batch,) + tuple(data_shape), LABEL: (self.per_device_batch,)}
        types = dict({DATA: self.dtype, LABEL: self.dtype}, **{n: self.dtype for n in self.alpha_names})
        with exact_gradients():
            self.executors = [symbol.simple_bind(ctx, grad_req=grad_req, type_dict=types, **shapes)
                              for ctx in self.contexts]
        self.objective = objective_index(symbol)
        self.acc_output = symbol.list_outputs().index(ACC_OUTPUT) if ACC_OUTPUT in symbol.list_outputs() else None
        self._sums = {}

    @property
    def master(self):
        return self.executors[0]

    @property
    def batch_size(self):
        return self.per_device_batch * len(self.executors)

    # ------------------------------------------------------------------ parameters
    def initialize(self, kind="pytorch"):
        """Every parameter from the project's initialiser ``kind`` (the variables' own ``init`` first:
        PReLU 0.25, alphas N(0, 1e-3), fc7 N(0, 0.01)), the same values on every device."""
        initializer = make_initializer(kind)
        exe = self.master
        for name, array in list(exe.arg_dict.items()) + list(exe.aux_dict.items()):
            if name in (DATA, LABEL):
                continue
            value = mx.nd.zeros(array.shape, dtype=np.float32)  # initialisers fill float32 arrays
            initializer(mx.init.InitDesc(name, self.attrs.get(name, None)), value)
            array[:] = value.astype(array.dtype)
        self.broadcast(list(exe.arg_dict) + list(exe.aux_dict))

    def broadcast(self, names):
        """Copy the master's ``names`` (arguments or auxiliary states) to the other devices."""
        master = self.master
        for exe in self.executors[1:]:
            for name in names:
                source = master.arg_dict.get(name)
                if source is None:
                    source, target = master.aux_dict[name], exe.aux_dict[name]
                else:
                    target = exe.arg_dict[name]
                source.copyto(target)

    def array(self, name):
        """The master copy of argument ``name`` (updated in place by the optimisers)."""
        return self.master.arg_dict[name]

    def get_params(self):
        """(arguments, auxiliary states) on the CPU: the master's arguments, the BatchNorm running
        statistics averaged over the devices (as MXNet's Module saves them)."""
        args = {n: self.master.arg_dict[n].copyto(mx.cpu())
                for n in self.weight_names + self.alpha_names + self.frozen_names}
        aux = {}
        for name in self.aux_names:
            total = self.master.aux_dict[name].copyto(mx.cpu())
            for exe in self.executors[1:]:
                total += exe.aux_dict[name].copyto(mx.cpu())
            aux[name] = total / len(self.executors)
        return args, aux

    def set_params(self, args, aux, where):
        """Load saved arguments and auxiliary states (checked: every one present, same shapes)."""
        for names, saved, table in ((self.weight_names + self.alpha_names + self.frozen_names, args, "arg"),
                                    (self.aux_names, aux, "aux")):
            for name in names:
                if name not in saved:
                    raise FaceKDError(f"{where}: {table} {name} is missing; the search was saved with other "
                                      "--layers/--nodes/--init-channels; resume it with its own settings")
                target = self.master.arg_dict[name] if table == "arg" else self.master.aux_dict[name]
                if tuple(saved[name].shape) != tuple(target.shape):
                    raise FaceKDError(f"{where}: {name} has shape {tuple(saved[name].shape)}, this search needs "
                                      f"{tuple(target.shape)}; resume it with its own settings")
                target[:] = saved[name].astype(target.dtype)
        self.broadcast(self.weight_names + self.alpha_names + self.frozen_names + self.aux_names)

    # ------------------------------------------------------------------ one batch
    def forward_backward(self, data, label):
        """Forward and backward of a batch (NDArrays, ``batch_size`` rows) split over the devices.

        Returns (mean loss, mean accuracy) over the devices as NDArrays of shape (1,) (no wait).
        """
        if data.shape[0] != self.batch_size:
            raise FaceKDError(f"a batch of {data.shape[0]} images for a supernet bound for {self.batch_size}")
        b = self.per_device_batch
        losses, accs = [], []
        for k, exe in enumerate(self.executors):
            exe.arg_dict[DATA][:] = data[k * b:(k + 1) * b].astype(self.dtype, copy=False)
            exe.arg_dict[LABEL][:] = label[k * b:(k + 1) * b].astype(self.dtype, copy=False)
            exe.forward(is_train=True)
            exe.backward()
            losses.append(exe.outputs[self.objective].reshape((1,)).as_in_context(mx.cpu()))
            if self.acc_output is not None:
                accs.append(exe.outputs[self.acc_output].reshape((1,)).as_in_context(mx.cpu()))
        n = len(self.executors)
        return mx.nd.add_n(*losses) / n, (mx.nd.add_n(*accs) / n if accs else None)

    def gradients(self, names):
        """{name: gradient of the batch's mean loss} on the master device, from the last backward.

        With one device these are the executor's own gradient arrays (valid until the next backward).
        """
        if len(self.executors) == 1:
            return {n: self.master.grad_dict[n] for n in names}
        out = {}
        ctx = self.contexts[0]
        for name in names:
            total = self._sums.get(name)
            if total is None:
                total = self._sums[name] = mx.nd.zeros_like(self.master.grad_dict[name])
            total[:] = self.master.grad_dict[name]
            for exe in self.executors[1:]:
                total += exe.grad_dict[name].as_in_context(ctx)
            total /= len(self.executors)
            out[name] = total
        return out
