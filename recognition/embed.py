"""Embed aligned faces: the flip-summed, L2-normalised embeddings that verification scores.

    python recognition/embed.py --model ./models/y1-arcface-emore/model,1 --images ./faces --out feats.npy
    python recognition/embed.py --model ./deploy/y1/model.onnx --images faces.txt --out feats.npy

--images is a folder (every .jpg/.png under it, sorted) or a text file with one image path a line.
Writes feats.npy (float32, one unit-length row per image) and feats.txt (the image of each row).
Images are aligned RGB faces of the network's input size (112x112); others are resized as the
verification protocol does. An .onnx model runs in the onnxruntime environment ('make venv-ort').
"""
import argparse
import os

import numpy as np

from facekd.atomic import atomic_path, check_writable_dir
from facekd.data.outputs import check_output
from facekd.deploy.faces import image_list
from facekd.deploy.inference import embed_files, names_path
from facekd.deploy.models import OpenOptions, open_embedder
from facekd.deploy.ort_client import add_ort_argument
from facekd.embedder import parse_image_size
from facekd.errors import run_cli


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n", 2)[2])
    p.add_argument("--model", required=True, help="prefix,epoch of an MXNet checkpoint, or a .onnx model")
    p.add_argument("--images", required=True, help="folder of aligned faces, or a list file (one path a line)")
    p.add_argument("--out", required=True, help="features file to write (.npy); the names go beside it (.txt)")
    p.add_argument("--batch-size", type=int, default=64, help="images per forward (originals and flips)")
    p.add_argument("--image-size", default="112,112", help="network input height,width")
    p.add_argument("--cpu-contexts", type=int, default=1, help="MXNet CPU contexts when no GPU is visible")
    p.add_argument("--overwrite", action="store_true", help="replace existing --out files")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_ort_argument(p)
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    image_size = parse_image_size(args.image_size)
    names_file = names_path(args.out)
    for path in (args.out, names_file):
        check_output(path, args.overwrite, "--out")
    check_writable_dir(os.path.dirname(os.path.abspath(args.out)), "--out")
    names, paths = image_list(args.images)
    options = OpenOptions(args.batch_size, image_size, args.cpu_contexts, args.ort_python)
    with open_embedder(args.model, options) as embedder:
        with atomic_path(names_file) as names_tmp, atomic_path(args.out) as out_tmp:
            features = np.lib.format.open_memmap(out_tmp, mode="w+", dtype=np.float32,
                                                 shape=(len(paths), embedder.emb_size))
            embed_files(embedder, paths, features, progress=None if args.quiet else "embed")
            features.flush()
            del features
            with open(names_tmp, "w", encoding="utf-8") as f:
                f.write("".join(f"{name}\n" for name in names))
    print(f"{len(names)} faces embedded with {args.model}: {args.out} ({len(names)} x {embedder.emb_size} float32, "
          f"unit rows), names in {names_file}")
    return 0


if __name__ == "__main__":
    run_cli(main)
