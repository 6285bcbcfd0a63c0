"""Partial FC against the full head: arcface and margin_distillation students at --sample-ratio r and 1.

On one synthetic set of at least 2,000 identities, one y2 teacher (full head, trained once per
command line and cached, bench/teacher_cache.py) and its soft dataset, the y1 student is trained
under the same budget (steps x batch images) for arcface and margin_distillation, each with
every class centre (r = 1) and with round(r·C) sampled centres a step (Partial FC), once per
student seed (--seeds). Each row is the mean ± std over the seeds of the accuracy of each saved
checkpoint (from the verification round its training logged). Writes ``results.md`` and
``results.png`` in --out, and says for every target whether the sampled students' mean is within
one fold std of the full ones' (the acceptance of the Partial FC work) and whether the
difference exceeds the seeds' combined spread.

    python -u bench/partial_fc_accuracy.py                    # 3 seeds; 62 min on the faster 2-core machine
    python -u bench/partial_fc_accuracy.py --quick            # tiny sizes, 2 seeds: checks that it runs
    python -u bench/partial_fc_accuracy.py --teacher T,1 --data-dir D --soft-dir S   # reuse a teacher
"""
import argparse
import datetime
import os
import shlex
import shutil
import sys
import time

import compare_methods as cm  # bench/compare_methods.py: the teacher it builds or reuses, the seeds
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
    p.add_argument("--steps", type=int, default=300, help="training steps of every student run")
    p.add_argument("--batch-size", type=int, default=32, help="images per step")
    p.add_argument("--teacher-steps", type=int, default=600)
    ex.add_data_arguments(p, pairs=ex.COMPARISON_PAIRS, target_images=ex.COMPARISON_TARGET_IMAGES)
    p.set_defaults(identities=MIN_IDENTITIES, images_per_identity=10)
    cm.add_teacher_arguments(p)
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
    args.seeds = "0,1"


def title(method, ratio):
    return f"{ex.METHOD_TITLES[method]}, " + ("every centre" if ratio == 1 else f"r = {ratio:g}")


def verdicts(rows, fold_std, ratio):
    """Lines saying, per method and target, whether the sampled students' mean is within one fold std
    of the full ones' (the tolerance of the acceptance), and whether it exceeds the seeds' spread."""
    lines = []
    for method in METHODS:
        full, sampled = rows[(method, 1.0)], rows[(method, ratio)]
        for target in ex.TARGETS:
            a, b = full.accuracy[target], sampled.accuracy[target]
            delta, tolerance = b.acc - a.acc, fold_std[method][target]
            where = ("within one fold std" if abs(delta) <= tolerance else
                     "more than one fold std above" if delta > 0 else "MORE THAN ONE FOLD STD BELOW")
            spread = ("beyond the seeds' combined spread" if target in sampled.marks else
                      "within the seeds' combined spread")
            lines.append(f"- {ex.METHOD_TITLES[method]}, {target}: r = {ratio:g} {100 * b.acc:.2f}, r = 1 "
                         f"{100 * a.acc:.2f} (fold std {100 * tolerance:.2f}): {100 * delta:+.2f} points, "
                         f"{where}; {spread}")
    return lines


def report(table_rows, verdict_lines, args, seeds, budget, seconds, command, runner, record):
    return "\n".join([
        "# Partial FC against the full head on the synthetic dataset", "",
        f"Command: `{command}`  ", f"Date: {datetime.date.today().isoformat()}  ",
        f"Wall time: {seconds / 60:.1f} min on {os.cpu_count()} CPU cores", "",
        ex.recipe_text(budget) + ".", "", cm.teacher_text(args, record), "",
        f"Every student is y1 with {budget.steps} steps x {budget.batch} images; 'r = {args.sample_ratio:g}' "
        f"trains round({args.sample_ratio:g} x classes) sampled class centres a step (--sample-ratio), "
        f"'every centre' the full head. Targets: {args.pairs} pairs each from {args.val_identities} held-out "
        f"identities. Accuracy-Flip in %: student rows are the mean ± std over {len(seeds)} seeds "
        f"({', '.join(map(str, seeds))}), the teacher row one run ± its fold std; {ex.ABOVE} / {ex.BELOW}: the "
        "sampled head above / below the full one by more than the seeds' combined spread.", "",
        ex.markdown_table(table_rows, ex.TARGETS),
        "Sampled against full (tolerance: one fold std of the full head, the mean over its seeds):", "",
        *verdict_lines, "",
        "Wall time per command:", "", "```", ex.format_timings(runner.timings), "```", ""])


