"""What a synthetic dataset contains, decided from its parameters and seed alone.

Training identities, held-out identities and each target's pairs are drawn
from their own numpy Generators (one per identity, per image, per target),
keyed by the seed, so the plan does not depend on worker count or order.

With ``target_images`` K > 0 the pairs of a target draw their images from a pool of K
images per held-out identity and nuisance profile (images reused across pairs, as in
LFW): a pair keeps its identity draws and picks an image of each pool; pair images are
then keyed by their pool entry, not by the pair.
"""
from collections import namedtuple
from dataclasses import dataclass

from ...errors import FaceKDError
from .identity import nearest_identities, sample_identity
from .image import image_rng

# Streams of the seed: each kind of random draw has its own key prefix.
(STREAM_TRAIN_IDENTITY, STREAM_VAL_IDENTITY, STREAM_TRAIN_IMAGE, STREAM_PAIRS, STREAM_PAIR_IMAGE,
 STREAM_POOL_CHOICE, STREAM_POOL_IMAGE) = range(7)

Target = namedtuple("Target", "name first second")
"""A verification target: file name (without .bin) and the nuisance profiles of a pair's two images."""

TARGETS = (
    Target("synth_easy", "easy", "easy"),
    Target("synth_pose", "easy", "pose"),   # frontal vs strongly turned: the CFP-FP analogue
    Target("synth_age", "easy", "age"),     # the second image after attribute drift: the AgeDB analogue
)

Pair = namedtuple("Pair", "a b same image_a image_b", defaults=(None, None))
"""One pair of held-out identity indices; ``same`` when a == b. With a pool, ``image_a`` / ``image_b`` are
the indices (0..K-1) of a's image in the pool of the target's first profile and of b's in the second's;
None when every pair has two fresh images."""

TargetImage = namedtuple("TargetImage", "identity profile key")
"""The image of one pair slot: held-out identity index, nuisance profile name, key of its random stream."""

NEAREST = 3  # similar-looking negatives are drawn among this many nearest identities
MAX_REDRAWS = 1000  # a pair that repeats an earlier one is drawn again at most this many times


def pool_side(target, side):
    """The pool (0 or 1) that side 0 / 1 of ``target``'s pairs draws from: one pool when both sides share
    a profile (synth_easy), else one per side."""
    return 0 if side == 0 or target.second == target.first else 1


def too_many_pairs(params):
    return FaceKDError(f"--pairs {params.pairs} is too many for --target-images {params.target_images} x "
                       f"--val-identities {params.val_identities}; raise one of them")


@dataclass(frozen=True)
class SyntheticParams:
    """Sizes of a synthetic dataset (the flags of data_prepare/make_synthetic.py)."""
    identities: int = 200
    images_per_identity: int = 20
    val_identities: int = 100
    pairs: int = 600
    seed: int = 0
    similar_fraction: float = 0.5
    target_images: int = 0

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
            ("--target-images", self.target_images, self.target_images == 0 or self.target_images >= 2,
             "must be 0 (two fresh images per pair) or at least 2 (a same pair needs two images of a person)"),
        )
        for flag, value, ok, message in checks:
            if not ok:
                raise FaceKDError(f"{flag} {message}; got {value}")
        k = self.target_images
        if k and self.pairs // 2 > self.val_identities * k * (k - 1) // 2:  # synth_easy's same pairs, one pool
            raise too_many_pairs(self)
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


def draw_identities(rng, k, params, nearest):
    """The identities of pair ``k``: same when k is even, else different, a ``similar_fraction`` of them
    taking b among a's ``nearest`` look-alikes."""
    n = params.val_identities
    a = int(rng.integers(n))
    if k % 2 == 0:
        return Pair(a, a, True)
    if rng.random() < params.similar_fraction:
        b = int(nearest[a, rng.integers(nearest.shape[1])])
    else:
        b = int(rng.integers(n - 1))
        b += b >= a
    return Pair(a, b, False)


def draw_pool_images(rng, pair, k_images, one_pool):
    """``pair`` with an image index of each side's pool; two different images when both sides are one
    identity in one pool."""
    image_a = int(rng.integers(k_images))
    if pair.same and one_pool:
        image_b = int(rng.integers(k_images - 1))
        image_b += image_b >= image_a
    else:
        image_b = int(rng.integers(k_images))
    return pair._replace(image_a=image_a, image_b=image_b)


def pair_images(target, pair):
    """The two pool images of a pooled ``pair`` as (pool, identity, index), in a canonical order when both
    come from one pool (a pair and its swap are the same pair)."""
    first = (pool_side(target, 0), pair.a, pair.image_a)
    second = (pool_side(target, 1), pair.b, pair.image_b)
    return (first, second) if first[0] != second[0] else tuple(sorted((first, second)))


def plan_pairs(params, target_index, nearest):
    """The pairs of one target: alternating same / different (so every contiguous fold is balanced);
    a ``similar_fraction`` of different pairs takes b among a's ``nearest`` look-alikes. With
    ``target_images`` > 0 each pair also picks its pool images, and a pair that repeats an earlier one
    (the same two images) is drawn again, identities included."""
    rng = image_rng(params.seed, (STREAM_PAIRS, target_index))
    if not params.target_images:
        return [draw_identities(rng, k, params, nearest) for k in range(params.pairs)]
    target = TARGETS[target_index]
    one_pool = pool_side(target, 0) == pool_side(target, 1)
    choice = image_rng(params.seed, (STREAM_POOL_CHOICE, target_index))
    pairs, seen = [], set()
    for k in range(params.pairs):
        for _ in range(MAX_REDRAWS):
            pair = draw_pool_images(choice, draw_identities(rng, k, params, nearest), params.target_images,
                                    one_pool)
            images = pair_images(target, pair)
            if images not in seen:
                break
        else:
            raise too_many_pairs(params)
        seen.add(images)
        pairs.append(pair)
    return pairs


def plan_all_pairs(params, identities):
    """Pairs of every target in :data:`TARGETS`, for the held-out ``identities``."""
    nearest = nearest_identities(identities, min(NEAREST, len(identities) - 1))
    return [plan_pairs(params, t, nearest) for t in range(len(TARGETS))]


def target_images(params, target_index, pairs):
    """The :class:`TargetImage` of each of the 2P slots of one target's ``pairs``, in slot order. Slots of
    one pool image share its key (and so its pixels); without a pool every slot has its own."""
    target = TARGETS[target_index]
    profiles = (target.first, target.second)
    out = []
    for k, pair in enumerate(pairs):
        for side, (identity, image) in enumerate(((pair.a, pair.image_a), (pair.b, pair.image_b))):
            if params.target_images:
                pool = pool_side(target, side)
                key = (STREAM_POOL_IMAGE, target_index, pool, identity, image)
            else:
                key = (STREAM_PAIR_IMAGE, target_index, k, side)
            out.append(TargetImage(identity, profiles[side], key))
    return out
