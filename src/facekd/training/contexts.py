"""Devices: one mx.gpu(i) per entry of CUDA_VISIBLE_DEVICES, otherwise CPU contexts.

An unset or empty CUDA_VISIBLE_DEVICES (or ``-1``) means CPU (the reference raised
KeyError). Several CPU contexts (mx.cpu(0), mx.cpu(1), ...) run the same data-parallel
path as several GPUs; that is how the multi-device code is exercised without a GPU.

Entries must be GPU ordinals (``0,1``) or GPU UUIDs (``GPU-...``, ``MIG-...``), as CUDA
reads them; and GPUs are handed out only when this MXNet build can drive that many:
the CPU build (``mxnet`` from requirements.txt) would otherwise fail deep inside the
first bind with a C++ traceback.
"""
import logging
import os
import re

from ..errors import FaceKDError, mxnet_cause

_ENTRY = re.compile(r"^(\d+|(GPU|MIG)-[0-9A-Za-z][0-9A-Za-z/_-]*)$")
_CPU_HINT = "unset CUDA_VISIBLE_DEVICES to run on the CPU"


def visible_gpus(env=None):
    """GPU ordinals from CUDA_VISIBLE_DEVICES: '0,1' -> [0, 1]; '2,3' -> [0, 1] (renumbered);
    unset/empty/'-1' -> []; '0,-1,1' -> [0] (CUDA stops at -1).

    Raises FaceKDError for an entry that is neither an ordinal nor a GPU UUID, or one
    given twice."""
    env = os.environ if env is None else env
    value = env.get("CUDA_VISIBLE_DEVICES", "").strip()
    if not value or value == "-1":
        return []
    entries = [v.strip() for v in value.split(",") if v.strip()]
    if "-1" in entries:  # CUDA hides a -1 and every entry after it
        entries = entries[:entries.index("-1")]
    for entry in entries:
        if not _ENTRY.match(entry):
            raise FaceKDError(f"CUDA_VISIBLE_DEVICES={value}: {entry!r} is not a GPU ordinal or GPU UUID; "
                              "unset it or give GPU ordinals like 0,1")
    repeated = sorted({e for e in entries if entries.count(e) > 1})
    if repeated:
        raise FaceKDError(f"CUDA_VISIBLE_DEVICES={value}: {', '.join(repeated)} given twice; "
                          "list each GPU once, like 0,1")
    # Inside the process the visible GPUs are renumbered 0..n-1.
    return list(range(len(entries)))


def _gpu_support():
    """(MXNet built with CUDA, GPUs it sees or None, the error when counting them failed)."""
    import mxnet as mx

    try:
        cuda = mx.runtime.Features().is_enabled("CUDA")
    except Exception:  # very old builds without the feature list: judge by the count below
        cuda = None
    try:
        return cuda, mx.context.num_gpus(), None
    except Exception as exc:  # MXNetError on a CUDA error (no driver, ...)
        return cuda, None, exc


def check_gpus(requested, value):
    """Fail unless this MXNet build can drive ``requested`` GPUs (CUDA_VISIBLE_DEVICES=``value``)."""
    cuda, count, error = _gpu_support()
    asks = f"CUDA_VISIBLE_DEVICES={value} asks for {requested} GPU{'s' if requested != 1 else ''}"
    if cuda is False or (cuda is None and not count):
        raise FaceKDError(f"{asks} but this MXNet build has no GPU support; install mxnet-cu112 from "
                          f"requirements-cu112.txt, or {_CPU_HINT}")
    if error is not None:
        raise FaceKDError(f"{asks} but MXNet cannot count the GPUs ({mxnet_cause(error)}); check the NVIDIA "
                          f"driver with nvidia-smi, or {_CPU_HINT}")
    if count == 0:
        raise FaceKDError(f"{asks} but MXNet finds no GPU on this machine; check the NVIDIA driver with "
                          f"nvidia-smi, or {_CPU_HINT}")
    if count < requested:
        raise FaceKDError(f"{asks} but only {count} {'is' if count == 1 else 'are'} present; list at most "
                          f"{count} (nvidia-smi shows them), or {_CPU_HINT}")


_unused_gpus_warned = False  # the warning is given once per process


def warn_unused_gpus(work="running"):
    """Once per process: a warning when MXNet sees GPUs but CUDA_VISIBLE_DEVICES selects none,
    so that the work runs on the CPU (the CPU build sees none; a driver error counts as none)."""
    global _unused_gpus_warned
    if _unused_gpus_warned:
        return
    _, count, _ = _gpu_support()
    if not count:
        return
    _unused_gpus_warned = True
    logging.warning("%s on the CPU although MXNet sees %d GPU%s: set CUDA_VISIBLE_DEVICES='%s' to use them",
                    work, count, "s" if count != 1 else "", ",".join(str(i) for i in range(count)))


def get_contexts(cpu_contexts=1, env=None, work="running"):
    """The list of MXNet contexts for this run (``work`` names it in the unused-GPU warning)."""
    import mxnet as mx

    env = os.environ if env is None else env
    gpus = visible_gpus(env)
    if gpus:
        check_gpus(len(gpus), env.get("CUDA_VISIBLE_DEVICES", "").strip())
        return [mx.gpu(i) for i in gpus]
    if cpu_contexts < 1:
        raise FaceKDError(f"--cpu-contexts must be >= 1, got {cpu_contexts}")
    warn_unused_gpus(work)
    return [mx.cpu(i) for i in range(cpu_contexts)]
