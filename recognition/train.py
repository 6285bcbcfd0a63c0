"""Train a face recognition network (insightface's recognition/train.py command line).

    python3 -u recognition/train.py --network y1 --loss margin_distillation --dataset emore_soft

Under ``--kvstore dist_sync`` MXNet's launcher runs this same command for the scheduler
and the servers (``DMLC_ROLE``): they serve their role, watched for lost machines.

The tables come from ``--config FILE``, else from the ``config.py`` beside this script
(edit it as in insightface), and the run logs into ``<run folder>/train.log`` too.
"""
import os

from facekd.errors import run_cli
from facekd.training.cluster_watch import watched

CONFIG = os.path.join(os.path.dirname(os.path.abspath(__file__)), "config.py")  # the tables users edit


def main(argv=None):
    from facekd.training.trainer import main as train  # imports MXNet: after the role is known

    return train(argv, script_config=CONFIG)


if __name__ == "__main__":
    run_cli(lambda argv: watched(main, argv))
