"""Compare the distillation methods on the synthetic dataset (the seed's table, synthetic targets as columns).

From one teacher and one soft dataset, train the y1 student with arcface (no teacher)
and with every distillation method under the same budget (steps x batch images).
The triplet methods fine-tune from the arcface student (--pretrained), as in the seed,
with the same budget again. Accuracies are those of each saved checkpoint, from the
verification round the trainer logs. Writes ``results.md`` and ``results.png`` in --out.

    python -u bench/compare_methods.py                       # ~25-35 min on 2 CPU cores
    python -u bench/compare_methods.py --quick               # every method on tiny sizes (~3 min)
    python -u bench/compare_methods.py --teacher demo_out/models/y2-arcface-synthetic/model,1 \\
        --data-dir demo_out/synthetic --soft-dir demo_out/synthetic_soft   # reuse the demo's teacher
"""
import argparse
import datetime
import os
import shlex
import shutil
import sys
import time

import experiments as ex  # bench/experiments.py, beside this script
from facekd.errors import FaceKDError, run_cli
from facekd.checkpoints import parse_model_arg

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TEACHER_NETWORK = ["--net-act", "relu", "--emb-size", "512"]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n", 2)[2])
    p.add_argument("--out", default=os.path.join(ROOT, "bench", "out", "compare"),
                   help="output folder; its comparison subfolders are replaced (default %(default)s)")
    p.add_argument("--steps", type=int, default=300, help="training steps of every student run")
    p.add_argument("--batch-size", type=int, default=32,
                   help="images per step (triplet runs: the nearest lower multiple of 3, more steps)")
    p.add_argument("--teacher-steps", type=int, default=300)
    p.add_argument("--methods", default=",".join(ex.METHODS),
                   help="comma-separated methods; triplet methods need arcface")
    p.add_argument("--triplet-lr", type=float, default=ex.TRIPLET_LR, help="lr of the triplet fine-tuning")
    p.add_argument("--triplet-bag-batches", type=int, default=20, help="triplet bag size in batches")
    ex.add_data_arguments(p, pairs=600)
    p.add_argument("--teacher", default="", help="reuse this teacher 'prefix,epoch' (with --data-dir, --soft-dir)")
    p.add_argument("--data-dir", default="", help="reuse: the hard-label synthetic dataset of the teacher")
    p.add_argument("--soft-dir", default="", help="reuse: the teacher's soft dataset of --data-dir")
    p.add_argument("--quick", action="store_true", help="tiny sizes: checks that every method runs")
    return p.parse_args(argv)


def apply_quick(args):
    ex.apply_quick_data(args)
    args.steps = args.teacher_steps = 20
    args.triplet_bag_batches = 5


def reused_teacher(ws, args):
    """The teacher TrainedModel of --teacher/--data-dir/--soft-dir (checked), or None to build one."""
    reuse = (args.teacher, args.data_dir, args.soft_dir)
    if not any(reuse):
        return None
    if not all(reuse):
        raise FaceKDError("reuse needs all of --teacher, --data-dir and --soft-dir")
    prefix, epoch = parse_model_arg(args.teacher, "--teacher")
    for folder, flag in ((args.data_dir, "--data-dir"), (args.soft_dir, "--soft-dir")):
        if not os.path.isdir(folder):
            raise FaceKDError(f"{flag} {folder} is not a folder")
    prefix = os.path.abspath(prefix)
    for replaced in (ws.models_root, ws.logs):
        if os.path.commonpath([prefix, replaced]) == replaced:
            raise FaceKDError(f"--teacher {args.teacher} lies in {replaced}, which this bench replaces; "
                              "give another --out")
    log = os.path.join(os.path.dirname(prefix), "train.log")
    if not os.path.isfile(log):
        raise FaceKDError(f"--teacher: no training log {log} beside the checkpoint (its accuracy is read there)")
    ws.data_dir, ws.soft_dir = os.path.abspath(args.data_dir), os.path.abspath(args.soft_dir)
    network = os.path.basename(os.path.dirname(prefix)).split("-")[0]
    return ex.TrainedModel(network, "arcface", prefix, epoch, log)


def build_teacher(ws, args, teacher_budget):
    """Synthetic dataset, y2 teacher and soft dataset under --out."""
    ws.make_synthetic(args.identities, args.images_per_identity, args.val_identities, args.pairs)
    teacher = ws.train("y2", ex.loss_flags("arcface"), teacher_budget, extra=TEACHER_NETWORK, tag="train teacher")
    ws.save_embeddings(teacher)
    return teacher


