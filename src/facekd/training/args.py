"""Command line of recognition/train.py: insightface's flags, defaults from the config tables."""
import argparse
import math
import os
import sys

from .. import config as tables
from ..config_file import find_tables
from ..errors import FaceKDError

# Flags the project adds; each maps onto the config key of the same meaning.
_OVERRIDES = {
    # flag dest      : (config key, type, help)
    "emb_size": ("emb_size", int, "embedding size of the network"),
    "net_act": ("net_act", str, "activation of the network (relu, prelu, ...)"),
    "loss_s": ("loss_s", float, "scale s of the margin logits"),
    "loss_m1": ("loss_m1", float, "multiplicative angular margin m1"),
    "loss_m2": ("loss_m2", float, "additive angular margin m2 (arcface)"),
    "loss_m3": ("loss_m3", float, "additive cosine margin m3 (cosface)"),
    "alpha": ("alpha", float, "distillation weight alpha (angular_distillation, margin_base_with_T)"),
    "Mmin": ("Mmin", float, "smallest margin (triplet and margin distillation)"),
    "Mmax": ("Mmax", float, "largest margin (triplet and margin distillation)"),
    "kd_lambda": ("kd_lambda", float, "template_kd weight lambda"),
    "sample_ratio": ("sample_ratio", float, "Partial FC: fraction r of the class centres each step trains, "
                     "every class of the batch plus random ones (1 = the full head)"),
    "images_per_identity": ("images_per_identity", int, "triplet bags: images taken per identity"),
    "triplet_bag_size": ("triplet_bag_size", int, "triplet bags: images per bag"),
    "triplet_alpha": ("triplet_alpha", float, "triplet selection margin alpha"),
    "data_color": ("data_color", float, "colour jitter strength (0 = off)"),
    "images_filter": ("data_images_filter", int, "drop identities with fewer images"),
    "genotype": ("pocket_genotype", str, "PocketNet cells: a genotype.json of recognition/search.py or a "
                 "published genotype (pocketnet)"),
    "init_channels": ("pocket_channels", int, "PocketNet cell width C of the first cells (even)"),
    "layers": ("pocket_cells", int, "PocketNet cell count (>= 3)"),
}


def _config_flag(argv):
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--config", default=None)
    known, _ = pre.parse_known_args(argv)
    return known.config


def _pre_parse(argv, defaults):
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--network", default=defaults.network)
    pre.add_argument("--dataset", default=defaults.dataset)
    pre.add_argument("--loss", default=defaults.loss)
    pre.add_argument("--data-dir", default=None)
    known, _ = pre.parse_known_args(argv)
    return known


