"""bench/train_step.py's Partial FC rows: which rows run, their names and targets, the scale lines
(hand-written measurements; the timing itself is the benchmark's)."""
import pytest

import train_step as ts  # bench/train_step.py (pytest's pythonpath)
from facekd.errors import FaceKDError


def test_sampled_rows_stand_beside_the_heads_that_sample():
    args = ts.parse_args(["--heads", "arcface,triplet_distillation_L2,margin_distillation",
                          "--sample-ratio", "0.1", "--scale-classes", "1000000"])
    rows = ts.rows_wanted(args, ["arcface", "triplet_distillation_L2", "margin_distillation"])
    assert [r.name for r in rows] == ["idle", "backbone", "arcface", "arcface r=0.1", "triplet_distillation_L2",
                                      "margin_distillation", "margin_distillation r=0.1",
                                      "arcface r=0.1 C=1000000"]
    targets = {r.name: r.target() for r in rows}
    assert targets["arcface"] == 0.40 and targets["arcface r=0.1"] == 0.08
    assert targets["margin_distillation r=0.1"] == 0.08 and targets["arcface r=0.1 C=1000000"] is None
    full = ts.rows_wanted(ts.parse_args([]), ["arcface"])
    assert [r.name for r in full] == ["idle", "backbone", "arcface"]  # no --sample-ratio: today's table


def row(name, loss, ratio, classes, seconds, overhead=None, scale=False, target=None):
    out = dict(row=name, loss=loss, ratio=ratio, num_classes=classes, batch=64, seconds=seconds, min=seconds,
               max=seconds, peak_mib=9000.0, scale=scale, target=target)
    if overhead is not None:
        out.update(backbone_seconds=0.38, overhead=overhead)
    return out


def test_table_and_scale_lines():
    rows = [row("arcface", "arcface", 1.0, 85742, 0.53, 0.395, target=0.40),
            row("arcface r=0.1", "arcface", 0.1, 85742, 0.41, 0.09, target=0.08),
            row("arcface r=0.1 C=1000000", "arcface", 0.1, 1000000, 0.58, 0.52, scale=True)]
    table = ts.format_table(rows).splitlines()
    assert "39.5%" in table[1] and table[1].split()[-2] == "ok"
    assert "9.0%" in table[2] and "8%" in table[2] and table[2].split()[-2] == "OVER"
    assert table[3].split()[-1] == "9000"  # no target on the scale row, its peak memory
    lines = ts.scale_lines(rows)
    assert lines == [
        "arcface r=0.1 C=1000000: 0.580 s/step = 1.09x the arcface step at 85742 classes (target <= 1.3x: met); "
        "peak 8.8 GiB",
        "arcface r=0.1 C=1000000: 0.580 s/step = 1.41x the arcface r=0.1 step at 85742 classes (target <= 1.3x: "
        "NOT met); peak 8.8 GiB"]


@pytest.mark.parametrize("flags", [["--sample-ratio", "0"], ["--sample-ratio", "1.5"], ["--scale-classes", "-1"]])
def test_bad_sampling_flags(flags):
    with pytest.raises(FaceKDError, match="--sample-ratio .* must be in \\(0, 1\\] and --scale-classes"):
        ts.main(flags)
