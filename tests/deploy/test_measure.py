"""Latency and throughput arithmetic on a fake clock: warm-up calls untimed, median, images per second."""
import pytest

from facekd.deploy import measure
from facekd.errors import FaceKDError


class FakeClock:
    """perf_counter that only moves when the fake model runs: call k lasts ``durations[k]`` seconds."""

    def __init__(self, durations):
        self.now, self.calls, self.durations = 0.0, 0, list(durations)

    def perf_counter(self):
        return self.now

    def forward(self):
        self.now += self.durations[self.calls]
        self.calls += 1


def test_median_latency_ignores_the_warmup(monkeypatch):
    clock = FakeClock([9.0, 9.0] + [0.004, 0.001, 0.003, 0.100, 0.002])  # 2 slow warm-ups, one hiccup
    monkeypatch.setattr(measure.time, "perf_counter", clock.perf_counter)
    assert measure.median_latency_ms(clock.forward, runs=5, warmup=2) == pytest.approx(3.0)
    assert clock.calls == 7


def test_images_per_second(monkeypatch):
    clock = FakeClock([5.0] + [0.25, 0.5, 0.25])  # 3 timed batches of 32 in 1 s
    monkeypatch.setattr(measure.time, "perf_counter", clock.perf_counter)
    assert measure.images_per_second(clock.forward, batch=32, runs=3, warmup=1) == pytest.approx(96.0)


def test_counts_defaults_and_checks():
    counts = measure.Counts()
    assert (counts.latency_runs, counts.throughput_batch) == (200, 32)  # the protocol
    for kwargs, flag in (({"latency_runs": 0}, "--latency-runs"), ({"warmup_runs": -1}, "--warmup-runs"),
                         ({"throughput_batch": 0}, "--throughput-batch"), ({"throughput_runs": 1.5}, "--throughput-runs")):
        with pytest.raises(FaceKDError, match=f"{flag} .* is invalid"):
            measure.Counts(**kwargs)
