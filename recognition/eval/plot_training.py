"""Training curves (loss, acc, speed, verification accuracy) of a training log, as a PNG.

    python plot_training.py models/y1-arcface-emore/train.log curves.png

The log is the ``train.log`` train.py writes beside its checkpoints (or a saved stderr).
A series that stays constant over the run (``acc`` = 0 for soft losses) is named in the
title instead of drawn.
"""
import argparse
import os

from facekd.errors import run_cli
from facekd.evaluation.plots import check_png_output, plot_training_curves, read_training_log


def main(argv=None):
    p = argparse.ArgumentParser(description="plot a training log")
    p.add_argument("log", help="training log: the run folder's train.log, or a saved stderr (speed lines and "
                   "[target][step]Accuracy-Flip lines)")
    p.add_argument("png", help="output PNG")
    p.add_argument("--overwrite", action="store_true", help="replace an existing PNG")
    args = p.parse_args(argv)
    check_png_output(args.png, "png", args.overwrite)
    title = os.path.join(*os.path.abspath(args.log).split(os.sep)[-2:])  # run folder/train.log
    plot_training_curves(read_training_log(args.log), args.png, title=title)
    print(f"written {args.png}")
    return 0


if __name__ == "__main__":
    run_cli(main)
