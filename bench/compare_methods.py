"""Compare the distillation methods on the synthetic dataset (the seed's table, synthetic targets as columns).

From one teacher and one soft dataset, train the y1 student with arcface (no teacher)
and with every distillation method under the same budget (steps x batch images), once per
student seed (--seeds; the data and the teacher stay fixed). The triplet methods fine-tune
from the arcface student of the same seed (--pretrained), as in the seed, with the same
budget again. Each row is the mean ± std over the seeds of the accuracy of each saved
checkpoint (from the verification round its training logged); a mark says where a method
differs from arcface by more than their combined spread. The teacher is trained once per
command line and cached (bench/teacher_cache.py); it is evaluated by
recognition/eval/verification.py on the same targets. Writes ``results.md`` and
``results.png`` in --out.

    python -u bench/compare_methods.py                       # 3 seeds; ~60 min on the slower 2-core machine
                                                             # with the teacher cached (~85 min without)
    python -u bench/compare_methods.py --quick               # every method on tiny sizes, 2 seeds (~5-15 min)
    python -u bench/compare_methods.py --seeds 0,1,2,3,4 --methods arcface,margin_distillation
"""
import argparse
import datetime
import os
import shlex
import shutil
import sys
import time

import experiments as ex  # bench/experiments.py, beside this script
from facekd.checkpoints import parse_model_arg
from facekd.errors import FaceKDError, run_cli
from teacher_cache import TeacherCache

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TEACHER_NETWORK = ex.TEACHER_NETWORK
BASE = "arcface"  # the row every method is compared with


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n", 2)[2])
    p.add_argument("--out", default=os.path.join(ROOT, "bench", "out", "compare"),
                   help="output folder; its comparison subfolders are replaced (default %(default)s)")
    p.add_argument("--steps", type=int, default=150, help="training steps of every student run")
    p.add_argument("--batch-size", type=int, default=32,
                   help="images per step (triplet runs: the nearest lower multiple of 3, more steps)")
    p.add_argument("--teacher-steps", type=int, default=ex.TEACHER_STEPS)
    p.add_argument("--methods", default=",".join(ex.METHODS),
                   help="comma-separated methods; triplet methods need arcface")
    p.add_argument("--triplet-lr", type=float, default=ex.TRIPLET_LR, help="lr of the triplet fine-tuning")
    p.add_argument("--triplet-bag-batches", type=int, default=20, help="triplet bag size in batches")
    ex.add_data_arguments(p, pairs=ex.COMPARISON_PAIRS, target_images=ex.COMPARISON_TARGET_IMAGES)
    add_teacher_arguments(p)
    p.add_argument("--quick", action="store_true", help="tiny sizes: checks that every method runs")
    return p.parse_args(argv)


def add_teacher_arguments(p):
    """--seeds, --teacher / --data-dir / --soft-dir (reuse a teacher) and --no-cache, shared by the comparisons."""
    ex.add_seeds_argument(p)
    p.add_argument("--teacher", default="", help="reuse this teacher 'prefix,epoch' (with --data-dir, --soft-dir)")
    p.add_argument("--data-dir", default="", help="reuse: the hard-label synthetic dataset of the teacher")
    p.add_argument("--soft-dir", default="", help="reuse: the teacher's soft dataset of --data-dir")
    p.add_argument("--no-cache", action="store_true",
                   help="train the teacher even if the cache holds this command's run (and do not store it)")


def apply_quick(args):
    ex.apply_quick_data(args)
    args.steps = args.teacher_steps = 20
    args.triplet_bag_batches = 5
    args.seeds = "0,1"


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


def build_teacher(ws, args, teacher_budget, cache=None):
    """Synthetic dataset, y2 teacher (through ``cache`` when given) and soft dataset under --out.

    Returns (TrainedModel, cache record or None)."""
    ws.make_synthetic(args.identities, args.images_per_identity, args.val_identities, args.pairs,
                      getattr(args, "target_images", 0))
    teacher, record = ws.train_cached(cache, ex.TEACHER_NET, ex.loss_flags("arcface"), teacher_budget,
                                      extra=TEACHER_NETWORK, tag="train teacher")
    ws.save_embeddings(teacher)
    return teacher, record


def ensure_teacher(ws, args, t_budget, teacher):
    """(teacher, cache record): ``teacher`` when reused, else built (through the cache unless --no-cache
    or --quick; the record is None without the cache)."""
    if teacher is not None:
        return teacher, None
    cache = None if args.no_cache or args.quick else TeacherCache()
    return build_teacher(ws, args, t_budget, cache)


def train_method(space, method, teacher, budget, args, arcface_model):
    """One student of ``method`` in ``space`` (the triplet methods fine-tune ``arcface_model``)."""
    flags = ex.loss_flags(method, space.model_arg(teacher))
    tag = f"seed {space.seed}: {method}"
    if method in ex.TRIPLET_METHODS:
        tb, bag = ex.triplet_budget(budget, args.triplet_lr, args.triplet_bag_batches)
        extra = ["--pretrained", space.runner.rel(arcface_model.prefix), "--pretrained-epoch", arcface_model.epoch,
                 "--triplet-bag-size", bag]
        return space.train("y1", flags, tb, soft=True, extra=extra, tag=tag)
    return space.train("y1", flags, budget, soft=method != "arcface", tag=tag)


