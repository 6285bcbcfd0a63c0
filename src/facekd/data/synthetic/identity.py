"""Identity attributes of a synthetic face: everything that makes one person look like themself.

Coordinates are in the canonical face frame: pixels of the 112x112 crop, origin at
the face centre ``(FACE_CX, face_cy)``, ``u`` to the right and ``v`` downwards.
Nothing here depends on an image: pose, lighting, background and the rest are
drawn per image in :mod:`.nuisance`.
"""
from dataclasses import dataclass, replace

import numpy as np

FACE_CX = 56.0

HAIR_STYLES = ("bald", "buzz", "short", "side_part", "fringe", "long", "curly")
BEARD_STYLES = ("none", "stubble", "moustache", "goatee", "full")
GLASSES_STYLES = ("none", "round", "rect")
NOSE_STYLES = ("lines", "hook", "shadow")

SKIN_TONES = np.array([(255, 226, 200), (240, 196, 150), (224, 172, 120), (198, 140, 90),
                       (160, 104, 62), (112, 70, 42), (80, 52, 34)], dtype=np.float64)
HAIR_COLOURS = np.array([(24, 20, 18), (58, 38, 26), (96, 64, 40), (134, 66, 36), (176, 120, 70),
                         (212, 180, 120), (150, 148, 146), (205, 203, 198)], dtype=np.float64)
HAIR_WEIGHTS = np.array([0.24, 0.22, 0.16, 0.08, 0.09, 0.09, 0.07, 0.05])
IRIS_COLOURS = np.array([(40, 28, 22), (92, 58, 32), (128, 100, 50), (78, 118, 72),
                         (70, 110, 170), (118, 128, 140)], dtype=np.float64)
GREY_HAIR = np.array((196, 196, 192), dtype=np.float64)


@dataclass(frozen=True)
class Identity:
    """The face of one synthetic person (canonical frame, pixels; colours are RGB)."""
    face_cy: float
    face_ax: float
    face_ay: float
    cheek_exp: float
    jaw_exp: float
    skin: tuple
    ear_size: float
    eye_dx: float
    eye_v: float
    eye_rx: float
    eye_ry: float
    eye_tilt: float
    iris: tuple
    iris_ratio: float
    brow_gap: float
    brow_len: float
    brow_thick: float
    brow_arch: float
    brow_tilt: float
    brow_colour: tuple
    nose_style: int
    nose_side: float
    nose_len: float
    nose_width: float
    nose_depth: float
    mouth_v: float
    mouth_w: float
    lip_upper: float
    lip_lower: float
    lip_colour: tuple
    mouth_curve: float
    hair_style: int
    hair_colour: tuple
    hairline: float
    hair_volume: float
    hair_length: float
    hair_part: float
    hair_phase: float
    glasses: int
    glasses_colour: tuple
    glasses_thick: int
    glasses_size: float
    beard: int
    beard_colour: tuple
    beard_density: float
    moles: tuple
    freckles: tuple
    wrinkles: float


def _colour(rgb):
    return tuple(float(c) for c in np.clip(rgb, 0, 255))


def _palette(rng, table, jitter, weights=None):
    return table[rng.choice(len(table), p=weights)] + rng.uniform(-jitter, jitter, 3)


def _skin(rng):
    pos = rng.uniform(0, len(SKIN_TONES) - 1)
    i = min(int(pos), len(SKIN_TONES) - 2)
    base = SKIN_TONES[i] + (pos - i) * (SKIN_TONES[i + 1] - SKIN_TONES[i])
    return base + rng.uniform(-10, 10, 3)


def _glasses_colour(rng):
    return _colour(rng.choice([(20, 20, 20), (90, 60, 30), (150, 150, 160), (160, 30, 30), (30, 40, 120)])
                   + rng.uniform(-15, 15, 3))


