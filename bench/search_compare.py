"""Search PocketNet cells on the synthetic set and compare the genotype found with PocketNet's.

Generates the synthetic dataset, runs recognition/search.py on it (DARTS, the architecture on one
half of each identity's images, the weights on the other), then trains the genotype found
(``--network pocketnet --genotype``) and PocketNet's published genotype (``--network pocketnets128``)
at the same size (--train-layers cells of width --train-channels) with the same loss and budget, and
tabulates parameters, FLOPs and the verification accuracy of each saved checkpoint on the synthetic
targets (2,000 pairs each, drawn from a pool of images per held-out identity, as the method
comparison's). The search runs once (--seed); each genotype is trained once per --seeds, and a row
is the mean ± std over those runs. Writes ``results.md`` and ``results.png`` in --out.

    python -u bench/search_compare.py                 # 3 training seeds
    python -u bench/search_compare.py --quick         # every stage on tiny sizes, 2 seeds (a few minutes)
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
from facekd.symbols import genotypes

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n", 2)[2])
    p.add_argument("--out", default=os.path.join(ROOT, "bench", "out", "search"),
                   help="output folder; its subfolders are replaced (default %(default)s)")
    ex.add_data_arguments(p, pairs=ex.COMPARISON_PAIRS, target_images=ex.COMPARISON_TARGET_IMAGES)
    p.set_defaults(identities=100)
    ex.add_seeds_argument(p)
    p.add_argument("--search-layers", type=int, default=5, help="cells of the supernet")
    p.add_argument("--search-channels", type=int, default=8, help="width of the supernet's first cells")
    p.add_argument("--search-image-size", type=int, default=64, help="faces shrunk to this size for the search")
    p.add_argument("--search-epochs", type=int, default=5)
    p.add_argument("--search-batch-size", type=int, default=32)
    p.add_argument("--order", choices=("first", "second"), default="first", help="architecture gradient")
    p.add_argument("--train-layers", type=int, default=6, help="cells of both trained networks")
    p.add_argument("--train-channels", type=int, default=8, help="width of both trained networks")
    p.add_argument("--steps", type=int, default=150, help="training steps of each network")
    p.add_argument("--batch-size", type=int, default=32, help="images per training step")
    p.add_argument("--quick", action="store_true", help="tiny sizes: checks that every stage runs")
    return p.parse_args(argv)


def apply_quick(args):
    ex.apply_quick_data(args)
    args.search_layers, args.search_channels, args.search_image_size = 3, 4, 56
    args.search_epochs, args.search_batch_size = 2, 16
    args.train_layers, args.train_channels = 4, 8
    args.steps, args.batch_size = 20, 16
    args.seeds = "0,1"


def search(ws, args, out):
    """recognition/search.py on the hard-label set; returns (genotype.json path, wall seconds)."""
    margin = ex.loss_flags("arcface")[2:]  # the recipe's softer scale and margin, as the trainings use
    flags = ["--data-dir", ws.runner.rel(ws.data_dir), "--out", ws.runner.rel(out),
             "--layers", args.search_layers, "--init-channels", args.search_channels,
             "--image-size", args.search_image_size, "--epochs", args.search_epochs,
             "--batch-size", args.search_batch_size, "--order", args.order, "--seed", args.seed,
             "--frequent", 5, "--no-progress"] + margin
    seconds = ws.runner.run("recognition/search.py", flags, os.path.join(ws.logs, "search.log"), label="search")
    return os.path.join(out, "genotype.json"), seconds


def train(space, args, network, budget, extra, tag):
    """recognition/train.py of ``network`` at the comparison's size (cells, width, embedding 128)."""
    size = ["--layers", args.train_layers, "--init-channels", args.train_channels, "--emb-size", 128]
    return space.train(network, ex.loss_flags("arcface"), budget, extra=size + list(extra),
                       tag=f"seed {space.seed}: {tag}")


def result(method, models):
    """The row of one genotype: its size, and the mean ± std over its runs (one per seed)."""
    per_seed = [ex.saved_accuracies(m.log, m.prefix, m.epoch, ex.TARGETS) for m in models]
    return ex.seeded_row(method, models[-1], per_seed, mode="pocketnet")