def per_run_table(runs, targets):
    """Every student run: method, seed, fold mean ± fold std per target."""
    lines = ["| method | seed | " + " | ".join(targets) + " |", "|" + " --- |" * (2 + len(targets))]
    for method, by_seed in runs.items():
        for seed, acc in by_seed.items():
            lines.append(f"| {ex.METHOD_TITLES[method]} | {seed} | " +
                         " | ".join(ex.format_accuracy(acc[t]) for t in targets) + " |")
    return "\n".join(lines) + "\n"


def teacher_text(args, record):
    if args.teacher:
        return f"Teacher: reused {args.teacher}."
    cached = (f" Its run came from the teacher cache: trained {record['date']} in {record['seconds'] / 60:.1f} min "
              "by the same command." if record and record.get("restored") else
              " Trained by this run (and stored in the teacher cache)." if record else " Trained by this run.")
    return (f"Teacher: {ex.TEACHER_NET} ({' '.join(TEACHER_NETWORK)}) trained with arcface for "
            f"{args.teacher_steps} steps x {args.batch_size} on {args.identities} identities x "
            f"{args.images_per_identity} images.{cached}")


def report(rows, run_table, args, seeds, budget, seconds, command, runner, record):
    tb, _ = ex.triplet_budget(budget, args.triplet_lr, args.triplet_bag_batches)
    pool = (f", drawn from {args.target_images} images per held-out identity and profile (images are reused "
            "across pairs, as in LFW)" if args.target_images else "")
    return "\n".join([
        "# Distillation methods on the synthetic dataset", "",
        f"Command: `{command}`  ", f"Date: {datetime.date.today().isoformat()}  ",
        f"Wall time: {seconds / 60:.1f} min on {os.cpu_count()} CPU cores", "",
        ex.recipe_text(budget) + ".", "",
        teacher_text(args, record), "",
        f"Every student is y1 with {budget.steps} steps x {budget.batch} images ({budget.samples} images); "
        f"the triplet methods fine-tune the arcface student of their seed for {tb.steps} steps x {tb.batch} "
        f"images (lr {tb.lr:g}). Targets: {args.pairs} pairs each from {args.val_identities} held-out "
        f"identities{pool}.", "",
        f"Accuracy-Flip in %. Student rows: mean ± std over {len(seeds)} seeds ({', '.join(map(str, seeds))}; "
        "each seed's accuracy is the mean of its 10 folds); the teacher row is one run, ± its fold std. "
        f"{ex.ABOVE} / {ex.BELOW}: above / below arcface by more than the combined spread "
        "sqrt(std² + std_arcface²).", "",
        ex.markdown_table(rows, ex.TARGETS),
        "Every run (fold mean ± fold std):", "", run_table,
        "Wall time per command:", "", "```", ex.format_timings(runner.timings), "```", ""])


def main(argv=None):
    args = parse_args(argv)
    command = shlex.join(["python", "-u", "bench/compare_methods.py"] + list(sys.argv[1:] if argv is None else argv))
    if args.quick:
        apply_quick(args)
    seeds = ex.parse_seeds(args.seeds)
    methods = ex.order_methods(args.methods.split(","))
    start = time.perf_counter()
    runner = ex.CommandRunner(ROOT)
    ws = ex.Workspace(runner, args.out, seed=args.seed, frequent=5 if args.quick else 20)
    teacher = reused_teacher(ws, args)
    for folder in (ws.models_root, ws.logs) + (() if teacher else (ws.data_dir, ws.soft_dir)):
        shutil.rmtree(folder, ignore_errors=True)  # this bench's own outputs from an earlier run
    budget = ex.Budget(steps=args.steps, batch=args.batch_size, verbose=args.steps)
    t_budget = ex.teacher_budget(args.teacher_steps, args.batch_size)
    print(f"compare_methods: {', '.join(methods)} x seeds {', '.join(map(str, seeds))}; "
          f"outputs in {runner.rel(ws.out)}/")
    print(ex.recipe_text(budget, None if teacher else t_budget))

    teacher, record = ensure_teacher(ws, args, t_budget, teacher)
    verified = ws.verify([teacher], ex.TARGETS, os.path.join(ws.models_root, "teacher-roc.png"))
    rows = [ex.result_row(f"{teacher.network} teacher (arcface)", teacher, verified[teacher.model_arg])]
    runs = {m: {} for m in methods}
    for seed in seeds:
        space, trained = ws.seed_space(seed), {}
        for method in methods:
            model = train_method(space, method, teacher, budget, args, trained.get("arcface"))
            trained[method] = model
            runs[method][seed] = ex.saved_accuracies(model.log, model.prefix, model.epoch, ex.TARGETS)
            print(f"\nseed {seed}, {method}: " + ", ".join(
                f"{t} {ex.format_accuracy(runs[method][seed][t])}" for t in ex.TARGETS))
    for method in methods:
        rows.append(ex.seeded_row(ex.METHOD_TITLES[method], trained[method], list(runs[method].values())))
    base = next((r for r in rows[1:] if r.loss == BASE), None)
    for row in rows[1:]:
        if base is not None and row is not base:
            ex.mark_differences(row, base, ex.TARGETS)

    seconds = time.perf_counter() - start
    text = report(rows, per_run_table(runs, ex.TARGETS), args, seeds, budget, seconds, command,
                  runner, record)
    ex.write_results(ws.out, text, rows, f"y1 students, {budget.samples} training images each, "
                     f"{len(seeds)} seeds (whiskers: std over seeds)", runner)
    return 0


if __name__ == "__main__":
    run_cli(main)
