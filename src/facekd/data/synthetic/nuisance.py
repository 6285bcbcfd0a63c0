"""Per-image variation, drawn fresh for every image and independent of identity.

A :class:`Profile` holds the ranges of one difficulty level (training, the mild
pair images, strong pose, age drift); the functions below draw from them:
pose and expression (used by the face drawing), background, occluders and the
photometric chain (lighting, blur, resolution loss, noise, JPEG quality).
"""
from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class Profile:
    """Ranges of the per-image variation for one difficulty level."""
    yaw: tuple            # (min, max) of |yaw| in radians, sign random
    pitch: float          # max |pitch| in radians
    roll: float           # max |in-plane rotation| in degrees
    scale: tuple          # (min, max) face scale
    shift: float          # max |translation| in pixels
    expression: float     # 0..1 strength of smile, open mouth, blink, gaze, brow raise
    light: float          # max strength of the lighting gradient
    blur_prob: float
    blur_sigma: tuple
    lowres_prob: float
    noise: float          # max Gaussian noise sigma (0..255 scale)
    jpeg: tuple           # (min, max) JPEG quality
    occluder_prob: float
    drift_prob: float     # probability of an age-like attribute drift of the identity
    drift: tuple          # (min, max) drift strength


PROFILES = {
    "train": Profile(yaw=(0.0, 0.75), pitch=0.12, roll=12.0, scale=(0.9, 1.1), shift=5.0, expression=1.0,
                     light=0.45, blur_prob=0.25, blur_sigma=(0.4, 1.3), lowres_prob=0.15, noise=7.0,
                     jpeg=(40, 95), occluder_prob=0.2, drift_prob=0.2, drift=(0.2, 0.7)),
    "easy": Profile(yaw=(0.0, 0.25), pitch=0.06, roll=6.0, scale=(0.95, 1.05), shift=3.0, expression=0.5,
                    light=0.25, blur_prob=0.1, blur_sigma=(0.4, 1.0), lowres_prob=0.05, noise=4.0,
                    jpeg=(70, 95), occluder_prob=0.05, drift_prob=0.0, drift=(0.0, 0.0)),
    "pose": Profile(yaw=(0.5, 0.85), pitch=0.12, roll=18.0, scale=(0.88, 1.08), shift=7.0, expression=0.7,
                    light=0.35, blur_prob=0.15, blur_sigma=(0.4, 1.2), lowres_prob=0.1, noise=5.0,
                    jpeg=(60, 95), occluder_prob=0.1, drift_prob=0.0, drift=(0.0, 0.0)),
    "age": Profile(yaw=(0.0, 0.25), pitch=0.06, roll=6.0, scale=(0.95, 1.05), shift=3.0, expression=0.5,
                   light=0.25, blur_prob=0.1, blur_sigma=(0.4, 1.0), lowres_prob=0.05, noise=4.0,
                   jpeg=(70, 95), occluder_prob=0.05, drift_prob=1.0, drift=(0.6, 1.0)),
}


@dataclass(frozen=True)
class Pose:
    """Head pose and framing of one image."""
    yaw: float
    pitch: float
    roll: float
    scale: float
    dx: float
    dy: float


@dataclass(frozen=True)
class Expression:
    """Momentary face movements of one image."""
    smile: float
    mouth_open: float
    eye_open: float
    gaze: float
    brow_raise: float


def sample_pose(rng, profile):
    yaw = rng.uniform(*profile.yaw) * (1 if rng.random() < 0.5 else -1)
    return Pose(yaw=yaw, pitch=rng.uniform(-profile.pitch, profile.pitch),
                roll=rng.uniform(-profile.roll, profile.roll), scale=rng.uniform(*profile.scale),
                dx=rng.uniform(-profile.shift, profile.shift), dy=rng.uniform(-profile.shift, profile.shift))


def sample_expression(rng, profile):
    e = profile.expression
    blink = rng.random() < 0.08 * e
    return Expression(smile=e * rng.uniform(-1.5, 3.0),
                      mouth_open=e * rng.uniform(0, 4.0) if rng.random() < 0.3 else 0.0,
                      eye_open=rng.uniform(0.05, 0.25) if blink else 1.0 - e * rng.uniform(0, 0.35),
                      gaze=e * rng.uniform(-1, 1), brow_raise=e * rng.uniform(-1.5, 2.5))


def _random_colour(rng):
    return tuple(float(c) for c in rng.uniform(0, 255, 3))


