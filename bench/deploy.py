"""The deployment table of ``make demo``'s models: MXNet, ONNX float and ONNX INT8 side by side.

Runs ``deploy/export.py --int8`` on the demo's y1 student and y2 teacher (one run each, the
real command, printed before it runs): parity and timing images and the INT8 calibration from
the demo's synthetic training set, Accuracy-Flip on its three held-out targets. Writes each
export under ``<demo-out>/deploy/`` and the combined table to ``<demo-out>/deploy.md``.

    make demo && python -u bench/deploy.py            # a few minutes on 2 CPU cores
    python -u bench/deploy.py --quick                 # tiny repetition counts: checks that it runs
"""
import argparse
import json
import os
import time

import experiments as ex  # bench/experiments.py, beside this script
from facekd.deploy.exporter import REPORT_JSON
from facekd.deploy.report import format_size
from facekd.errors import FaceKDError, run_cli

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# what bench/demo.py trains (its Workspace layout): label, run folder under models/
DEMO_MODELS = (("student (y1, margin_distillation)", "y1-margin_distillation-synthetic_soft"),
               ("teacher (y2, arcface)", "y2-arcface-synthetic"))
QUICK = ["--latency-runs", "5", "--warmup-runs", "1", "--throughput-runs", "2", "--num-images", "32",
         "--calib-images", "32"]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n", 2)[2])
    p.add_argument("--demo-out", default=os.path.join(ROOT, "demo_out"), help="the output folder of make demo")
    p.add_argument("--epoch", type=int, default=1, help="checkpoint number of the demo's runs")
    p.add_argument("--quick", action="store_true", help="tiny repetition counts (not for the numbers)")
    return p.parse_args(argv)


def table(reports):
    """Markdown lines: one row per model and runtime."""
    targets = list(dict.fromkeys(t for _, r in reports for c in r["columns"] for t in c["accuracy"]))
    header = ["model", "runtime", "size", "max cos. distance to MXNet", "latency 1 thread (ms)",
              f"images/s, batch {reports[0][1]['facts']['counts']['throughput_batch']}, "
              f"{reports[0][1]['facts']['cores']} threads"] + [f"{t} (%)" for t in targets]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    for label, report in reports:
        for c in report["columns"]:
            parity = f"{c['parity']['max_cosine_distance']:.2g}" if c["parity"] else "—"
            accuracy = [f"{100 * c['accuracy'][t][0]:.2f} ± {100 * c['accuracy'][t][1]:.2f}" for t in targets]
            lines.append("| " + " | ".join([label, c["name"], format_size(c["size"]), parity, f"{c['latency_ms']:.2f}",
                                            f"{c['images_per_second']:.0f}"] + accuracy) + " |")
    return lines


def main(argv=None):
    args = parse_args(argv)
    start = time.perf_counter()
    runner = ex.CommandRunner(ROOT)
    data = os.path.join(args.demo_out, "synthetic")
    models = [(label, os.path.join(args.demo_out, "models", run, "model")) for label, run in DEMO_MODELS]
    for _, prefix in models:
        if not os.path.isfile(f"{prefix}-{args.epoch:04d}.params"):
            raise FaceKDError(f"{prefix}-{args.epoch:04d}.params not found; run 'make demo' first "
                              f"(or give its folder with --demo-out)")
    reports = []
    for label, prefix in models:
        out = os.path.join(args.demo_out, "deploy", os.path.basename(os.path.dirname(prefix)))
        runner.run("deploy/export.py", [
            "--model", f"{runner.rel(prefix)},{args.epoch}", "--out", runner.rel(out), "--data-dir", runner.rel(data),
            "--int8", "--calib-data", runner.rel(data), "--target", ",".join(ex.TARGETS), "--overwrite",
            *(QUICK if args.quick else [])], os.path.join(args.demo_out, "logs", f"deploy-{os.path.basename(out)}.log"),
            label=f"export {label}")
        with open(os.path.join(out, REPORT_JSON)) as f:
            reports.append((label, json.load(f)))
    lines = table(reports)
    seconds = time.perf_counter() - start
    counts = reports[0][1]["facts"]["counts"]
    notes = (f"Latency: median of {counts['latency_runs']} single images after {counts['warmup_runs']} warm-up runs; "
             f"Accuracy-Flip: 10 folds, mean ± std. onnxruntime {reports[0][1]['facts']['runtime']['onnxruntime']}. "
             f"Measured in one run of bench/deploy.py ({seconds / 60:.1f} min).")
    path = ex.write_text(os.path.join(args.demo_out, "deploy.md"),
                         "\n".join(["# Deploying make demo's models", "", *lines, "", notes, ""]))
    print("\n" + "\n".join(lines) + "\n\n" + notes)
    print("wall time per command:\n" + ex.format_timings(runner.timings))
    print(f"table: {runner.rel(path)}")
    return 0


if __name__ == "__main__":
    run_cli(main)
