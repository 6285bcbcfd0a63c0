"""Generate the synthetic face dataset: train.rec/.idx/property and synth_easy/pose/age.bin.

    python data_prepare/make_synthetic.py --out datasets/synthetic --identities 200 \
        --images-per-identity 20 --val-identities 100 --pairs 600 --seed 0 --montage synthetic.png
"""
import argparse
import os

from facekd.data.synthetic import SyntheticParams, generate_synthetic, images_per_second
from facekd.errors import run_cli

DEFAULTS = SyntheticParams()


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="./datasets/synthetic", help="dataset folder to write (default %(default)s)")
    p.add_argument("--identities", type=int, default=DEFAULTS.identities, help="training identities (classes)")
    p.add_argument("--images-per-identity", type=int, default=DEFAULTS.images_per_identity)
    p.add_argument("--val-identities", type=int, default=DEFAULTS.val_identities,
                   help="held-out identities of the verification targets")
    p.add_argument("--pairs", type=int, default=DEFAULTS.pairs, help="pairs per target, half same (even)")
    p.add_argument("--similar-fraction", type=float, default=DEFAULTS.similar_fraction,
                   help="share of different pairs drawn among look-alikes")
    p.add_argument("--target-images", type=int, default=DEFAULTS.target_images, metavar="K",
                   help="images per held-out identity and nuisance profile that the pairs draw from (images are "
                        "reused across pairs, as in LFW); 0 (default) = two fresh images per pair")
    p.add_argument("--seed", type=int, default=DEFAULTS.seed)
    p.add_argument("--montage", default=None, help="also write a PNG grid of a few identities here")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="rendering processes")
    p.add_argument("--overwrite", action="store_true", help="replace the dataset files in an existing --out "
                   "(only a dataset this script wrote)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    params = SyntheticParams(identities=args.identities, images_per_identity=args.images_per_identity,
                             val_identities=args.val_identities, pairs=args.pairs, seed=args.seed,
                             similar_fraction=args.similar_fraction, target_images=args.target_images)
    s = generate_synthetic(args.out, params, workers=args.workers, overwrite=args.overwrite,
                           montage_path=args.montage, progress=not args.quiet)
    print(f"wrote {s.folder}: {s.num_images} images of {s.num_identities} identities; "
          f"{', '.join(s.targets)} with {s.pairs} pairs each ({' / '.join(map(str, s.target_images))} distinct "
          f"images) from {s.val_identities} held-out identities; "
          f"{s.rendered} images in {s.seconds:.1f} s ({images_per_second(s):.0f} img/s)"
          + (f"; montage {args.montage}" if args.montage else ""))
    return 0


if __name__ == "__main__":
    run_cli(main)
