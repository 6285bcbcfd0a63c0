"""The deployment report: one column per runtime (MXNet, ONNX float, ONNX INT8), side by side.

Rows: the files and their size, the cosine distance to MXNet's embeddings, single-image
latency on one thread, images per second at a batch on all cores, and Accuracy-Flip on each
verification target. Written as ``deploy.md`` (the table) and ``deploy.json`` (every number).
"""
import json
from dataclasses import asdict, dataclass, field

from ..atomic import atomic_path

MISSING = "—"


@dataclass
class Column:
    """What was measured of one runtime's model."""
    name: str
    files: list
    size: int  # bytes on disk
    parity: dict = None  # facekd.deploy.parity.Parity.as_dict() against MXNet; None for MXNet itself
    latency_ms: float = None
    images_per_second: float = None
    accuracy: dict = field(default_factory=dict)  # target -> [acc, std] (fractions)


def format_size(n):
    """``4.91 MB`` / ``312.4 KB`` (powers of 1000, as file managers show them)."""
    return f"{n / 1e6:.2f} MB" if n >= 1e5 else f"{n / 1e3:.1f} KB"


def _cell(value, fmt):
    return MISSING if value is None else fmt(value)


def markdown_table(columns, counts, cores, parity_images):
    """The side-by-side table as markdown lines."""
    header = ["", *(c.name for c in columns)]
    rows = [
        ["files", *(" + ".join(f"`{f}`" for f in c.files) for c in columns)],
        ["size", *(format_size(c.size) for c in columns)],
        [f"max cosine distance to MXNet ({parity_images} images)",
         *(_cell(c.parity, lambda p: f"{p['max_cosine_distance']:.2g}") for c in columns)],
        [f"latency, 1 image, 1 thread (ms, median of {counts.latency_runs})",
         *(_cell(c.latency_ms, lambda v: f"{v:.2f}") for c in columns)],
        [f"throughput, batch {counts.throughput_batch}, {cores} thread{'s' * (cores > 1)} (images/s)",
         *(_cell(c.images_per_second, lambda v: f"{v:.1f}") for c in columns)],
    ]
    targets = [t for c in columns for t in c.accuracy]
    for target in dict.fromkeys(targets):
        rows.append([f"Accuracy-Flip {target} (%)",
                     *(_cell(c.accuracy.get(target), lambda a: f"{100 * a[0]:.2f} ± {100 * a[1]:.2f}")
                       for c in columns)])
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return lines


def write_report(md_path, json_path, columns, facts, lines):
    """Write ``lines`` (the markdown page) and every number with the run's ``facts`` (JSON)."""
    with atomic_path(json_path) as tmp, open(tmp, "w") as f:
        json.dump({"facts": facts, "columns": [asdict(c) for c in columns]}, f, indent=1)
        f.write("\n")
    with atomic_path(md_path) as tmp, open(tmp, "w") as f:
        f.write("\n".join(lines) + "\n")