def report(args, seeds, rows, searched, search_seconds, budget, seconds, command, runner):
    return "\n".join([
        "# A genotype searched on the synthetic set beside PocketNet's", "",
        f"Command: `{command}`  ", f"Date: {datetime.date.today().isoformat()}  ",
        f"Wall time: {seconds / 60:.1f} min on {os.cpu_count()} CPU cores", "",
        f"Synthetic set: {args.identities} identities x {args.images_per_identity} images; targets of "
        f"{args.pairs} pairs from {args.val_identities} held-out identities ("
        + (f"drawn from {args.target_images} images per identity and profile" if args.target_images
           else "two fresh images per pair") + ").", "",
        f"Search: {args.search_layers} cells of C={args.search_channels} at {args.search_image_size}x"
        f"{args.search_image_size}, {args.search_epochs} epochs, batch {args.search_batch_size} per half, "
        f"{args.order}-order architecture gradient, arcface head at s={ex.SCALE:g}, m={ex.MARGIN:g}; "
        f"{search_seconds / 60:.1f} min.", "",
        f"Genotype found: `{genotypes.describe(searched)}`", "",
        f"PocketNet's: `{genotypes.describe(genotypes.PUBLISHED['pocketnet'])}`", "",
        f"Both trained as {args.train_layers} cells of C={args.train_channels}, embedding 128, "
        + ex.recipe_text(budget) + f", once per seed ({', '.join(map(str, seeds))}). Accuracy-Flip in % of "
        "each saved checkpoint, from the verification round its training logged: the mean ± std over the "
        f"seeds of each run's 10-fold mean (chance 50); {ex.ABOVE} / {ex.BELOW}: the searched genotype above / "
        "below PocketNet's by more than the two rows' combined spread. FLOPs as PocketNet counts them.", "",
        ex.markdown_table(rows, ex.TARGETS),
        "Wall time per command:", "", "```", ex.format_timings(runner.timings), "```", ""])


def main(argv=None):
    args = parse_args(argv)
    command = shlex.join(["python", "-u", "bench/search_compare.py"] + list(sys.argv[1:] if argv is None else argv))
    if args.quick:
        apply_quick(args)
    seeds = ex.parse_seeds(args.seeds)
    start = time.perf_counter()
    runner = ex.CommandRunner(ROOT)
    ws = ex.Workspace(runner, args.out, seed=args.seed, frequent=5 if args.quick else 20)
    if os.path.exists(ws.out) and not os.path.isdir(ws.out):
        raise FaceKDError(f"--out {args.out} exists and is not a folder")
    search_out = os.path.join(ws.out, "search")
    for folder in (ws.data_dir, ws.models_root, ws.logs, search_out):
        shutil.rmtree(folder, ignore_errors=True)  # this bench's own outputs from an earlier run
    budget = ex.Budget(steps=args.steps, batch=args.batch_size, verbose=args.steps)
    print(f"search_compare: outputs in {runner.rel(ws.out)}/")
    ws.make_synthetic(args.identities, args.images_per_identity, args.val_identities, args.pairs,
                      target_images=args.target_images)
    genotype_file, search_seconds = search(ws, args, search_out)
    searched = genotypes.load(genotype_file)
    published, found = [], []
    for seed in seeds:
        space = ws.seed_space(seed)
        published.append(train(space, args, "pocketnets128", budget, [], "PocketNet's genotype"))
        found.append(train(space, args, "pocketnet", budget, ["--genotype", runner.rel(genotype_file)],
                           "the searched genotype"))
    rows = [result("PocketNet's genotype", published), result("searched here", found)]
    ex.mark_differences(rows[1], rows[0], ex.TARGETS)
    seconds = time.perf_counter() - start
    text = report(args, seeds, rows, searched, search_seconds, budget, seconds, command, runner)
    ex.write_results(ws.out, text, rows, f"{args.train_layers} cells of C={args.train_channels}, "
                     f"{budget.samples} training images each, {len(seeds)} seeds", runner)
    return 0


if __name__ == "__main__":
    run_cli(main)
