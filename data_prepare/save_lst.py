"""Step 3 of the stepwise preparation: image index + teacher vectors -> a soft-label .lst.

    python data_prepare/save_lst.py --images ../datasets/emore_work/images \\
        --labels ../datasets/emore_work/labels --out ../datasets/faces_emore_soft/train.lst \\
        --targets ../datasets/faces_emore
    python data_prepare/face2rec2.py ../datasets/faces_emore_soft

Each line: 1 <TAB> absolute image path <TAB> d teacher floats then the class id, in record-key
order (grouped by class). See docs/data_preparation.md.
"""
import argparse

from facekd.data import prepare
from facekd.errors import run_cli


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0], epilog=__doc__.split("\n", 2)[2],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", required=True, help="images folder written by bin_get_images.py")
    p.add_argument("--labels", required=True, help="labels folder (index.tsv, embeddings.npy)")
    p.add_argument("--out", required=True, help="the list to write, e.g. OUT/train.lst")
    p.add_argument("--targets", help="copy this folder's *.bin verification targets beside the list")
    p.add_argument("--overwrite", action="store_true", help="replace an existing list and target files")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    s = prepare.write_soft_lst(args.images, args.labels, args.out, overwrite=args.overwrite,
                               targets_dir=args.targets)
    print(f"save_lst: {s.num_images} images -> {s.path} in {s.seconds:.1f} s "
          f"({s.num_images / max(s.seconds, 1e-9):.0f} img/s)")


if __name__ == "__main__":
    run_cli(main)
