"""The default configuration tables, as insightface users know them.

``network.<name>``, ``dataset.<name>``, ``loss.<name>`` and ``default`` (the defaults
of the command-line flags), over the base table ``config``. Users do not edit this
file: they edit ``recognition/config.py``, which starts from copies of these tables
(:func:`copy_tables`) and which train.py reads fresh for every run
(:mod:`facekd.config_file`). :func:`generate_config` merges the tables (loss first,
then network, then dataset) into one flat EasyDict; a key that also exists in
``default`` updates the default of its flag.
"""
import copy
import os
from types import SimpleNamespace

from easydict import EasyDict as edict

from .errors import FaceKDError

# ----------------------------------------------------------------------------- base
config = edict()
config.bn_mom = 0.9
config.workspace = 256
config.emb_size = 512
config.net_se = 0
config.net_act = "prelu"
config.net_unit = 3
config.net_input = 1
config.net_blocks = [1, 4, 6, 2]
config.net_output = "E"
config.val_targets = ["lfw", "cfp_fp", "agedb_30"]
config.fc7_lr_mult = 1.0
config.fc7_wd_mult = 1.0
config.fc7_no_bias = False
config.max_steps = 0
config.data_rand_mirror = True
config.data_cutoff = False
config.data_color = 0
config.data_images_filter = 0
config.image_shape = (112, 112, 3)
config.teacher = ""  # "prefix,epoch" of the teacher checkpoint, for methods that need its fc7_weight

# ----------------------------------------------------------------------------- networks
network = edict()

network.y1 = edict(net_name="fmobilefacenet", emb_size=512, net_output="GDC",
                   net_blocks=[1, 4, 6, 2], net_act="relu")
network.y2 = edict(net_name="fmobilefacenet", emb_size=256, net_output="GDC",
                   net_blocks=[2, 8, 16, 4], net_act="prelu")
for _depth in (18, 34, 50, 100):
    network[f"r{_depth}"] = edict(net_name="fresnet", num_layers=_depth, net_output="E",
                                  net_act="prelu", emb_size=512)
for _size, _cells, _width in (("s", 18, 16), ("m", 9, 32)):
    for _emb in (128, 256):
        network[f"pocketnet{_size}{_emb}"] = edict(
            net_name="pocketnet", emb_size=_emb, net_act="prelu", net_output="pocket",
            pocket_cells=_cells, pocket_channels=_width)
# Any PocketNet genotype (--genotype FILE from recognition/search.py), PocketNetS-128 sizes by default
network.pocketnet = edict(net_name="pocketnet", emb_size=128, net_act="prelu", net_output="pocket",
                          pocket_cells=18, pocket_channels=16, pocket_genotype="pocketnet")

# ----------------------------------------------------------------------------- datasets
dataset = edict()
_MS1M = dict(num_classes=85742, image_shape=(112, 112, 3), val_targets=["lfw", "cfp_fp", "agedb_30"])
dataset.emore = edict(dataset="emore", dataset_path="../datasets/faces_emore", **_MS1M)
dataset.emore_soft = edict(dataset="emore_soft", dataset_path="../datasets/faces_emore_soft",
                           teacher="./models/r100-arcface-emore/model,1", **_MS1M)
_SYNTH = dict(num_classes=0, image_shape=(112, 112, 3),
              val_targets=["synth_easy", "synth_pose", "synth_age"])  # num_classes from `property`
dataset.synthetic = edict(dataset="synthetic", dataset_path="./datasets/synthetic", **_SYNTH)
dataset.synthetic_soft = edict(dataset="synthetic_soft", dataset_path="./datasets/synthetic_soft",
                               teacher="./models/y2-arcface-synthetic/model,1", **_SYNTH)

# ----------------------------------------------------------------------------- losses
loss = edict()
loss.softmax = edict(loss_name="softmax")
loss.nsoftmax = edict(loss_name="margin_softmax", loss_s=64.0, loss_m1=1.0, loss_m2=0.0, loss_m3=0.0)
loss.arcface = edict(loss_name="margin_softmax", loss_s=64.0, loss_m1=1.0, loss_m2=0.5, loss_m3=0.0)
loss.cosface = edict(loss_name="margin_softmax", loss_s=64.0, loss_m1=1.0, loss_m2=0.0, loss_m3=0.35)
loss.combined = edict(loss_name="margin_softmax", loss_s=64.0, loss_m1=1.0, loss_m2=0.3, loss_m3=0.2)
loss.angular_distillation = edict(loss_name="angular_distillation", loss_s=64.0, loss_m1=1.0,
                                  loss_m2=0.5, loss_m3=0.0, alpha=1.0)
