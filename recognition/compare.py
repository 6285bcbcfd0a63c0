"""Compare two aligned faces: the cosine of their embeddings and the verdict, same or different.

    python recognition/compare.py --model ./models/y1-arcface-emore/model,1 a.jpg b.jpg --threshold 0.31
    python recognition/compare.py --model ./deploy/y1/model.onnx a.jpg b.jpg

The embeddings are verification's (image + flip, summed, normalised). "same" when the cosine
exceeds --threshold; verification.py prints the threshold it chose on a target as a cosine.
Exit status 0 for same, 1 for different, 2 for an error (as cmp and diff).
"""
import argparse
import os

from facekd.deploy.faces import read_faces
from facekd.deploy.inference import DEFAULT_THRESHOLD, check_threshold, cosine, face_embeddings, verdict
from facekd.deploy.models import OpenOptions, open_embedder
from facekd.deploy.ort_client import add_ort_argument
from facekd.embedder import parse_image_size
from facekd.errors import FaceKDError, run_cli

EXIT_STATUS = {"same": 0, "different": 1}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n", 2)[2])
    p.add_argument("images", nargs=2, metavar="IMAGE", help="two aligned face images")
    p.add_argument("--model", required=True, help="prefix,epoch of an MXNet checkpoint, or a .onnx model")
    p.add_argument("--threshold", type=float, default=None,
                   help=f"cosine above which the faces are the same (default {DEFAULT_THRESHOLD}; "
                        "take the one verification.py prints for your model)")
    p.add_argument("--image-size", default="112,112", help="network input height,width")
    p.add_argument("--cpu-contexts", type=int, default=1, help="MXNet CPU contexts when no GPU is visible")
    add_ort_argument(p)
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    given = args.threshold is not None
    threshold = check_threshold(args.threshold if given else DEFAULT_THRESHOLD)
    for path in args.images:
        if not os.path.isfile(path):
            raise FaceKDError(f"{path}: image not found")
    options = OpenOptions(4, parse_image_size(args.image_size), args.cpu_contexts, args.ort_python)
    with open_embedder(args.model, options) as embedder:
        a, b = face_embeddings(embedder, read_faces(args.images, embedder.image_size))
    cos = cosine(a, b)
    answer = verdict(cos, threshold)
    print(f"cosine {cos:.4f}: {answer} (threshold {threshold:g}{'' if given else ', the default'})")
    return EXIT_STATUS[answer]


if __name__ == "__main__":
    run_cli(main)
