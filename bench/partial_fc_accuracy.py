"""Partial FC against the full head: arcface and margin_distillation students at --sample-ratio r and 1.

On one synthetic set of at least 2,000 identities, one y2 teacher (full head) and its soft
dataset, the y1 student is trained four times under the same budget (steps x batch images):
arcface and margin_distillation, each with every class centre (r = 1) and with round(r·C)
sampled centres a step (Partial FC). Accuracies are those of each saved checkpoint, from the
verification round its training logged. Writes ``results.md`` and ``results.png`` in --out,
and says for every target whether the sampled student is within one fold std of the full one.

    python -u bench/partial_fc_accuracy.py                    # 2,000 identities, ~30-40 min on 2 CPU cores
    python -u bench/partial_fc_accuracy.py --quick            # tiny sizes: checks that it runs (~3 min)
    python -u bench/partial_fc_accuracy.py --teacher T,1 --data-dir D --soft-dir S   # reuse a teacher
"""
import argparse
import datetime
import os
import shlex
import shutil
import sys
import time

import compare_methods as cm  # bench/compare_methods.py: the teacher it builds or reuses
import experiments as ex  # bench/experiments.py, beside this script
from facekd.errors import FaceKDError, run_cli

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
METHODS = ("arcface", "margin_distillation")
MIN_IDENTITIES = 2000  # the scale: sampling only matters with many classes


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n", 2)[2])
    p.add_argument("--out", default=os.path.join(ROOT, "bench", "out", "partial_fc"),
                   help="output folder; its model and log subfolders are replaced (default %(default)s)")
    p.add_argument("--sample-ratio", type=float, default=0.1, help="the Partial FC ratio compared with 1")
    p.add_argument("--steps", type=int, default=600, help="training steps of every student run")
    p.add_argument("--batch-size", type=int, default=32, help="images per step")
    p.add_argument("--teacher-steps", type=int, default=600)
    ex.add_data_arguments(p, pairs=600)
    p.set_defaults(identities=MIN_IDENTITIES, images_per_identity=10, val_identities=200)
    p.add_argument("--teacher", default="", help="reuse this teacher 'prefix,epoch' (with --data-dir, --soft-dir)")
    p.add_argument("--data-dir", default="", help="reuse: the hard-label synthetic dataset of the teacher")
    p.add_argument("--soft-dir", default="", help="reuse: the teacher's soft dataset of --data-dir")
    p.add_argument("--quick", action="store_true", help="tiny sizes: checks that the comparison runs")
    return p.parse_args(argv)


def check(args):
    if not 0 < args.sample_ratio < 1:
        raise FaceKDError(f"--sample-ratio {args.sample_ratio:g}: compare a ratio in (0, 1) with the full head")
    if not args.quick and not args.teacher and args.identities < MIN_IDENTITIES:
        raise FaceKDError(f"--identities {args.identities}: the comparison needs at least {MIN_IDENTITIES} "
                          "classes (use --quick for a smoke run)")
    sampled = round(args.sample_ratio * args.identities)
    if not args.teacher and sampled < args.batch_size:
        raise FaceKDError(f"--sample-ratio {args.sample_ratio:g} x {args.identities} identities = {sampled} "
                          f"sampled centres, fewer than the --batch-size {args.batch_size} classes a step can hold")


def apply_quick(args):
    ex.apply_quick_data(args)
    args.identities, args.sample_ratio = 80, 0.5
    args.steps = args.teacher_steps = 20


def title(method, ratio):
    return f"{ex.METHOD_TITLES[method]}, " + ("every centre" if ratio == 1 else f"r = {ratio:g}")


def verdicts(rows, ratio):
    """Lines saying, per method and target, whether the sampled student is within one fold std of the full one."""
    lines = []
    for method in METHODS:
        full, sampled = rows[(method, 1.0)], rows[(method, ratio)]
        for target in ex.TARGETS:
            a, b = full.accuracy[target], sampled.accuracy[target]
            delta = b.acc - a.acc
            where = ("within one fold std" if abs(delta) <= a.std else
                     "more than one fold std above" if delta > 0 else "MORE THAN ONE FOLD STD BELOW")
            lines.append(f"- {ex.METHOD_TITLES[method]}, {target}: r = {ratio:g} {100 * b.acc:.2f}, r = 1 "
                         f"{100 * a.acc:.2f} ± {100 * a.std:.2f}: {100 * delta:+.2f} points, {where}")
    return lines


