"""Command line of recognition/search.py: PocketNet's search settings as defaults, validated once.

:func:`parse_args` reads the flags and checks each against one table of rules;
:func:`resolve` adds what the dataset decides (identities, image size) and the loss
table's margins, and returns the run's read-only settings (``training.settings.Settings``),
which the supernet, its head and the loop read.
"""
import argparse
import copy
import math

from .. import config as tables
from ..errors import FaceKDError
from ..training.settings import Settings
from .architect import ORDERS

# PocketNet's search (DARTS on CASIA-WebFace)
DEFAULTS = dict(layers=8, init_channels=16, nodes=4, stem_multiplier=3, epochs=50, batch_size=128,
                w_lr=0.1, w_lr_min=0.004, w_momentum=0.9, w_wd=3e-4, w_grad_clip=5.0,
                alpha_lr=12e-4, alpha_wd=1e-3, emb_size=128, loss="arcface", order="second")
ALPHA_BETAS = (0.5, 0.999)  # DARTS' and PocketNet's Adam betas for the architecture


def hard_label_heads():
    """Loss heads the search can use: class labels only, no teacher."""
    from .. import losses

    return [n for n in losses.LOSSES.names()
            if (lambda s: s.label == "hard" and s.iterator == "face" and not s.teacher_centres
                and not s.online_teacher and not s.needs_teacher_dim)(losses.get_loss(n))]


def build_parser():
    d = DEFAULTS
    p = argparse.ArgumentParser(
        prog="search.py", description="Differentiable architecture search (DARTS) of PocketNet cells on a "
        "RecordIO face set; writes genotype.json for train.py --network pocketnet --genotype.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--data-dir", required=True, help="training set folder (train.rec/.idx/property, class labels)")
    p.add_argument("--out", required=True, help="output folder: genotype-NNNN.json, genotype.json, alphas PNGs, "
                   "the resumable state")
    p.add_argument("--layers", type=int, default=d["layers"], help="cells of the supernet")
    p.add_argument("--init-channels", type=int, default=d["init_channels"], help="width C of the first cells")
    p.add_argument("--nodes", type=int, default=d["nodes"], help="intermediate nodes per cell")
    p.add_argument("--stem-multiplier", type=int, default=d["stem_multiplier"], help="stem width = this x C")
    p.add_argument("--epochs", type=int, default=d["epochs"], help="search epochs")
    p.add_argument("--batch-size", type=int, default=d["batch_size"],
                   help="images per step and half, split over the devices")
    p.add_argument("--image-size", type=int, default=0,
                   help="search on faces shrunk to this size inside the graph (0: the dataset's, 112)")
    p.add_argument("--order", choices=ORDERS, default=d["order"],
                   help="architecture gradient: first order, or second order (unrolled, DARTS)")
    p.add_argument("--w-lr", type=float, default=d["w_lr"], help="weights: SGD lr at the first epoch")
    p.add_argument("--w-lr-min", type=float, default=d["w_lr_min"], help="weights: lr reached by cosine annealing")
    p.add_argument("--w-momentum", type=float, default=d["w_momentum"], help="weights: SGD momentum")
    p.add_argument("--w-wd", type=float, default=d["w_wd"], help="weights: weight decay")
    p.add_argument("--w-grad-clip", type=float, default=d["w_grad_clip"],
                   help="weights: clip the gradient to this global L2 norm (0: no clipping)")
    p.add_argument("--alpha-lr", type=float, default=d["alpha_lr"], help="architecture: Adam lr")
    p.add_argument("--alpha-wd", type=float, default=d["alpha_wd"], help="architecture: Adam weight decay")
    p.add_argument("--emb-size", type=int, default=d["emb_size"], help="embedding size of the supernet")
    p.add_argument("--loss", default=d["loss"], help="margin-softmax head (a hard-label loss of train.py)")
    for flag, text in (("--loss-s", "scale s"), ("--loss-m1", "margin m1"), ("--loss-m2", "margin m2 (arcface)"),
                       ("--loss-m3", "margin m3 (cosface)")):
        p.add_argument(flag, type=float, default=None, help=f"head {text} (default: the loss table's)")
    p.add_argument("--cpu-contexts", type=int, default=1, help="CPU contexts when no GPU is visible")
    p.add_argument("--seed", type=int, default=0, help="random seed: the halves, data order, initialisation")
    p.add_argument("--frequent", type=int, default=20, help="speed log every this many steps")
    p.add_argument("--decode-threads", type=int, default=2, help="image decoding threads per half")
    p.add_argument("--no-mirror", action="store_true", help="disable random horizontal mirroring")
    p.add_argument("--resume", action="store_true", help="continue the search in --out after its last epoch")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def _finite(v):
    return v is not None and math.isfinite(v)