def sample_identity(rng):
    """A new random :class:`Identity` drawn from ``rng`` (a numpy Generator)."""
    face_cy = rng.uniform(57.0, 63.0)
    face_ax = rng.uniform(34.0, 42.0)
    face_ay = rng.uniform(46.0, 53.0)
    skin = _skin(rng)
    hair = _palette(rng, HAIR_COLOURS, 12, HAIR_WEIGHTS)
    eye_v = rng.uniform(49.0, 54.0) - face_cy
    mouth_v = rng.uniform(88.0, 96.0) - face_cy
    hair_style = int(rng.choice(len(HAIR_STYLES), p=[0.08, 0.1, 0.2, 0.17, 0.15, 0.18, 0.12]))
    beard = int(rng.choice(len(BEARD_STYLES), p=[0.62, 0.1, 0.1, 0.08, 0.1]))
    glasses = int(rng.choice(len(GLASSES_STYLES), p=[0.7, 0.15, 0.15]))
    n_moles = int(rng.choice(4, p=[0.45, 0.3, 0.17, 0.08]))
    moles = tuple((float(rng.uniform(-0.75, 0.75) * face_ax), float(rng.uniform(-0.3, 0.8) * face_ay),
                   float(rng.uniform(0.9, 2.2))) for _ in range(n_moles))
    n_freckles = int(rng.choice([0, 0, 0, 12, 25, 40]))
    freckles = tuple((float(rng.normal(0, 0.35) * face_ax), float(rng.uniform(-0.05, 0.35) * face_ay))
                     for _ in range(n_freckles))
    lip = skin * np.array([0.78, 0.5, 0.5]) + np.array([40, 10, 14]) + rng.uniform(-12, 12, 3)
    return Identity(
        face_cy=face_cy, face_ax=face_ax, face_ay=face_ay,
        cheek_exp=rng.uniform(1.9, 2.5), jaw_exp=rng.uniform(1.5, 3.2),
        skin=_colour(skin), ear_size=rng.uniform(7.5, 12.0),
        eye_dx=rng.uniform(15.0, 20.5), eye_v=eye_v,
        eye_rx=rng.uniform(4.5, 7.5), eye_ry=rng.uniform(2.2, 4.0), eye_tilt=rng.uniform(-12, 12),
        iris=_colour(_palette(rng, IRIS_COLOURS, 14)), iris_ratio=rng.uniform(0.45, 0.7),
        brow_gap=rng.uniform(5.0, 10.0), brow_len=rng.uniform(1.0, 1.6), brow_thick=rng.uniform(1.2, 4.0),
        brow_arch=rng.uniform(-1.5, 4.0), brow_tilt=rng.uniform(-9, 9),
        brow_colour=_colour(hair * rng.uniform(0.55, 0.9) + rng.uniform(-10, 10, 3)),
        nose_style=int(rng.integers(len(NOSE_STYLES))), nose_side=float(rng.choice([-1.0, 1.0])),
        nose_len=rng.uniform(0.45, 0.68) * (mouth_v - eye_v),
        nose_width=rng.uniform(5.5, 12.0), nose_depth=rng.uniform(6.0, 14.0),
        mouth_v=mouth_v, mouth_w=rng.uniform(9.0, 16.0),
        lip_upper=rng.uniform(1.5, 4.0), lip_lower=rng.uniform(2.0, 5.0),
        lip_colour=_colour(lip), mouth_curve=rng.uniform(-1.5, 2.0),
        hair_style=hair_style, hair_colour=_colour(hair),
        hairline=-rng.uniform(0.5, 0.78) * face_ay, hair_volume=rng.uniform(2.0, 8.0),
        hair_length=rng.uniform(70.0, 130.0), hair_part=rng.uniform(-1, 1), hair_phase=rng.uniform(0, 2 * np.pi),
        glasses=glasses, glasses_colour=_glasses_colour(rng),
        glasses_thick=int(rng.integers(1, 3)), glasses_size=rng.uniform(3.0, 6.0),
        beard=beard, beard_colour=_colour(hair * rng.uniform(0.7, 1.05)), beard_density=rng.uniform(0.55, 0.95),
        moles=moles, freckles=freckles, wrinkles=float(rng.uniform(0, 0.3) ** 2),
    )