def report(table_rows, verdict_lines, args, budget, teacher_budget, seconds, command, runner):
    teacher = (f"Teacher: reused {args.teacher}." if args.teacher else
               f"Teacher: y2 ({' '.join(cm.TEACHER_NETWORK)}) trained with arcface (every centre) by this command on "
               f"{args.identities} identities x {args.images_per_identity} images; targets of {args.pairs} pairs "
               f"from {args.val_identities} held-out identities.")
    return "\n".join([
        "# Partial FC against the full head on the synthetic dataset", "",
        f"Command: `{command}`  ", f"Date: {datetime.date.today().isoformat()}  ",
        f"Wall time: {seconds / 60:.1f} min on {os.cpu_count()} CPU cores", "",
        ex.recipe_text(budget, None if args.teacher else teacher_budget) + ".", "", teacher, "",
        f"Every student is y1 with {budget.steps} steps x {budget.batch} images; 'r = {args.sample_ratio:g}' "
        f"trains round({args.sample_ratio:g} x classes) sampled class centres a step (--sample-ratio), "
        "'every centre' the full head. Accuracy-Flip in % (10 folds, mean ± std; chance 50) of each saved "
        "checkpoint, from the verification round its training logged.", "",
        ex.markdown_table(table_rows, ex.TARGETS),
        "Sampled against full (one fold std of the full head's accuracy as the tolerance):", "",
        *verdict_lines, "",
        "Wall time per command:", "", "```", ex.format_timings(runner.timings), "```", ""])


def main(argv=None):
    args = parse_args(argv)
    given = list(sys.argv[1:] if argv is None else argv)
    command = shlex.join(["python", "-u", "bench/partial_fc_accuracy.py"] + given)
    if args.quick:
        apply_quick(args)
    check(args)
    start = time.perf_counter()
    runner = ex.CommandRunner(ROOT)
    ws = ex.Workspace(runner, args.out, seed=args.seed, frequent=5 if args.quick else 20)
    teacher = cm.reused_teacher(ws, args)
    ratios = (1.0, args.sample_ratio)
    spaces = {}
    for ratio in ratios:  # one models folder per ratio: the runs of a method share their folder name
        space = ex.Workspace(runner, args.out, seed=args.seed, frequent=ws.frequent)
        space.models_root = os.path.join(ws.out, "models" if ratio == 1 else f"models-r{ratio:g}")
        if teacher and os.path.commonpath([os.path.abspath(teacher.prefix), space.models_root]) == space.models_root:
            raise FaceKDError(f"--teacher {args.teacher} lies in {space.models_root}, which this bench replaces; "
                              "give another --out")
        spaces[ratio] = space
    ours = [s.models_root for s in spaces.values()] + [ws.logs] + ([] if teacher else [ws.data_dir, ws.soft_dir])
    for folder in ours:
        shutil.rmtree(folder, ignore_errors=True)  # this bench's own outputs from an earlier run
    budget = ex.Budget(steps=args.steps, batch=args.batch_size, verbose=args.steps)
    teacher_budget = ex.Budget(steps=args.teacher_steps, batch=args.batch_size, verbose=args.teacher_steps)
    print(f"partial_fc_accuracy: {', '.join(METHODS)} at --sample-ratio {args.sample_ratio:g} and 1; "
          f"outputs in {runner.rel(ws.out)}/")
    print(ex.recipe_text(budget, None if teacher else teacher_budget))

    if teacher is None:
        teacher, _ = cm.build_teacher(ws, args, teacher_budget)
    for space in spaces.values():
        space.data_dir, space.soft_dir = ws.data_dir, ws.soft_dir
    table = [ex.result_row(f"{teacher.network} teacher (arcface)", teacher,
                           ex.saved_accuracies(teacher.log, teacher.prefix, teacher.epoch, ex.TARGETS))]
    rows = {}
    for method in METHODS:
        for ratio in ratios:
            flags = ex.loss_flags(method, ws.model_arg(teacher))
            model = spaces[ratio].train("y1", flags, budget, soft=method != "arcface",
                                        extra=["--sample-ratio", ratio], tag=f"train {method} r={ratio:g}")
            rows[(method, ratio)] = ex.result_row(title(method, ratio), model, ex.saved_accuracies(
                model.log, model.prefix, model.epoch, ex.TARGETS))
            table.append(rows[(method, ratio)])
            print(f"\n{ex.markdown_table(table[-1:], ex.TARGETS)}")

    lines = verdicts(rows, args.sample_ratio)
    text = report(table, lines, args, budget, teacher_budget, time.perf_counter() - start, command, runner)
    ex.write_results(ws.out, text, table, f"y1 students, r = {args.sample_ratio:g} and every centre, "
                     f"{budget.samples} images", runner)
    return 0


if __name__ == "__main__":
    run_cli(main)