def build_parser(cfg):
    d = cfg.defaults
    p = argparse.ArgumentParser(
        prog="train.py", description="Train face recognition networks, with margin losses or distillation.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    # insightface's flags
    p.add_argument("--dataset", default=d.dataset, help="dataset config table (emore, emore_soft, synthetic, ...)")
    p.add_argument("--network", default=d.network, help="network config table (y1, y2, r100, pocketnets128, ...)")
    p.add_argument("--loss", default=d.loss, help="loss config table (arcface, margin_distillation, ...)")
    p.add_argument("--models-root", default=d.models_root, help="root folder of the checkpoints")
    p.add_argument("--pretrained", default=d.pretrained, help="checkpoint prefix to start from")
    p.add_argument("--pretrained-epoch", type=int, default=d.pretrained_epoch, help="epoch of --pretrained")
    p.add_argument("--ckpt", type=int, default=d.ckpt,
                   help="0 never save; 1 save when highest; 2 always; 3 save when highest as epoch 1")
    p.add_argument("--verbose", type=int, default=d.verbose, help="verify and maybe save every this many steps")
    p.add_argument("--lr", type=float, default=d.lr, help="start learning rate")
    p.add_argument("--lr-steps", default=d.lr_steps, help="steps at which the lr is multiplied by 0.1")
    p.add_argument("--wd", type=float, default=d.wd, help="weight decay")
    p.add_argument("--mom", type=float, default=d.mom, help="momentum")
    p.add_argument("--frequent", type=int, default=d.frequent, help="speed log every this many batches")
    p.add_argument("--per-batch-size", type=int, default=d.per_batch_size, help="batch size per device")
    p.add_argument("--kvstore", default=d.kvstore, help="kvstore: device, local, dist_sync, dist_device_sync")
    p.add_argument("--T", type=float, default=cfg.get("T", d.T), help="distillation temperature")
    # project additions
    p.add_argument("--config", default=None, help="table file: a Python file defining the tables default, network, "
                   "dataset and loss, laid out as recognition/config.py (default: the config.py beside train.py, "
                   "else the package's tables)")
    p.add_argument("--data-dir", default=None, help="dataset folder (default: the table's dataset_path)")
    p.add_argument("--teacher", default=cfg.get("teacher", ""),
                   help="teacher checkpoint 'prefix,epoch' (for its fc7_weight class centres)")
    p.add_argument("--teacher-schedule", default=cfg.get("teacher_schedule", ""),
                   help="template_kd multi-step KD: 'prefix,e1|e2|...', epoch k embeds with the k-th teacher")
    p.add_argument("--max-steps", type=int, default=cfg.max_steps, help="stop after this many steps (0 = no limit)")
    p.add_argument("--end-epoch", type=int, default=d.end_epoch, help="stop after this many epochs")
    p.add_argument("--resume", action="store_true", help="continue from the run's latest checkpoint")
    p.add_argument("--cpu-contexts", type=int, default=1, help="CPU contexts when no GPU is visible")
    p.add_argument("--seed", type=int, default=None, help="random seed (data order, initialisation)")
    p.add_argument("--no-mirror", action="store_true", help="disable random horizontal mirroring")
    p.add_argument("--cutoff", action="store_true", help="random square cutoff augmentation")
    p.add_argument("--decode-threads", type=int, default=2, help="image decoding threads")
    p.add_argument("--verification-batch-size", type=int, default=0,
                   help="batch size of verification (default: per-batch-size)")
    for dest, (key, typ, text) in _OVERRIDES.items():
        p.add_argument("--" + dest.replace("_", "-"), dest=dest, type=typ, default=None,
                       help=f"{text} (default: config table, {cfg.get(key)})")
    return p


KVSTORES = ("local", "device", "nccl", "dist_sync", "dist_device_sync", "dist_async", "dist_device_async")
# what launch.py (ps-lite) sets for every process of a dist kvstore
PS_VARIABLES = ("DMLC_ROLE", "DMLC_PS_ROOT_URI", "DMLC_PS_ROOT_PORT", "DMLC_NUM_SERVER", "DMLC_NUM_WORKER")


def _finite(v):
    return v is not None and math.isfinite(v)


# (flag, config key, test, what the value must be): checked once, after the tables and flags merge
_RULES = (
    ("--lr", "lr", lambda v: _finite(v) and v > 0, "a finite number > 0, e.g. 0.1"),
    ("--wd", "wd", lambda v: _finite(v) and v >= 0, "a finite number >= 0, e.g. 0.0005"),
    ("--mom", "mom", lambda v: _finite(v) and 0 <= v < 1, "in [0, 1), e.g. 0.9"),
    ("--T", "T", lambda v: _finite(v) and v > 0, "a finite number > 0, e.g. 4"),
    ("--per-batch-size", "per_batch_size", lambda v: v >= 1, "an integer >= 1"),
    ("--frequent", "frequent", lambda v: v >= 1, "an integer >= 1 (log every N batches)"),
    ("--verbose", "verbose", lambda v: v >= 1, "an integer >= 1 (verify every N steps)"),
    ("--max-steps", "max_steps", lambda v: v >= 0, "an integer >= 0 (0 = no limit)"),
    ("--end-epoch", "end_epoch", lambda v: v >= 1, "an integer >= 1"),
    ("--ckpt", "ckpt", lambda v: v in (0, 1, 2, 3), "0, 1, 2 or 3"),
    ("--emb-size", "emb_size", lambda v: v >= 1, "an integer >= 1, e.g. 512 or 128"),
    ("--kvstore", "kvstore", lambda v: v in KVSTORES, "one of " + ", ".join(KVSTORES)),
    ("--loss-s", "loss_s", lambda v: v is None or (_finite(v) and v > 0), "a finite number > 0"),
    ("--alpha", "alpha", lambda v: v is None or _finite(v), "a finite number"),
    ("--kd-lambda", "kd_lambda", lambda v: v is None or _finite(v), "a finite number"),
    ("--sample-ratio", "sample_ratio", lambda v: _finite(v) and 0 < v <= 1,
     "a number in (0, 1], e.g. 0.1 (1 = every class centre, the full head)"),
    ("--genotype", "pocket_genotype", lambda v: v is None or _genotype_reference(v),
     "a genotype file written by recognition/search.py (its --out/genotype.json) or a published genotype: "
     "pocketnet"),
    ("--init-channels", "pocket_channels", lambda v: v is None or (v >= 2 and v % 2 == 0),
     "an even integer >= 2, e.g. 16"),
    ("--layers", "pocket_cells", lambda v: v is None or v >= 3, "an integer >= 3 (reduction cells at n//3, "
     "2n//3 and n-1)"),
)


def _genotype_reference(value):
    from ..symbols.genotypes import is_reference

    return is_reference(value)


_CELL_FLAGS = ("genotype", "init_channels", "layers")  # flags of the PocketNet cell networks only


def _check_cell_flags(args, cfg):
    given = [f"--{d.replace('_', '-')}" for d in _CELL_FLAGS if getattr(args, d, None) is not None]
    if given and cfg.get("net_output") != "pocket":
        raise FaceKDError(f"{', '.join(given)} set the cells of a PocketNet network; --network {cfg.network} "
                          "has none: use --network pocketnet (or pocketnets128, ...), or drop the flags")


def validate(args, cfg, env=None):
    """One FaceKDError naming the flag for the first setting no run can use."""
    _check_cell_flags(args, cfg)
    for flag, key, ok, what in _RULES:
        value = cfg.get(key)
        if not ok(value):
            raise FaceKDError(f"{flag} {value!r} is invalid: it must be {what}")
    if args.resume and args.pretrained:
        raise FaceKDError("--resume and --pretrained exclude each other: --resume continues this run from its "
                          "own checkpoint; --pretrained starts a new run from another one. Drop one of them")
    if args.decode_threads < 1:
        raise FaceKDError(f"--decode-threads {args.decode_threads} is invalid: it must be an integer >= 1")
    if args.verification_batch_size < 0:
        raise FaceKDError(f"--verification-batch-size {args.verification_batch_size} is invalid: "
                          "it must be >= 1, or 0 for --per-batch-size")
    if cfg.kvstore.startswith("dist"):
        env = os.environ if env is None else env
        missing = [name for name in PS_VARIABLES if not env.get(name)]
        if missing:
            raise FaceKDError(f"--kvstore {cfg.kvstore} runs over a parameter server, but {', '.join(missing)} "
                              "are not set; start the job with recognition/launch.py (docs/training.md, 'Several machines'), "
                              "or use --kvstore device on one machine")


def parse_args(argv=None, script_config=None):
    """(args, cfg): the parsed flags and the merged config they override.

    The tables come from ``--config FILE``, else from ``script_config`` (the config.py
    beside the running train.py) when it exists, else from the package; they are read
    afresh on every call (:func:`facekd.config_file.find_tables`) and ``cfg.config_file``
    names their file (train.py logs it once the flags are valid)."""
    run_tables = find_tables(_config_flag(argv), script_config)
    known = _pre_parse(argv, run_tables.default)
    cfg = tables.generate_config(known.network, known.dataset, known.loss, tables=run_tables,
                                 dataset_path=known.data_dir)
    cfg.config_file = run_tables.source
    args = build_parser(cfg).parse_args(argv)
    for dest, (key, _, _) in _OVERRIDES.items():
        value = getattr(args, dest)
        if value is not None:
            cfg[key] = value
    cfg.data_rand_mirror = cfg.data_rand_mirror and not args.no_mirror
    cfg.data_cutoff = cfg.data_cutoff or args.cutoff
    for key in ("lr", "wd", "mom", "per_batch_size", "frequent", "verbose", "ckpt", "kvstore", "T",
                "models_root", "max_steps", "teacher", "teacher_schedule", "end_epoch"):
        cfg[key] = getattr(args, key)
    cfg.lr_steps = args.lr_steps
    given = sys.argv[1:] if argv is None else argv
    cfg.teacher_flag = ("--teacher" if any(a == "--teacher" or a.startswith("--teacher=") for a in given)
                        else f"--teacher (the default of dataset table '{cfg.dataset}' in "
                             f"{os.path.basename(cfg.config_file)})")
    validate(args, cfg)
    return args, cfg