def background(rng, size):
    """A fresh random background (size x size RGB uint8): smooth blotches, stripes, shapes or a gradient."""
    kind = rng.integers(4)
    if kind == 0:
        cells = rng.integers(2, 7, size=2)
        small = (rng.uniform(0, 255, 3) + rng.uniform(-70, 70, (cells[0], cells[1], 3))).astype(np.float32)
        img = cv2.resize(np.clip(small, 0, 255), (size, size), interpolation=cv2.INTER_CUBIC)
        return np.clip(img, 0, 255).astype(np.uint8)
    if kind == 3:
        ramp = np.linspace(0, 1, size, dtype=np.float32)
        a, b = rng.uniform(0, 255, 3).astype(np.float32), rng.uniform(0, 255, 3).astype(np.float32)
        line = a + ramp[:, None] * (b - a)
        img = np.broadcast_to(line[:, None, :] if rng.random() < 0.5 else line[None, :, :], (size, size, 3))
        return np.ascontiguousarray(img).astype(np.uint8)
    img = np.empty((size, size, 3), np.uint8)
    img[:] = np.array(rng.uniform(0, 255, 3), np.uint8)
    for _ in range(int(rng.integers(2, 9))):
        colour = _random_colour(rng)
        p = rng.uniform(-10, size + 10, 4).astype(int)
        if kind == 1:
            cv2.line(img, (p[0], p[1]), (p[2], p[3]), colour, int(rng.integers(1, 12)), cv2.LINE_AA)
        elif rng.random() < 0.5:
            cv2.rectangle(img, (p[0], p[1]), (p[2], p[3]), colour, -1)
        else:
            cv2.circle(img, (p[0], p[1]), int(rng.integers(5, 40)), colour, -1, cv2.LINE_AA)
    return img


def occlude(img, rng, profile):
    """Draw 0-2 occluders (bar, blob or stroke of a random colour) over the face area, in place."""
    if rng.random() >= profile.occluder_prob:
        return
    for _ in range(1 if rng.random() < 0.8 else 2):
        colour = _random_colour(rng)
        cx, cy = rng.uniform(25, 87), rng.uniform(30, 100)
        kind = rng.integers(3)
        if kind == 0:
            w, h, angle = rng.uniform(20, 60), rng.uniform(8, 20), rng.uniform(-30, 30)
            box = cv2.boxPoints(((cx, cy), (w, h), angle))
            cv2.fillPoly(img, [np.round(box * 16).astype(np.int32)], colour, cv2.LINE_AA, 4)
        elif kind == 1:
            axes = (int(rng.integers(8, 20)), int(rng.integers(10, 24)))
            cv2.ellipse(img, (int(cx), int(cy)), axes, rng.uniform(0, 180), 0, 360, colour, -1, cv2.LINE_AA)
        else:
            a = rng.uniform(0, np.pi)
            d = rng.uniform(20, 45) * np.array([np.cos(a), np.sin(a)])
            p0, p1 = np.array([cx, cy]) - d, np.array([cx, cy]) + d
            cv2.line(img, tuple(int(x) for x in p0), tuple(int(x) for x in p1), colour,
                     int(rng.integers(3, 8)), cv2.LINE_AA)


def photometric(img, rng, profile):
    """Lighting gradient and colour cast, blur, resolution loss and noise: a new uint8 image."""
    size = img.shape[0]
    angle = rng.uniform(0, 2 * np.pi)
    strength = rng.uniform(0, profile.light)
    ramp = np.linspace(-1, 1, size, dtype=np.float32)
    field = 1 + strength * (np.cos(angle) * ramp[None, :] + np.sin(angle) * ramp[:, None])
    gain = (rng.uniform(0.7, 1.25) * rng.uniform(0.88, 1.12, 3)).astype(np.float32)
    out = img.astype(np.float32) * field[:, :, None] * gain
    if rng.random() < profile.blur_prob:
        out = cv2.GaussianBlur(out, (0, 0), rng.uniform(*profile.blur_sigma))
    if rng.random() < profile.lowres_prob:
        small = int(size * rng.uniform(0.35, 0.75))
        out = cv2.resize(cv2.resize(out, (small, small), interpolation=cv2.INTER_AREA), (size, size),
                         interpolation=cv2.INTER_LINEAR)
    sigma = rng.uniform(0, profile.noise)
    if sigma > 0:
        out += rng.standard_normal(out.shape, dtype=np.float32) * np.float32(sigma)
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def jpeg_quality(rng, profile):
    return int(rng.integers(profile.jpeg[0], profile.jpeg[1] + 1))