def main(argv=None):
    args = parse_args(argv)
    given = list(sys.argv[1:] if argv is None else argv)
    command = shlex.join(["python", "-u", "bench/partial_fc_accuracy.py"] + given)
    if args.quick:
        apply_quick(args)
    check(args)
    seeds = ex.parse_seeds(args.seeds)
    start = time.perf_counter()
    runner = ex.CommandRunner(ROOT)
    ws = ex.Workspace(runner, args.out, seed=args.seed, frequent=5 if args.quick else 20)
    teacher = cm.reused_teacher(ws, args)
    for folder in [ws.models_root, ws.logs] + ([] if teacher else [ws.data_dir, ws.soft_dir]):
        shutil.rmtree(folder, ignore_errors=True)  # this bench's own outputs from an earlier run
    budget = ex.Budget(steps=args.steps, batch=args.batch_size, verbose=args.steps)
    t_budget = ex.teacher_budget(args.teacher_steps, args.batch_size)
    ratios = (1.0, args.sample_ratio)
    print(f"partial_fc_accuracy: {', '.join(METHODS)} at --sample-ratio {args.sample_ratio:g} and 1 x seeds "
          f"{', '.join(map(str, seeds))}; outputs in {runner.rel(ws.out)}/")
    print(ex.recipe_text(budget, None if teacher else t_budget))

    teacher, record = cm.ensure_teacher(ws, args, t_budget, teacher)
    verified = ws.verify([teacher], ex.TARGETS, os.path.join(ws.models_root, "teacher-roc.png"))
    table = [ex.result_row(f"{teacher.network} teacher (arcface)", teacher, verified[teacher.model_arg])]
    runs = {(m, r): [] for m in METHODS for r in ratios}
    for seed in seeds:
        for ratio in ratios:  # one models folder per seed and ratio: the runs of a method share their name
            space = ws.seed_space(seed)
            space.models_root += f"-r{ratio:g}"
            space.logs += f"-r{ratio:g}"
            for method in METHODS:
                flags = ex.loss_flags(method, space.model_arg(teacher))
                model = space.train("y1", flags, budget, soft=method != "arcface",
                                    extra=["--sample-ratio", ratio], tag=f"seed {seed}: {method} r={ratio:g}")
                runs[(method, ratio)].append((model, ex.saved_accuracies(model.log, model.prefix, model.epoch,
                                                                         ex.TARGETS)))
                print(f"\nseed {seed}, {method}, r = {ratio:g}: " + ", ".join(
                    f"{t} {ex.format_accuracy(runs[(method, ratio)][-1][1][t])}" for t in ex.TARGETS))
    rows, fold_std = {}, {m: {} for m in METHODS}
    for (method, ratio), done in runs.items():
        rows[(method, ratio)] = ex.seeded_row(title(method, ratio), done[-1][0], [acc for _, acc in done])
        if ratio == 1.0:
            fold_std[method] = {t: sum(acc[t].std for _, acc in done) / len(done) for t in ex.TARGETS}
    for method in METHODS:
        ex.mark_differences(rows[(method, args.sample_ratio)], rows[(method, 1.0)], ex.TARGETS)
        table += [rows[(method, 1.0)], rows[(method, args.sample_ratio)]]

    lines = verdicts(rows, fold_std, args.sample_ratio)
    text = report(table, lines, args, seeds, budget, time.perf_counter() - start, command, runner, record)
    ex.write_results(ws.out, text, table, f"y1 students, r = {args.sample_ratio:g} and every centre, "
                     f"{budget.samples} images, {len(seeds)} seeds", runner)
    return 0


if __name__ == "__main__":
    run_cli(main)