_TRIPLET = dict(loss_s=64.0, Mmin=0.2, Mmax=0.5, images_per_identity=18, triplet_alpha=0.35,
                triplet_bag_size=7200, triplet_max_ap=0.0, per_batch_size=180, lr=0.001)
loss.triplet_distillation_L2 = edict(loss_name="triplet_distillation_L2", **_TRIPLET)
loss.triplet_distillation_cos = edict(loss_name="triplet_distillation_cos", **_TRIPLET)
loss.margin_base_with_T = edict(loss_name="margin_base_with_T", loss_s=64.0, loss_m1=1.0,
                                loss_m2=0.5, loss_m3=0.0, T=4.0, alpha=0.95)
loss.margin_distillation = edict(loss_name="margin_distillation", loss_s=64.0, Mmin=0.2, Mmax=0.5)
loss.template_kd = edict(loss_name="template_kd", loss_s=64.0, loss_m1=1.0, loss_m2=0.5,
                         loss_m3=0.0, kd_lambda=100.0, teacher_schedule="")

# ----------------------------------------------------------------------------- flag defaults
default = edict()
default.pretrained = ""
default.pretrained_epoch = 1
default.network = "y1"
default.dataset = "emore"
default.loss = "arcface"
default.frequent = 20
default.verbose = 4000
default.kvstore = "device"
default.end_epoch = 10000
default.lr = 0.1
default.wd = 0.0005
default.mom = 0.9
default.per_batch_size = 256
default.ckpt = 3
default.lr_steps = "100000,160000,220000"
default.models_root = "./models"
default.T = 4.0
default.sample_ratio = 1.0  # Partial FC: fraction of the class centres each step samples (1 = the full head)
default.teacher = ""


def _table(tables, name, kind):
    if name not in tables:
        raise FaceKDError(f"unknown {kind} {name!r} for --{kind}; valid: {', '.join(sorted(tables))}")
    return tables[name]


def read_property(folder):
    """(num_classes, height, width) from ``folder/property``, or None when the file is absent."""
    path = os.path.join(folder, "property")
    if not os.path.isfile(path):
        return None
    with open(path, "rb") as f:
        raw = f.read(4096)
    try:
        text = raw.decode("ascii").strip()
        values = [int(v) for v in text.split(",")]
        if len(values) != 3 or min(values) < 1:
            raise ValueError
    except ValueError:  # UnicodeDecodeError included: a binary file
        raise FaceKDError(f"{path}: expected one line 'num_classes,height,width' of positive integers "
                          f"(e.g. 85742,112,112), got {raw[:40]!r}; rewrite it") from None
    return tuple(values)


def copy_tables():
    """Deep copies of the tables ``(config, network, dataset, loss, default)``: what a user's
    config file (recognition/config.py) edits, so that these defaults never change."""
    return tuple(copy.deepcopy(t) for t in (config, network, dataset, loss, default))


def generate_config(network_name, dataset_name, loss_name, *, tables=None, **overrides):
    """Merged configuration for a run: base, then loss, network and dataset tables, then overrides.

    ``tables``: an object with the five tables as attributes (``config``, ``network``,
    ``dataset``, ``loss``, ``default``), e.g. a user's file read by
    :func:`facekd.config_file.read_tables`; None for this module's tables.
    Returns a new EasyDict (the tables are not modified). ``cfg.defaults`` holds the
    flag defaults after the tables have updated them. The class count and image size of
    a run come from the dataset's ``property`` (:func:`facekd.training.settings.resolve`).
    """
    t = tables or SimpleNamespace(config=config, network=network, dataset=dataset, loss=loss, default=default)
    cfg = copy.deepcopy(t.config)
    defaults = copy.deepcopy(t.default)
    for table in (_table(t.loss, loss_name, "loss"), _table(t.network, network_name, "network"),
                  _table(t.dataset, dataset_name, "dataset")):
        for k, v in table.items():
            cfg[k] = copy.deepcopy(v)
            if k in defaults:
                defaults[k] = copy.deepcopy(v)
    for k, v in defaults.items():
        cfg.setdefault(k, copy.deepcopy(v))
    cfg.loss = loss_name
    cfg.network = network_name
    cfg.dataset = dataset_name
    for k, v in overrides.items():
        if v is not None:
            cfg[k] = v
    cfg.defaults = defaults
    return cfg