def drift_identity(ident, rng, strength):
    """The same person after an age-like drift of ``strength`` (0..1): hair colour, length and
    hairline, beard, glasses and skin texture change; eyes, nose, mouth, face shape and moles stay."""
    s = float(np.clip(strength, 0.0, 1.0))
    hair = np.array(ident.hair_colour)
    if rng.random() < 0.65:
        hair = hair + s * rng.uniform(0.3, 1.0) * (GREY_HAIR - hair)
    else:
        hair = hair * (1 + s * rng.uniform(-0.25, 0.25))
    brows = 0.5 * np.array(ident.brow_colour) + 0.35 * hair
    changes = {"hair_colour": _colour(hair), "brow_colour": _colour(brows)}
    if rng.random() < 0.6:
        changes["hairline"] = ident.hairline - s * rng.uniform(0, 9)
    if rng.random() < 0.45 * s:
        changes["hair_style"] = int(rng.integers(len(HAIR_STYLES)))
    changes["hair_length"] = float(np.clip(ident.hair_length + s * rng.uniform(-40, 40), 60, 140))
    changes["hair_volume"] = float(np.clip(ident.hair_volume + s * rng.uniform(-3, 3), 0.5, 9))
    if rng.random() < 0.5 * s:
        changes["beard"] = int(rng.integers(len(BEARD_STYLES)))
        changes["beard_colour"] = _colour(hair * rng.uniform(0.7, 1.05))
    if rng.random() < 0.5 * s:
        changes["glasses"] = 0 if ident.glasses else int(rng.integers(1, len(GLASSES_STYLES)))
        changes["glasses_colour"] = _glasses_colour(rng)
    changes["wrinkles"] = float(np.clip(ident.wrinkles + s * rng.uniform(0.3, 0.9), 0, 1))
    changes["skin"] = _colour(np.array(ident.skin) * (1 - s * rng.uniform(0, 0.1)) + s * rng.uniform(-6, 6, 3))
    changes["face_ax"] = ident.face_ax + s * rng.uniform(-0.5, 2.5)
    changes["jaw_exp"] = float(np.clip(ident.jaw_exp + s * rng.uniform(-0.3, 0.3), 1.4, 3.4))
    changes["brow_thick"] = float(np.clip(ident.brow_thick * (1 + s * rng.uniform(-0.25, 0.3)), 1.0, 4.5))
    changes["lip_upper"] = ident.lip_upper * (1 - s * rng.uniform(0, 0.35))
    changes["lip_lower"] = ident.lip_lower * (1 - s * rng.uniform(0, 0.35))
    return replace(ident, **changes)


def _one_hot(index, n, weight):
    vec = np.zeros(n)
    vec[index] = weight
    return vec


def signature(ident):
    """A vector of the identity's looks, scaled so that Euclidean distance ~ visual difference."""
    numeric = np.array([
        (ident.face_ax - 38) / 4, (ident.face_ay - 49.5) / 3.5, (ident.jaw_exp - 2.35) / 0.85,
        (ident.eye_dx - 17.75) / 2.75, (ident.eye_v + 7) / 3, (ident.eye_rx - 6) / 1.5,
        (ident.eye_ry - 3.1) / 0.9, ident.eye_tilt / 12, (ident.brow_thick - 2.6) / 1.4,
        (ident.nose_len - 20) / 5, (ident.nose_width - 8.75) / 3.25, (ident.mouth_w - 12.5) / 3.5,
        (ident.mouth_v - 33) / 4, (ident.hairline / ident.face_ay + 0.64) / 0.14,
    ])
    colours = np.concatenate([np.array(ident.skin), np.array(ident.hair_colour), np.array(ident.iris)]) / 60.0
    styles = np.concatenate([_one_hot(ident.hair_style, len(HAIR_STYLES), 1.5),
                             _one_hot(ident.beard, len(BEARD_STYLES), 1.5),
                             _one_hot(ident.glasses, len(GLASSES_STYLES), 1.5)])
    return np.concatenate([numeric, colours, styles])


def nearest_identities(identities, k):
    """Indices (n, k) of each identity's k most similar other identities, nearest first."""
    sig = np.stack([signature(i) for i in identities])
    dist = ((sig[:, None, :] - sig[None, :, :]) ** 2).sum(-1)
    np.fill_diagonal(dist, np.inf)
    return np.argsort(dist, axis=1, kind="stable")[:, :k]
