"""Train a face recognition network (insightface's recognition/train.py command line).

    python3 -u recognition/train.py --network y1 --loss margin_distillation --dataset emore_soft
"""
from facekd.errors import run_cli
from facekd.training.trainer import main

if __name__ == "__main__":
    run_cli(main)
