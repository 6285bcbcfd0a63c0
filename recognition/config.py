"""The configuration tables of train.py: edit them here (insightface's recognition/config.py).

train.py reads this file afresh at every start (``--config FILE`` reads another file laid
out the same way) and logs which file it read: ``config: tables from .../config.py``.
The tables start as copies of the package's defaults (``src/facekd/config.py``, which
you need not touch); change them below:

* ``default``  the defaults of the flags (``default.lr``, ``default.per_batch_size``, ...)
* ``network``  one table per ``--network`` (``network.y1``, ``network.r100``, ...)
* ``dataset``  one table per ``--dataset`` (``dataset.emore``, ``dataset.emore_soft``, ...)
* ``loss``     one table per ``--loss`` (``loss.arcface``, ``loss.margin_distillation``, ...)
* ``config``   the base table under all of them (``config.bn_mom``, ``config.val_targets``, ...)

Merge order and every key: docs/configuration.md. Flags still override the tables.
"""
from easydict import EasyDict as edict  # noqa: F401  (for new tables, as in the examples)

from facekd.config import copy_tables

config, network, dataset, loss, default = copy_tables()

# ----------------------------------------------------------------------------- your edits
# Examples (uncomment and adapt):
#
# A smaller starting learning rate and batch for every run:
# default.lr = 0.05
# default.per_batch_size = 128
#
# A 128-d MobileFaceNet embedding:
# network.y1.emb_size = 128
#
# Your own dataset, used with --dataset my_faces (class count and image size come
# from the folder's `property` file):
# dataset.my_faces = edict(dataset="my_faces", dataset_path="../datasets/my_faces", num_classes=0,
#                          image_shape=(112, 112, 3), val_targets=["lfw", "cfp_fp", "agedb_30"])
#
# A softer ArcFace margin:
# loss.arcface.loss_m2 = 0.4
