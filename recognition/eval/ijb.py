"""IJB-B / IJB-C evaluation of a checkpoint: 1:1 TAR @ FAR and, when the lists are present, 1:N.

    python ijb.py --data-dir ../datasets/IJB_release/IJBC --target IJBC \
        --model ./models/y1-arcface-emore/model,1 --batch-size 64 [--roc ijbc_roc.png]
"""
import argparse

from facekd.errors import run_cli
from facekd.evaluation.ijb import evaluate_ijb, format_result, read_ijb_meta
from facekd.evaluation.plots import check_png_output, plot_roc
from facekd.checkpoints import parse_model_list
from facekd.embedder import Embedder
from facekd.training.contexts import get_contexts


def parse_args(argv=None):
    p = argparse.ArgumentParser(description="IJB-B/C template-based verification and identification")
    p.add_argument("--data-dir", required=True, help="folder with meta/ and loose_crop/")
    p.add_argument("--target", default="IJBC", help="IJBB or IJBC (prefix of the meta file names)")
    p.add_argument("--model", required=True, action="append", help="prefix,epoch or prefix,1|2|3")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--roc", default="", help="write the ROC curves to this PNG")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --roc file")
    p.add_argument("--cpu-contexts", type=int, default=1, help="CPU contexts when no GPU is visible")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    models = [m for text in args.model for m in parse_model_list(text)]
    if args.roc:
        check_png_output(args.roc, "--roc", args.overwrite)
    meta = read_ijb_meta(args.data_dir, args.target)
    contexts = get_contexts(args.cpu_contexts)
    curves = []
    for prefix, epoch in models:
        embedder = Embedder.from_checkpoint(prefix, epoch, contexts, args.batch_size)
        result = evaluate_ijb(embedder, args.data_dir, args.target, meta=meta)
        label = f"{prefix},{epoch}"
        for line in format_result(label, args.target, result):
            print(line)
        curves.append((f"{label} {args.target}", result.fpr, result.tpr))
    if args.roc:
        plot_roc(curves, args.roc, title=f"{args.target} 1:1 ROC")
        print(f"ROC written to {args.roc}")
    return 0


if __name__ == "__main__":
    run_cli(main)
