"""Procedurally drawn faces: a training set and held-out verification targets (docs/synthetic.md).

Identity lives only in the face (:mod:`.identity`); everything else is drawn
fresh for every image (:mod:`.nuisance`); :mod:`.render` draws, :mod:`.plan`
decides what a seed produces and :mod:`.dataset` writes the folder.
"""
from .dataset import OUTPUT_FILES, SyntheticSummary, generate_synthetic, images_per_second
from .identity import Identity, drift_identity, sample_identity, signature
from .image import IMAGE_SIZE, render_image
from .nuisance import PROFILES
from .plan import TARGETS, SyntheticParams, plan_all_pairs, train_identities, val_identities

__all__ = ["OUTPUT_FILES", "SyntheticSummary", "generate_synthetic", "images_per_second", "Identity",
           "drift_identity", "sample_identity", "signature", "IMAGE_SIZE", "render_image", "PROFILES", "TARGETS",
           "SyntheticParams", "plan_all_pairs", "train_identities", "val_identities"]
