"""MegaFace-style identification of a checkpoint: probe identities vs one gallery image + distractors.

    python identification.py --model ./models/y1-arcface-emore/model,1 --probe facescrub_aligned \
        --distractors megaface_aligned --batch-size 64 [--feature-out feats --algo y1]
"""
import argparse

from facekd.errors import FaceKDError, run_cli
from facekd.evaluation.identification import MEGAFACE_FAR, format_rows, identify_folders
from facekd.checkpoints import parse_model_arg
from facekd.embedder import Embedder, parse_image_size
from facekd.training.contexts import get_contexts


def parse_args(argv=None):
    p = argparse.ArgumentParser(description="rank-1 and TAR@FAR=1e-6 as the distractor set grows")
    p.add_argument("--model", required=True, help="prefix,epoch of the checkpoint")
    p.add_argument("--probe", required=True, help="folder of aligned probe images, <identity>/<image>")
    p.add_argument("--distractors", required=True, help="folder of aligned distractor images")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--sizes", default="", help="distractor counts, e.g. 10,100,1000 (default: powers of ten)")
    p.add_argument("--far", type=float, default=MEGAFACE_FAR)
    p.add_argument("--image-size", default="112,112", help="network input height,width")
    p.add_argument("--feature-out", default="", help="also write MegaFace devkit feature files here")
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
    prefix, epoch = parse_model_arg(args.model)
    embedder = Embedder.from_checkpoint(prefix, epoch, get_contexts(args.cpu_contexts), args.batch_size,
                                        image_size)
    rows = identify_folders(embedder, args.probe, args.distractors, sizes, args.far, args.feature_out,
                            args.algo)
    for line in format_rows(args.model, rows):
        print(line)
    return 0


if __name__ == "__main__":
    run_cli(main)
