"""Training curves (loss, acc, speed, verification accuracy) of a training log, as a PNG.

    python plot_training.py train.log curves.png
"""
import argparse

from facekd.errors import run_cli
from facekd.evaluation.plots import check_png_output, plot_training_curves, read_training_log


def main(argv=None):
    p = argparse.ArgumentParser(description="plot a training log")
    p.add_argument("log", help="training log (Speedometer and [target][step]Accuracy-Flip lines)")
    p.add_argument("png", help="output PNG")
    p.add_argument("--overwrite", action="store_true", help="replace an existing PNG")
    args = p.parse_args(argv)
    check_png_output(args.png, "png", args.overwrite)
    plot_training_curves(read_training_log(args.log), args.png, title=args.log)
    print(f"written {args.png}")
    return 0


if __name__ == "__main__":
    run_cli(main)
