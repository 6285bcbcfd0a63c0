"""Latency and throughput of a forward pass, measured the same way for every runtime.

Both take a callable that runs the model once on inputs prepared beforehand, so only the
forward (and its host copies) is timed. The first ``warmup`` calls are not timed: they
pay for memory allocation, kernel selection and cache warming that a deployed model pays
once. Latency is the median of the timed calls (robust to the odd scheduler hiccup on a
shared machine); throughput is the total of the timed calls divided into the images.
"""
import time
from dataclasses import asdict, dataclass

import numpy as np

from ..errors import FaceKDError

LATENCY_RUNS = 200
WARMUP_RUNS = 20
THROUGHPUT_BATCH = 32
THROUGHPUT_RUNS = 20


@dataclass(frozen=True)
class Counts:
    """How many calls are timed: ``latency_runs`` single images, ``throughput_runs`` batches of
    ``throughput_batch``, each after ``warmup_runs`` untimed calls."""
    latency_runs: int = LATENCY_RUNS
    warmup_runs: int = WARMUP_RUNS
    throughput_batch: int = THROUGHPUT_BATCH
    throughput_runs: int = THROUGHPUT_RUNS

    def __post_init__(self):
        for flag, value, least in (("--latency-runs", self.latency_runs, 1), ("--warmup-runs", self.warmup_runs, 0),
                                   ("--throughput-batch", self.throughput_batch, 1),
                                   ("--throughput-runs", self.throughput_runs, 1)):
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise FaceKDError(f"{flag} {value!r} is invalid: it must be an integer >= {least}")

    def as_dict(self):
        return asdict(self)


def median_latency_ms(forward, runs, warmup):
    """Median wall time, in milliseconds, of ``runs`` calls of ``forward()`` after ``warmup`` untimed ones."""
    for _ in range(warmup):
        forward()
    times = np.empty(runs, dtype=np.float64)
    for i in range(runs):
        start = time.perf_counter()
        forward()
        times[i] = time.perf_counter() - start
    return float(np.median(times) * 1e3)


def images_per_second(forward, batch, runs, warmup):
    """Images per second of ``runs`` calls of ``forward()`` on ``batch`` images, after ``warmup`` untimed ones."""
    for _ in range(warmup):
        forward()
    start = time.perf_counter()
    for _ in range(runs):
        forward()
    return float(batch * runs / (time.perf_counter() - start))
