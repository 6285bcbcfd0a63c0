"""Devices: one mx.gpu(i) per entry of CUDA_VISIBLE_DEVICES, otherwise CPU contexts.

An unset or empty CUDA_VISIBLE_DEVICES means CPU (the reference raised KeyError).
Several CPU contexts (mx.cpu(0), mx.cpu(1), ...) run the same data-parallel path
as several GPUs; that is how the multi-device code is exercised without a GPU.
"""
import os

from ..errors import FaceKDError


def visible_gpus(env=None):
    """GPU ordinals from CUDA_VISIBLE_DEVICES: '0,1' -> [0, 1]; unset/empty/'-1' -> []."""
    env = os.environ if env is None else env
    value = env.get("CUDA_VISIBLE_DEVICES", "").strip()
    if not value or value == "-1":
        return []
    entries = [v.strip() for v in value.split(",") if v.strip()]
    # Inside the process the visible GPUs are renumbered 0..n-1.
    return list(range(len(entries)))


def get_contexts(cpu_contexts=1, env=None):
    """The list of MXNet contexts for this run."""
    import mxnet as mx

    gpus = visible_gpus(env)
    if gpus:
        return [mx.gpu(i) for i in gpus]
    if cpu_contexts < 1:
        raise FaceKDError(f"--cpu-contexts must be >= 1, got {cpu_contexts}")
    return [mx.cpu(i) for i in range(cpu_contexts)]
