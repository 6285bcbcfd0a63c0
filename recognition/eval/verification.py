"""Pair verification of checkpoints on .bin targets (insightface's verification.py command line).

    python verification.py --data-dir ../datasets/faces_emore --model ./models/y1-arcface-emore/model,1 \
        --target lfw,cfp_fp,agedb_30 --batch-size 64

Images repeated across pairs (identical bytes, as in LFW) are embedded once, with their flip; the
img/s column counts the images actually embedded.
"""
import argparse

from facekd.errors import FaceKDError, run_cli
from facekd.evaluation.plots import check_png_output, plot_roc, roc_labels
from facekd.evaluation.verification import verify_models
from facekd.checkpoints import parse_model_list
from facekd.embedder import parse_image_size
from facekd.training.contexts import get_contexts


def parse_args(argv=None):
    p = argparse.ArgumentParser(description="10-fold pair verification (Accuracy-Flip) on .bin targets")
    p.add_argument("--data-dir", required=True, help="folder holding <target>.bin files")
    p.add_argument("--model", required=True, action="append",
                   help="prefix,epoch or prefix,1|2|3 (repeat the flag for several prefixes)")
    p.add_argument("--target", default="lfw,cfp_fp,agedb_30", help="comma-separated target names")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--nfolds", type=int, default=10)
    p.add_argument("--image-size", default="112,112", help="network input height,width")
    p.add_argument("--roc", default="", help="write the ROC curves of every model and target to this PNG")
    p.add_argument("--overwrite", action="store_true", help="replace the --roc file if it exists")
    p.add_argument("--cpu-contexts", type=int, default=1, help="CPU contexts when no GPU is visible")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    models = [m for text in args.model for m in parse_model_list(text)]
    targets = [t.strip() for t in args.target.split(",") if t.strip()]
    if not targets:
        raise FaceKDError("--target: no target names given")
    image_size = parse_image_size(args.image_size)
    if args.roc:  # checked before any target is decoded or model bound
        check_png_output(args.roc, "--roc", overwrite=args.overwrite)
    contexts = get_contexts(args.cpu_contexts)
    rows = verify_models(models, args.data_dir, targets, args.batch_size, contexts, args.nfolds, image_size)
    if args.roc:
        labels = roc_labels([(model, target) for model, target, _ in rows])
        plot_roc([(label, r.fpr, r.tpr) for label, (_, _, r) in zip(labels, rows)], args.roc,
                 title="verification ROC")
        print(f"ROC written to {args.roc}")
    return 0


if __name__ == "__main__":
    run_cli(main)