# (flag, dest, test, what the value must be)
_RULES = (
    ("--layers", "layers", lambda v: v >= 3, "an integer >= 3 (reduction cells at n//3, 2n//3 and n-1)"),
    ("--init-channels", "init_channels", lambda v: v >= 2 and v % 2 == 0, "an even integer >= 2, e.g. 16"),
    ("--nodes", "nodes", lambda v: v >= 1, "an integer >= 1, e.g. 4"),
    ("--stem-multiplier", "stem_multiplier", lambda v: v >= 1, "an integer >= 1, e.g. 3"),
    ("--epochs", "epochs", lambda v: v >= 1, "an integer >= 1"),
    ("--batch-size", "batch_size", lambda v: v >= 1, "an integer >= 1"),
    ("--image-size", "image_size", lambda v: v == 0 or v >= 16, "0 (the dataset's size) or an integer >= 16"),
    ("--w-lr", "w_lr", lambda v: _finite(v) and v > 0, "a finite number > 0, e.g. 0.1"),
    ("--w-lr-min", "w_lr_min", lambda v: _finite(v) and v >= 0, "a finite number >= 0, e.g. 0.004"),
    ("--w-momentum", "w_momentum", lambda v: _finite(v) and 0 <= v < 1, "in [0, 1), e.g. 0.9"),
    ("--w-wd", "w_wd", lambda v: _finite(v) and v >= 0, "a finite number >= 0, e.g. 0.0003"),
    ("--w-grad-clip", "w_grad_clip", lambda v: _finite(v) and v >= 0, "a finite number >= 0 (0: no clipping)"),
    ("--alpha-lr", "alpha_lr", lambda v: _finite(v) and v > 0, "a finite number > 0, e.g. 0.0012"),
    ("--alpha-wd", "alpha_wd", lambda v: _finite(v) and v >= 0, "a finite number >= 0, e.g. 0.001"),
    ("--emb-size", "emb_size", lambda v: v >= 1, "an integer >= 1, e.g. 128"),
    ("--loss-s", "loss_s", lambda v: v is None or (_finite(v) and v > 0), "a finite number > 0"),
    ("--loss-m1", "loss_m1", lambda v: v is None or _finite(v), "a finite number"),
    ("--loss-m2", "loss_m2", lambda v: v is None or _finite(v), "a finite number"),
    ("--loss-m3", "loss_m3", lambda v: v is None or _finite(v), "a finite number"),
    ("--frequent", "frequent", lambda v: v >= 1, "an integer >= 1 (log every N steps)"),
    ("--decode-threads", "decode_threads", lambda v: v >= 1, "an integer >= 1"),
    ("--cpu-contexts", "cpu_contexts", lambda v: v >= 1, "an integer >= 1"),
)


def validate(args):
    """One FaceKDError naming the flag for the first value no search can use."""
    for flag, dest, ok, what in _RULES:
        value = getattr(args, dest)
        if not ok(value):
            raise FaceKDError(f"{flag} {value!r} is invalid: it must be {what}")
    if args.w_lr_min > args.w_lr:
        raise FaceKDError(f"--w-lr-min {args.w_lr_min:g} is above --w-lr {args.w_lr:g}: the cosine schedule "
                          "anneals down from --w-lr; give a smaller --w-lr-min")
    heads = hard_label_heads()
    if args.loss not in heads:
        raise FaceKDError(f"--loss {args.loss!r} cannot be the search's head: it needs one on class labels "
                          f"without a teacher; valid: {', '.join(heads)}")


def parse_args(argv=None):
    args = build_parser().parse_args(argv)
    validate(args)
    return args


def resolve(args, dataset, devices):
    """The search's :class:`Settings`: the flags, the dataset's facts and the head's config keys."""
    from ..data import labels

    if dataset.layout.kind == labels.SOFT:
        raise FaceKDError(f"{dataset.rec_path} has soft labels (teacher vectors); the search trains a margin head "
                          "on class ids: give the hard-label dataset the soft one was made from")
    return search_settings(args, dataset.num_classes, dataset.num_images, dataset.image_size, devices,
                           dataset.folder)


def search_settings(args, num_classes, num_images, input_size, devices, folder):
    """:class:`Settings` of ``args`` for a set of ``num_classes`` identities, ``num_images`` images of
    ``input_size`` (height, width) in ``folder``, and ``devices`` devices."""
    if args.batch_size % devices:
        raise FaceKDError(f"--batch-size {args.batch_size} does not split over {devices} devices; give a multiple "
                          f"of {devices}")
    input_size = tuple(int(v) for v in input_size)
    size = args.image_size or input_size[0]
    if size > min(input_size):
        raise FaceKDError(f"--image-size {size} is larger than the {input_size[0]}x{input_size[1]} images of "
                          f"{folder}; the search can only shrink them")
    values = copy.deepcopy(dict(tables.config))  # bn_mom, workspace, fc7 multipliers, ...
    values.update(copy.deepcopy(dict(tables.loss[args.loss])))
    values.update({k: v for k, v in vars(args).items() if v is not None})
    values.update(net_act="prelu", num_classes=int(num_classes), num_images=int(num_images),
                  input_size=input_size, image_size=(size, size) if args.image_size else input_size,
                  per_batch_size=args.batch_size // devices, devices=devices, network="pocketnet",
                  rand_mirror=not args.no_mirror, data_dir=folder, alpha_betas=ALPHA_BETAS,
                  pocket_prelu_conv=True)
    return Settings(values)
