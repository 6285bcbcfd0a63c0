"""What a synthetic dataset contains, decided from its parameters and seed alone.

Training identities, held-out identities and each target's pairs are drawn
from their own numpy Generators (one per identity, per image, per target),
keyed by the seed, so the plan does not depend on worker count or order.
"""
from collections import namedtuple
from dataclasses import dataclass

from ...errors import FaceKDError
from .identity import nearest_identities, sample_identity
from .image import image_rng

# Streams of the seed: each kind of random draw has its own key prefix.
STREAM_TRAIN_IDENTITY, STREAM_VAL_IDENTITY, STREAM_TRAIN_IMAGE, STREAM_PAIRS, STREAM_PAIR_IMAGE = range(5)

Target = namedtuple("Target", "name first second")
"""A verification target: file name (without .bin) and the nuisance profiles of a pair's two images."""

TARGETS = (
    Target("synth_easy", "easy", "easy"),
    Target("synth_pose", "easy", "pose"),   # frontal vs strongly turned: the CFP-FP analogue
    Target("synth_age", "easy", "age"),     # the second image after attribute drift: the AgeDB analogue
)

Pair = namedtuple("Pair", "a b same")
"""One pair of held-out identity indices; ``same`` when a == b."""

NEAREST = 3  # similar-looking negatives are drawn among this many nearest identities


@dataclass(frozen=True)
class SyntheticParams:
    """Sizes of a synthetic dataset (the flags of data_prepare/make_synthetic.py)."""
    identities: int = 200
    images_per_identity: int = 20
    val_identities: int = 100
    pairs: int = 600
    seed: int = 0
    similar_fraction: float = 0.5

    def validate(self):
        """Raise FaceKDError naming the flag when a size cannot make a dataset."""
        checks = (
            ("--identities", self.identities, self.identities >= 2, "must be at least 2"),
            ("--images-per-identity", self.images_per_identity, self.images_per_identity >= 2,
             "must be at least 2 (same-identity pairs and triplets need two images of a person)"),
            ("--val-identities", self.val_identities, self.val_identities >= 2,
             "must be at least 2 (different pairs need two held-out people)"),
            ("--pairs", self.pairs, self.pairs >= 2 and self.pairs % 2 == 0,
             "must be an even number >= 2 (half same, half different)"),
            ("--seed", self.seed, self.seed >= 0, "must be a non-negative integer"),
            ("--similar-fraction", self.similar_fraction, 0.0 <= self.similar_fraction <= 1.0,
             "must be between 0 and 1"),
            ("--identities x --images-per-identity", self.num_images,
             self.num_images + self.identities < 2 ** 24 - 1, "is too large for float32 record keys"),
        )
        for flag, value, ok, message in checks:
            if not ok:
                raise FaceKDError(f"{flag} {message}; got {value}")
        return self

    @property
    def num_images(self):
        return self.identities * self.images_per_identity


def train_identities(params):
    """The training identities; class id c is list index c."""
    return [sample_identity(image_rng(params.seed, (STREAM_TRAIN_IDENTITY, c))) for c in range(params.identities)]


def val_identities(params):
    """The held-out identities of the verification targets (a separate stream: never in training)."""
    return [sample_identity(image_rng(params.seed, (STREAM_VAL_IDENTITY, i))) for i in range(params.val_identities)]


def plan_pairs(params, target_index, nearest):
    """The pairs of one target: alternating same / different (so every contiguous fold is balanced);
    a ``similar_fraction`` of different pairs takes b among a's ``nearest`` look-alikes."""
    rng = image_rng(params.seed, (STREAM_PAIRS, target_index))
    n = params.val_identities
    pairs = []
    for k in range(params.pairs):
        a = int(rng.integers(n))
        if k % 2 == 0:
            pairs.append(Pair(a, a, True))
            continue
        if rng.random() < params.similar_fraction:
            b = int(nearest[a, rng.integers(nearest.shape[1])])
        else:
            b = int(rng.integers(n - 1))
            b += b >= a
        pairs.append(Pair(a, b, False))
    return pairs


def plan_all_pairs(params, identities):
    """Pairs of every target in :data:`TARGETS`, for the held-out ``identities``."""
    nearest = nearest_identities(identities, min(NEAREST, len(identities) - 1))
    return [plan_pairs(params, t, nearest) for t in range(len(TARGETS))]
