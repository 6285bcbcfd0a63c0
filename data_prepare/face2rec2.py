"""Pack every .lst in a folder into <name>.rec/.idx (+ property for train), insightface layout.

    python data_prepare/face2rec2.py DIR [--num-thread N] [--quality 95] [--encoding .jpg] [--overwrite]
"""
import argparse

from facekd.data.packing import find_lists, pack_list
from facekd.errors import run_cli


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", help="folder holding the .lst files (or one .lst file)")
    parser.add_argument("--num-thread", type=int, default=1, help="worker processes reading/aligning/encoding")
    parser.add_argument("--quality", type=int, default=95, help="JPEG quality of re-encoded (warped) images")
    parser.add_argument("--encoding", default=".jpg", help="encoding of re-encoded images: .jpg or .png")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace existing .rec/.idx files (only ones this script wrote)")
    args = parser.parse_args(argv)
    for lst_path in find_lists(args.root):
        print(pack_list(lst_path, num_workers=args.num_thread, quality=args.quality,
                        encoding=args.encoding, overwrite=args.overwrite))


if __name__ == "__main__":
    run_cli(main)
