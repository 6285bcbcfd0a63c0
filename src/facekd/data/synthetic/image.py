"""One synthetic photograph: an identity under fresh per-image nuisance -> RGB pixels or JPEG bytes."""
import numpy as np

from ..images import encode
from .identity import drift_identity
from .nuisance import PROFILES, background, jpeg_quality, occlude, photometric, sample_expression, sample_pose
from .render import draw_face

IMAGE_SIZE = 112


def image_rng(seed, key):
    """The numpy Generator of one image (or plan), derived from the dataset seed and a key tuple."""
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=tuple(int(k) for k in key)))


def render_image(ident, profile, rng):
    """RGB uint8 (112, 112, 3) of ``ident`` under nuisance of ``profile`` drawn from ``rng``;
    also returns the JPEG quality drawn for it."""
    if profile.drift_prob and rng.random() < profile.drift_prob:
        ident = drift_identity(ident, rng, rng.uniform(*profile.drift))
    img = background(rng, IMAGE_SIZE)
    draw_face(img, ident, sample_pose(rng, profile), sample_expression(rng, profile))
    occlude(img, rng, profile)
    img = photometric(img, rng, profile)
    return img, jpeg_quality(rng, profile)


def render_encoded(task):
    """JPEG bytes of one task ``(identity, profile name, seed, key)``; the unit of work of the pool."""
    ident, profile_name, seed, key = task
    img, quality = render_image(ident, PROFILES[profile_name], image_rng(seed, key))
    return encode(img, quality=quality)
