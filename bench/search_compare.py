"""Search PocketNet cells on the synthetic set and compare the genotype found with PocketNet's.

Generates the synthetic dataset, runs recognition/search.py on it (DARTS, the architecture on one
half of each identity's images, the weights on the other), then trains the genotype found
(``--network pocketnet --genotype``) and PocketNet's published genotype (``--network pocketnets128``)
at the same size (--train-layers cells of width --train-channels) with the same loss and budget, and
tabulates parameters, FLOPs and the verification accuracy of each saved checkpoint on the synthetic
targets. Writes ``results.md`` and ``results.png`` in --out.

    python -u bench/search_compare.py                 # about 50 min on 2 CPU cores
    python -u bench/search_compare.py --quick         # every stage on tiny sizes (about 4 min)
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
    ex.add_data_arguments(p, pairs=600)
    p.set_defaults(identities=100)
    p.add_argument("--search-layers", type=int, default=5, help="cells of the supernet")
    p.add_argument("--search-channels", type=int, default=8, help="width of the supernet's first cells")
    p.add_argument("--search-image-size", type=int, default=64, help="faces shrunk to this size for the search")
    p.add_argument("--search-epochs", type=int, default=6)
    p.add_argument("--search-batch-size", type=int, default=32)
    p.add_argument("--order", choices=("first", "second"), default="first", help="architecture gradient")
    p.add_argument("--train-layers", type=int, default=9, help="cells of both trained networks")
    p.add_argument("--train-channels", type=int, default=16, help="width of both trained networks")
    p.add_argument("--steps", type=int, default=300, help="training steps of each network")
    p.add_argument("--batch-size", type=int, default=32, help="images per training step")
    p.add_argument("--quick", action="store_true", help="tiny sizes: checks that every stage runs")
    return p.parse_args(argv)


def apply_quick(args):
    ex.apply_quick_data(args)
    args.search_layers, args.search_channels, args.search_image_size = 3, 4, 56
    args.search_epochs, args.search_batch_size = 2, 16
    args.train_layers, args.train_channels = 4, 8
    args.steps, args.batch_size = 20, 16


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


def train(ws, args, network, budget, extra, tag):
    """recognition/train.py of ``network`` at the comparison's size (cells, width, embedding 128)."""
    size = ["--layers", args.train_layers, "--init-channels", args.train_channels, "--emb-size", 128]
    return ws.train(network, ex.loss_flags("arcface"), budget, extra=size + list(extra), tag=tag)


def result(method, model):
    params, flops = ex.network_size(model.prefix, mode="pocketnet")
    accuracy = ex.saved_accuracies(model.log, model.prefix, model.epoch, ex.TARGETS)
    return ex.ResultRow(method, model.network, model.loss, params, flops, accuracy)


def report(args, rows, searched, search_seconds, budget, seconds, command, runner):
    return "\n".join([
        "# A genotype searched on the synthetic set beside PocketNet's", "",
        f"Command: `{command}`  ", f"Date: {datetime.date.today().isoformat()}  ",
        f"Wall time: {seconds / 60:.1f} min on {os.cpu_count()} CPU cores", "",
        f"Synthetic set: {args.identities} identities x {args.images_per_identity} images; targets of "
        f"{args.pairs} pairs from {args.val_identities} held-out identities.", "",
        f"Search: {args.search_layers} cells of C={args.search_channels} at {args.search_image_size}x"
        f"{args.search_image_size}, {args.search_epochs} epochs, batch {args.search_batch_size} per half, "
        f"{args.order}-order architecture gradient, arcface head at s={ex.SCALE:g}, m={ex.MARGIN:g}; "
        f"{search_seconds / 60:.1f} min.", "",
        f"Genotype found: `{genotypes.describe(searched)}`", "",
        f"PocketNet's: `{genotypes.describe(genotypes.PUBLISHED['pocketnet'])}`", "",
        f"Both trained as {args.train_layers} cells of C={args.train_channels}, embedding 128, "
        + ex.recipe_text(budget) + ". Accuracy-Flip in % (10 folds, mean ± std; chance 50) of each saved "
        "checkpoint, from the verification round its training logged; FLOPs as PocketNet counts them.", "",
        ex.markdown_table(rows, ex.TARGETS),
        "Wall time per command:", "", "```", ex.format_timings(runner.timings), "```", ""])


def main(argv=None):
    args = parse_args(argv)
    command = shlex.join(["python", "-u", "bench/search_compare.py"] + list(sys.argv[1:] if argv is None else argv))
    if args.quick:
        apply_quick(args)
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
    ws.make_synthetic(args.identities, args.images_per_identity, args.val_identities, args.pairs)
    genotype_file, search_seconds = search(ws, args, search_out)
    searched = genotypes.load(genotype_file)
    rows = [result("PocketNet's genotype", train(ws, args, "pocketnets128", budget, [], "train PocketNet's genotype")),
            result("searched here", train(ws, args, "pocketnet", budget, ["--genotype", runner.rel(genotype_file)],
                                          "train the searched genotype"))]
    seconds = time.perf_counter() - start
    text = report(args, rows, searched, search_seconds, budget, seconds, command, runner)
    ex.write_results(ws.out, text, rows, f"{args.train_layers} cells of C={args.train_channels}, "
                     f"{budget.samples} training images each", runner)
    return 0


if __name__ == "__main__":
    run_cli(main)
