"""Start a dist_sync training job: scheduler, servers and workers (MXNet's tools/launch.py conventions).

    # every process on this machine
    python3 recognition/launch.py -n 2 -s 1 --launcher local \
        python3 -u recognition/train.py --network y1 --loss arcface --dataset emore --kvstore dist_sync

    # servers and workers over ssh on the hosts of a file, the scheduler here
    python3 recognition/launch.py -n 4 -s 2 -H hosts --launcher ssh \
        python3 -u recognition/train.py --network y1 --loss margin_distillation --dataset emore_soft --kvstore dist_sync
"""
from facekd.errors import run_cli
from facekd.training.launcher import main

if __name__ == "__main__":
    run_cli(main)
