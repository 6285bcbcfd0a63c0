"""The whole job end to end on a generated face dataset (``make demo``).

Generate the synthetic dataset, train a y2 teacher with a margin loss (once: the run is
cached by its command line, bench/teacher_cache.py, and reused by later demos and by
bench/compare_methods.py), build the soft dataset with the teacher's embeddings
(streaming), train the y1 student with margin_distillation, evaluate both with the
verification protocol, and print a table (network, loss, parameters, FLOPs, accuracy per
target). Training curves and ROC curves are written as PNGs beside the checkpoints.
Every stage is the real command, printed before it runs: the same commands work on real data.

    python -u bench/demo.py                 # ~6 min on 2 CPU cores with the teacher cached; its first
                                            # training adds ~25 min on the slower machine (docs/results.md)
    python -u bench/demo.py --quick         # a smoke run of about 2 minutes (not for the numbers)
"""
import argparse
import os
import shutil
import time

import experiments as ex  # bench/experiments.py, beside this script
from facekd.errors import FaceKDError, run_cli
from teacher_cache import TeacherCache

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n", 2)[2])
    p.add_argument("--out", default=os.path.join(ROOT, "demo_out"),
                   help="output folder; its demo subfolders are replaced (default %(default)s)")
    ex.add_data_arguments(p, pairs=ex.COMPARISON_PAIRS, target_images=ex.COMPARISON_TARGET_IMAGES)
    p.add_argument("--teacher-steps", type=int, default=ex.TEACHER_STEPS)
    p.add_argument("--student-steps", type=int, default=150)
    p.add_argument("--batch-size", type=int, default=32, help="per-batch-size of both trainings")
    p.add_argument("--rounds", type=int, default=2, help="verification rounds during the student's training")
    p.add_argument("--no-cache", action="store_true",
                   help="train the teacher even if the cache holds this command's run (and do not store it)")
    p.add_argument("--quick", action="store_true", help="tiny sizes: checks that every stage runs")
    return p.parse_args(argv)


def apply_quick(args):
    ex.apply_quick_data(args)
    args.teacher_steps = args.student_steps = 30
    args.rounds = 1


def budget(steps, args):
    return ex.Budget(steps=steps, batch=args.batch_size, verbose=max(1, steps // max(1, args.rounds)))


def teacher_line(record):
    """Where the teacher came from: this run, or the cache (and how long its training took)."""
    if record is None:
        return "teacher: trained by this run (not cached)."
    if record.get("restored"):
        return (f"teacher: from the teacher cache (trained {record['date']} in {record['seconds'] / 60:.1f} min "
                "by the same command; delete its folder or pass --no-cache to retrain).")
    return f"teacher: trained by this run in {record['seconds'] / 60:.1f} min and stored in the teacher cache."


def ranking_line(rows):
    """Whether the teacher (rows[0]) is above the student (rows[1]) on every target."""
    teacher, student = rows
    behind = [t for t in ex.TARGETS if teacher.accuracy[t].acc <= student.accuracy[t].acc]
    if not behind:
        return "the teacher is above the student on every target."
    return f"the teacher is NOT above the student on {', '.join(behind)}."


def main(argv=None):
    args = parse_args(argv)
    if args.quick:
        apply_quick(args)
    start = time.perf_counter()
    runner = ex.CommandRunner(ROOT)
    ws = ex.Workspace(runner, args.out, seed=args.seed, frequent=5 if args.quick else 20)
    if os.path.exists(ws.out) and not os.path.isdir(ws.out):
        raise FaceKDError(f"--out {args.out} exists and is not a folder")
    for folder in (ws.data_dir, ws.soft_dir, ws.models_root, ws.logs):
        shutil.rmtree(folder, ignore_errors=True)  # the demo's own outputs from an earlier run
    teacher_budget = ex.teacher_budget(args.teacher_steps, args.batch_size)
    student_budget = budget(args.student_steps, args)
    print(f"facekd demo: outputs in {runner.rel(ws.out)}/")
    print(ex.recipe_text(student_budget, teacher_budget))
    print("teacher: y2 (MobileFaceNet, blocks [2,8,16,4], ~2x the student's FLOPs) with relu and a 512-d "
          "embedding like the student's (prelu trains ~10x slower on MXNet's CPU backend)")

    print("\n== 1/5 synthetic dataset")
    ws.make_synthetic(args.identities, args.images_per_identity, args.val_identities, args.pairs,
                      args.target_images)
    print("\n== 2/5 teacher: y2 with arcface (trained once, then reused from the teacher cache)")
    cache = None if args.no_cache or args.quick else TeacherCache()
    teacher, record = ws.train_cached(cache, ex.TEACHER_NET, ex.loss_flags("arcface"), teacher_budget,
                                      extra=ex.TEACHER_NETWORK)
    print("\n== 3/5 soft dataset: the teacher's embedding of every training image (streaming)")
    ws.save_embeddings(teacher)
    print("\n== 4/5 student: y1 with margin_distillation")
    student = ws.train("y1", ex.loss_flags("margin_distillation", ws.model_arg(teacher)), student_budget,
                       soft=True, tag="train student")
    print("\n== 5/5 evaluation on the held-out targets")
    roc = os.path.join(ws.models_root, "roc.png")
    accuracy = ws.verify([teacher, student], ex.TARGETS, roc)
    curves = [ws.plot_training(m) for m in (teacher, student)]

    rows = [ex.result_row("teacher (y2, arcface)", teacher, accuracy[teacher.model_arg]),
            ex.result_row("student (y1, margin_distillation)", student, accuracy[student.model_arg])]
    table = ex.markdown_table(rows, ex.TARGETS)
    bars = ex.plot_accuracy_bars(rows, ex.TARGETS, os.path.join(ws.models_root, "accuracy.png"),
                                 title="demo: Accuracy-Flip on the synthetic targets")
    seconds = time.perf_counter() - start
    lines = [teacher_line(record), ranking_line(rows)]
    ex.write_text(os.path.join(ws.out, "results.md"), "\n".join([
        f"# make demo ({seconds / 60:.1f} min)", "", ex.recipe_text(student_budget, teacher_budget) + ".", "",
        *lines, "", table, "Wall time per command:", "", "```", ex.format_timings(runner.timings), "```", ""]))
    print("\n== results (Accuracy-Flip %, 10 folds, mean ± std; chance is 50)\n")
    print(table)
    print("\n".join(lines))
    print("wall time per command:\n" + ex.format_timings(runner.timings))
    print(f"demo finished in {seconds / 60:.1f} min")
    print("plots:")
    for path in curves + [roc, bars, os.path.join(ws.out, "montage.png")]:
        print(f"  {runner.rel(path)}")
    print("checkpoints: " + ", ".join(f"{runner.rel(m.prefix)}-{m.epoch:04d}.params" for m in (teacher, student)))
    print(f"table: {runner.rel(os.path.join(ws.out, 'results.md'))}")
    weak = ex.below_chance(rows, ex.TARGETS, margin=0.05)
    if weak and not args.quick:
        raise FaceKDError("not clearly above chance: " + ", ".join(f"{m} {t} {100 * a:.1f}%" for m, t, a in weak))
    return 0


if __name__ == "__main__":
    run_cli(main)
