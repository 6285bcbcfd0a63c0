"""MegaFace-style identification of a checkpoint: probe identities vs one gallery image + distractors.

    python identification.py --model ./models/y1-arcface-emore/model,1 --probe facescrub_aligned \
        --distractors megaface_aligned --batch-size 64 [--feature-out feats --algo y1]

``--model`` may be repeated: each network's normalised flip-sum is concatenated and the
result normalised again (insightface's gen_megaface.py with several models).
"""
import argparse
import os

from facekd.errors import FaceKDError, run_cli
from facekd.evaluation.identification import MEGAFACE_FAR, check_algo, check_feature_out, format_rows, \
    identify_folders
from facekd.checkpoints import checkpoint_paths, parse_model_arg
from facekd.embedder import Embedder, parse_image_size
from facekd.training.contexts import get_contexts


def parse_args(argv=None):
    p = argparse.ArgumentParser(description="rank-1 and TAR@FAR=1e-6 as the distractor set grows")
    p.add_argument("--model", required=True, action="append",
                   help="prefix,epoch of the checkpoint (repeat to concatenate several networks)")
    p.add_argument("--probe", required=True, help="folder of aligned probe images, <identity>/<image>")
    p.add_argument("--distractors", required=True, help="folder of aligned distractor images")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--sizes", default="", help="distractor counts, e.g. 10,100,1000 (default: powers of ten)")
    p.add_argument("--far", type=float, default=MEGAFACE_FAR)
    p.add_argument("--image-size", default="112,112", help="network input height,width")
    p.add_argument("--feature-out", default="",
                   help="also write the MegaFace devkit's feature files into this new folder")
    p.add_argument("--overwrite", action="store_true",
                   help="replace a --feature-out folder written earlier by this command")
    p.add_argument("--algo", default="facekd", help="algorithm name in the feature file names")
    p.add_argument("--cpu-contexts", type=int, default=1, help="CPU contexts when no GPU is visible")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    try:
        sizes = [int(v) for v in args.sizes.split(",") if v.strip()] or None
    except ValueError:
        raise FaceKDError(f"--sizes {args.sizes!r}: expected comma-separated integers") from None
    image_size = parse_image_size(args.image_size)
    models = [parse_model_arg(text) for text in args.model]
    if args.feature_out:  # before any model is loaded or image decoded
        check_algo(args.algo)
        check_feature_out(args.feature_out, args.overwrite, args.probe, args.distractors)
    for prefix, epoch in models:
        for path in checkpoint_paths(prefix, epoch):
            if not os.path.isfile(path):
                raise FaceKDError(f"--model: checkpoint file {path} not found")
    contexts = get_contexts(args.cpu_contexts)
    embedders = [Embedder.from_checkpoint(prefix, epoch, contexts, args.batch_size, image_size)
                 for prefix, epoch in models]
    rows = identify_folders(embedders, args.probe, args.distractors, sizes, args.far, args.feature_out,
                            args.algo, args.overwrite)
    label = "+".join(f"{prefix},{epoch}" for prefix, epoch in models)
    for line in format_rows(label, rows):
        print(line)
    if args.feature_out:
        print(f"devkit features written to {args.feature_out} (probe/, distractors/)")
    return 0


if __name__ == "__main__":
    run_cli(main)
