"""IJB-B / IJB-C evaluation of a checkpoint: 1:1 TAR @ FAR and, when the lists are present, 1:N.

    python ijb.py --data-dir ../datasets/IJB_release/IJBC --target IJBC \
        --model ./models/y1-arcface-emore/model,1 --batch-size 64 [--roc ijbc_roc.png]

The defaults are insightface's (ijb_11.py, ijb_1n.py): flip test, norm score and detector
score on; ``--no-use-flip-test`` etc. turn one off. ``--protocol-1n ijb_evals`` scores 1:N
per gallery, open set, as insightface's ijb_evals.py.
"""
import argparse

from facekd.errors import run_cli
from facekd.evaluation.ijb import FeatureOptions, evaluate_ijb, format_result, read_ijb_meta
from facekd.evaluation.ijb_search import DEFAULT_PROTOCOL_1N, PROTOCOLS_1N
from facekd.evaluation.plots import check_png_output, plot_roc, roc_labels
from facekd.checkpoints import parse_model_list
from facekd.embedder import Embedder
from facekd.training.contexts import get_contexts

OPTION_HELP = {
    "use_flip_test": "image feature = embedding of the face + embedding of its mirror image",
    "use_norm_score": "keep each image feature's norm (off: normalise it before pooling)",
    "use_detector_score": "weight each image feature by its detector score",
}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description="IJB-B/C template-based verification and identification")
    p.add_argument("--data-dir", required=True, help="folder with meta/ and loose_crop/")
    p.add_argument("--target", default="IJBC", help="IJBB or IJBC (prefix of the meta file names)")
    p.add_argument("--model", required=True, action="append", help="prefix,epoch or prefix,1|2|3")
    p.add_argument("--batch-size", type=int, default=64)
    for name, text in OPTION_HELP.items():
        p.add_argument("--" + name.replace("_", "-"), action=argparse.BooleanOptionalAction,
                       default=getattr(FeatureOptions(), name), help=f"{text} (insightface's {name})")
    p.add_argument("--protocol-1n", default=DEFAULT_PROTOCOL_1N,
                   help=f"1:N protocol: {', '.join(PROTOCOLS_1N.names())} (default %(default)s)")
    p.add_argument("--roc", default="", help="write the ROC curves to this PNG")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --roc file")
    p.add_argument("--cpu-contexts", type=int, default=1, help="CPU contexts when no GPU is visible")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    models = [m for text in args.model for m in parse_model_list(text)]
    PROTOCOLS_1N.get(args.protocol_1n)
    options = FeatureOptions(**{name: getattr(args, name) for name in OPTION_HELP})
    if args.roc:
        check_png_output(args.roc, "--roc", args.overwrite)
    meta = read_ijb_meta(args.data_dir, args.target)
    contexts = get_contexts(args.cpu_contexts)
    curves = []
    for prefix, epoch in models:
        embedder = Embedder.from_checkpoint(prefix, epoch, contexts, args.batch_size)
        result = evaluate_ijb(embedder, args.data_dir, args.target, meta=meta, options=options,
                              protocol_1n=args.protocol_1n)
        label = f"{prefix},{epoch}"
        for line in format_result(label, args.target, result):
            print(line)
        curves.append((label, result.fpr, result.tpr))
    if args.roc:
        labels = roc_labels([(label, args.target) for label, _, _ in curves])
        plot_roc([(name, fpr, tpr) for name, (_, fpr, tpr) in zip(labels, curves)], args.roc,
                 title=f"{args.target} 1:1 ROC")
        print(f"ROC written to {args.roc}")
    return 0


if __name__ == "__main__":
    run_cli(main)
