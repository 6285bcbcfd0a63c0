"""Step 1 of the stepwise preparation: a training set -> image files + per-image class labels.

    python data_prepare/bin_get_images.py --data-dir ../datasets/faces_emore --out ../datasets/emore_work

writes OUT/images/<class>/<key>.<ext> (the record's bytes unchanged) and OUT/labels/index.tsv
(key, class id, image path per line). See docs/data_preparation.md.
"""
import argparse

from facekd.data import prepare
from facekd.errors import run_cli


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0], epilog=__doc__.split("\n", 2)[2],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", required=True, help="dataset folder with train.rec, train.idx, property")
    p.add_argument("--out", required=True, help="working folder to create (images/ and labels/)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace --out if it exists (only a folder this script wrote)")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    s = prepare.extract_images(args.data_dir, args.out, overwrite=args.overwrite)
    print(f"bin_get_images: {s.num_images} images of {s.num_classes} classes -> {s.path} "
          f"in {s.seconds:.1f} s ({s.num_images / max(s.seconds, 1e-9):.0f} img/s)")


if __name__ == "__main__":
    run_cli(main)