def report(rows, args, budget, teacher_budget, seconds, command, runner):
    """The markdown saved beside the chart: command, date, wall time, settings, table, per-run times."""
    tb, _ = ex.triplet_budget(budget, args.triplet_lr, args.triplet_bag_batches)
    return "\n".join([
        "# Distillation methods on the synthetic dataset", "",
        f"Command: `{command}`  ", f"Date: {datetime.date.today().isoformat()}  ",
        f"Wall time: {seconds / 60:.1f} min on {os.cpu_count()} CPU cores", "",
        ex.recipe_text(budget, None if args.teacher else teacher_budget) + ".", "",
        (f"Teacher: reused {args.teacher}." if args.teacher else
         f"Teacher: y2 ({' '.join(TEACHER_NETWORK)}) trained with arcface by this command on "
         f"{args.identities} identities x {args.images_per_identity} images; targets of {args.pairs} pairs "
         f"from {args.val_identities} held-out identities."), "",
        f"Every student is y1 with {budget.steps} steps x {budget.batch} images ({budget.samples} images); "
        f"the triplet methods fine-tune the arcface student for {tb.steps} steps x {tb.batch} images "
        f"(lr {tb.lr:g}). Accuracy-Flip in % (10 folds, mean ± std; chance 50) of each saved checkpoint, "
        "from the verification round its training logged.", "",
        ex.markdown_table(rows, ex.TARGETS),
        "Wall time per command:", "", "```", ex.format_timings(runner.timings), "```", ""])


def main(argv=None):
    args = parse_args(argv)
    command = shlex.join(["python", "-u", "bench/compare_methods.py"] + list(sys.argv[1:] if argv is None else argv))
    if args.quick:
        apply_quick(args)
    methods = ex.order_methods(args.methods.split(","))
    start = time.perf_counter()
    runner = ex.CommandRunner(ROOT)
    ws = ex.Workspace(runner, args.out, seed=args.seed, frequent=5 if args.quick else 20)
    teacher = reused_teacher(ws, args)
    for folder in (ws.models_root, ws.logs) + (() if teacher else (ws.data_dir, ws.soft_dir)):
        shutil.rmtree(folder, ignore_errors=True)  # this bench's own outputs from an earlier run
    budget = ex.Budget(steps=args.steps, batch=args.batch_size, verbose=args.steps)
    teacher_budget = ex.Budget(steps=args.teacher_steps, batch=args.batch_size, verbose=args.teacher_steps)
    print(f"compare_methods: {', '.join(methods)}; outputs in {runner.rel(ws.out)}/")
    print(ex.recipe_text(budget, None if teacher else teacher_budget))

    teacher = teacher or build_teacher(ws, args, teacher_budget)
    rows = [ex.result_row(f"{teacher.network} teacher (arcface)", teacher,
                          ex.saved_accuracies(teacher.log, teacher.prefix, teacher.epoch, ex.TARGETS))]
    trained = {}
    for method in methods:
        flags = ex.loss_flags(method, ws.model_arg(teacher))
        if method in ex.TRIPLET_METHODS:
            tb, bag = ex.triplet_budget(budget, args.triplet_lr, args.triplet_bag_batches)
            base = trained["arcface"]
            extra = ["--pretrained", runner.rel(base.prefix), "--pretrained-epoch", base.epoch,
                     "--triplet-bag-size", bag]
            model = ws.train("y1", flags, tb, soft=True, extra=extra, tag=f"train {method}")
        else:
            model = ws.train("y1", flags, budget, soft=method != "arcface", tag=f"train {method}")
        trained[method] = model
        rows.append(ex.result_row(ex.METHOD_TITLES[method], model,
                                  ex.saved_accuracies(model.log, model.prefix, model.epoch, ex.TARGETS)))
        print(f"\n{ex.markdown_table(rows[-1:], ex.TARGETS)}")

    seconds = time.perf_counter() - start
    text = report(rows, args, budget, teacher_budget, seconds, command, runner)
    ex.write_results(ws.out, text, rows, f"y1 students, {budget.samples} training images each", runner)
    return 0


if __name__ == "__main__":
    run_cli(main)
