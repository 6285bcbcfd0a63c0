"""Train a face recognition network (insightface's recognition/train.py command line).

    python3 -u recognition/train.py --network y1 --loss margin_distillation --dataset emore_soft

Under ``--kvstore dist_sync`` MXNet's launcher runs this same command for the scheduler
and the servers (``DMLC_ROLE``): they serve their role, watched for lost machines.
"""
from facekd.errors import run_cli
from facekd.training.cluster_watch import watched


def main(argv=None):
    from facekd.training.trainer import main as train  # imports MXNet: after the role is known

    return train(argv)


if __name__ == "__main__":
    run_cli(lambda argv: watched(main, argv))
