"""Drawing one face with OpenCV: identity + pose + expression -> pixels on a canvas.

Every shape is built as a polygon in the canonical face frame (see
:mod:`.identity`), lifted onto a rounded head surface, turned by yaw and pitch,
then scaled, rotated and shifted onto the canvas by :class:`Projector`.
Drawing is anti-aliased with sub-pixel coordinates.
"""
import cv2
import numpy as np

from .identity import BEARD_STYLES, GLASSES_STYLES, HAIR_STYLES, NOSE_STYLES, FACE_CX

_SHIFT = 4
_OUTLINE_DEPTH = 0.7  # head depth / width seen in the outline: a turned head looks narrower
_ONE = float(1 << _SHIFT)
_AA = cv2.LINE_AA
_T24 = np.linspace(0, 2 * np.pi, 24, endpoint=False)
_COS24, _SIN24 = np.cos(_T24), np.sin(_T24)
_BALD, _BUZZ, _SHORT, _SIDE, _FRINGE, _LONG, _CURLY = range(len(HAIR_STYLES))
_STUBBLE, _MOUSTACHE, _GOATEE, _FULL = range(1, len(BEARD_STYLES))
_ROUND, _RECT = range(1, len(GLASSES_STYLES))
_LINES, _HOOK, _SHADOW = range(len(NOSE_STYLES))


class Projector:
    """Canonical face coordinates -> canvas pixels for one identity and pose."""

    def __init__(self, ident, pose):
        self.ax = ident.face_ax
        self.az = 0.95 * ident.face_ax
        self.cos_yaw, self.sin_yaw = np.cos(pose.yaw), np.sin(pose.yaw)
        self.cos_pitch, self.sin_pitch = np.cos(pose.pitch), np.sin(pose.pitch)
        self.k = np.sqrt(self.cos_yaw ** 2 + (_OUTLINE_DEPTH * self.sin_yaw) ** 2)  # the yaw-like squash
        r = np.deg2rad(pose.roll)
        self.m = pose.scale * np.array([[np.cos(r), -np.sin(r)], [np.sin(r), np.cos(r)]])
        self.t = np.array([FACE_CX + pose.dx, ident.face_cy + pose.dy])
        self.scale = pose.scale
        self.roll = pose.roll
        self.yaw = pose.yaw

    def depth(self, u):
        return self.az * np.sqrt(np.clip(1 - (np.asarray(u) / (1.1 * self.ax)) ** 2, 0, 1))

    def _canvas(self, big_u, big_v):
        pts = np.stack([big_u, big_v], axis=-1) @ self.m.T + self.t
        return pts.reshape(-1, 2)

    def surface(self, u, v, dz=0.0):
        """Points on the face surface (``dz`` lifts them, e.g. the nose) -> (n, 2) canvas."""
        u = np.asarray(u, dtype=np.float64)
        z = self.depth(u) + dz
        big_u = u * self.cos_yaw + z * self.sin_yaw
        big_v = np.asarray(v) * self.cos_pitch + (z - 0.8 * self.az) * self.sin_pitch
        return self._canvas(big_u, big_v)

    def silhouette(self, u, v):
        """Points of the head's outline (which stays the outline when the head turns)."""
        return self._canvas(np.asarray(u) * self.k, np.asarray(v, dtype=np.float64))

    def around(self, angle, radius, v):
        """Points at ``angle`` (radians, 0 = front) around a vertical head cylinder of ``radius``."""
        a = np.asarray(angle) + self.yaw
        return self._canvas(radius * np.sin(a), np.asarray(v, dtype=np.float64)), np.cos(a)


def _fixed(pts):
    return np.round(pts * _ONE).astype(np.int32)


def _fill(img, pts, colour):
    cv2.fillPoly(img, [_fixed(pts)], colour, _AA, _SHIFT)


def _stroke(img, pts, colour, width, closed=False):
    cv2.polylines(img, [_fixed(pts)], closed, colour, max(1, int(round(width))), _AA, _SHIFT)


def _ellipse(u0, v0, rx, ry, angle_deg=0.0):
    a = np.deg2rad(angle_deg)
    x, y = rx * _COS24, ry * _SIN24
    return u0 + x * np.cos(a) - y * np.sin(a), v0 + x * np.sin(a) + y * np.cos(a)


def _shade(colour, factor, add=0.0):
    return tuple(min(255.0, max(0.0, c * factor + add)) for c in colour)


def _mix(a, b, w):
    return tuple(x * (1 - w) + y * w for x, y in zip(a, b))


def _outline(ident, n=48, grow=0.0, grow_top=None):
    """Canonical outline of the head: superellipse, rounder above, jaw-shaped below."""
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    c, s = np.cos(t), np.sin(t)
    lower = s > 0
    exp = np.where(lower, ident.jaw_exp, ident.cheek_exp)
    ax = ident.face_ax + grow
    ay = np.where(lower, ident.face_ay + grow, ident.face_ay + (grow if grow_top is None else grow_top))
    u = ax * np.sign(c) * np.abs(c) ** (2 / exp)
    v = ay * np.sign(s) * np.abs(s) ** (2 / exp)
    return u, v


def _temple_v(ident):
    return ident.eye_v - 4.0


def _hair_outer(ident, u_span, volume, bumps):
    """Top contour of the hair, from the right temple over the head to the left temple."""
    ax, ay, e = ident.face_ax + volume, ident.face_ay + volume, ident.cheek_exp
    u = np.linspace(u_span, -u_span, 25)
    v = -ay * np.clip(1 - np.abs(u / ax) ** e, 0, 1) ** (1 / e)
    if bumps:
        v = v - bumps * np.abs(np.sin(u * 0.45 + ident.hair_phase))
        u = u * (1 + 0.04 * np.abs(np.sin(u * 0.3 + ident.hair_phase)))
    return u, np.minimum(v, _temple_v(ident))


def _hairline(ident):
    """Canonical hairline across the forehead, left to right (None for no hair on top)."""
    style, ax, tv = ident.hair_style, ident.face_ax, _temple_v(ident)
    u = np.linspace(-ax, ax, 21)
    r = np.abs(u / ax)
    if style == _FRINGE:
        top = ident.eye_v - ident.brow_gap - 4.0
        v = top + (tv - top) * r ** 5 + 1.5 * np.abs(np.sin(u * 0.9 + ident.hair_phase))
    elif style == _BALD:
        top = -0.93 * ident.face_ay
        v = top + (tv - top) * r ** 1.5
    else:
        v = ident.hairline + (tv - ident.hairline) * r ** 3
        if style == _SIDE:
            v = v + 5.0 * ident.hair_part * (u / ax) * (1 - r)
    return u, v


def _draw_long_hair(img, ident, proj, colour):
    vol = ident.hair_volume + 3.0
    width = ident.face_ax + vol + 3.0
    span = width * 0.999
    u, v = _hair_outer(ident, span, vol, 0.0)
    bottom = ident.hair_length - ident.face_cy + 40.0
    side_u = np.array([-width - 2, -width + 4, width - 4, width + 2])
    side_v = np.array([bottom * 0.6, bottom, bottom, bottom * 0.6])
    pts = np.concatenate([proj.silhouette(u, v), proj.silhouette(side_u, side_v)])
    _fill(img, pts, colour)


def _draw_ears(img, ident, proj, skin, front):
    ear_v = ident.eye_v + 0.6 * ident.ear_size
    for side in (-1.0, 1.0):
        centre, facing = proj.around(side * (np.pi / 2 + 0.12), ident.face_ax + 1.5, ear_v)
        if (facing > 0.05) != front:
            continue
        rx = ident.ear_size * (0.35 + 0.45 * (abs(float(facing)) if front else 0.4))
        ry = ident.ear_size * proj.scale
        cu, cv = centre[0]
        u, v = _ellipse(0.0, 0.0, rx * proj.scale, ry, proj.roll)
        pts = np.stack([u + cu, v + cv], axis=-1)
        _fill(img, pts, _shade(skin, 0.9))
        _stroke(img, pts, _shade(skin, 0.7), 1, closed=True)


def _draw_neck(img, ident, proj, skin):
    w = 0.5 * ident.face_ax
    top, bottom = 0.3 * ident.face_ay, ident.face_ay + 40.0
    pts = proj.silhouette(np.array([-w, w, w * 1.2, -w * 1.2]), np.array([top, top, bottom, bottom]))
    _fill(img, pts, _shade(skin, 0.8))


def _draw_skin_marks(img, ident, proj, skin):
    if ident.freckles:
        f = np.array(ident.freckles)
        pts = proj.surface(f[:, 0], f[:, 1])
        colour = _shade(skin, 0.78)
        for p in pts:
            cv2.circle(img, tuple(int(c) for c in np.round(p * _ONE)), int(0.7 * _ONE), colour, -1, _AA, _SHIFT)
    for mu, mv, mr in ident.moles:
        p = proj.surface(mu, mv)[0]
        cv2.circle(img, tuple(int(c) for c in np.round(p * _ONE)), int(mr * proj.scale * _ONE),
                   _shade(skin, 0.42), -1, _AA, _SHIFT)
    if ident.wrinkles > 0.15:
        colour = _shade(skin, 1 - 0.35 * ident.wrinkles)
        brow_top = ident.eye_v - ident.brow_gap - 5
        for i in range(1 + int(ident.wrinkles * 3)):
            u = np.linspace(-0.45, 0.45, 9) * ident.face_ax
            v = brow_top - 3.2 * i - 1.2 * np.cos(u / ident.face_ax * 3)
            _stroke(img, proj.surface(u, v), colour, 1)
        for side in (-1, 1):
            u = side * np.linspace(ident.nose_width * 0.8, ident.mouth_w + 3, 6)
            v = np.linspace(ident.eye_v + ident.nose_len - 1, ident.mouth_v + 3, 6)
            _stroke(img, proj.surface(u, v), colour, 1)


def _draw_beard(img, ident, proj, skin):
    style = ident.beard
    colour = _mix(skin, ident.beard_colour, ident.beard_density * (0.35 if style == _STUBBLE else 1.0))
    if style in (_FULL, _STUBBLE):
        u, v = _outline(ident, 64, grow=0.5)
        low = v > ident.eye_v + ident.nose_len * 0.55
        u, v = u[low], v[low]
        order = np.argsort(-np.arctan2(v, u))
        u, v = u[order], v[order]
        mw, mv, nv = ident.mouth_w, ident.mouth_v, ident.eye_v + ident.nose_len
        inner_u = np.array([0.7, mw + 4, 0.0, -(mw + 4), -0.7]) * np.array([ident.face_ax, 1, 1, 1, ident.face_ax])
        inner_v = np.array([nv - 2, mv - 2, nv + 3, mv - 2, nv - 2])
        _fill(img, np.concatenate([proj.surface(u, v), proj.surface(inner_u, inner_v)]), colour)
    elif style == _GOATEE:
        chin = ident.face_ay
        u = np.array([-0.6, 0.6, 0.45, 0.0, -0.45]) * ident.mouth_w
        v = ident.mouth_v + np.array([ident.lip_lower + 1, ident.lip_lower + 1, chin * 0.25, chin * 0.3, chin * 0.25])
        v = np.minimum(v, chin - 1.0)
        _fill(img, proj.surface(u, v), colour)


def _draw_moustache(img, ident, proj):
    if ident.beard not in (_MOUSTACHE, _FULL):
        return
    mw, top = ident.mouth_w, ident.mouth_v - ident.lip_upper
    u = np.array([-mw - 2, -mw * 0.5, 0, mw * 0.5, mw + 2, mw * 0.5, 0, -mw * 0.5])
    v = top + np.array([2.5, -1.5, -2, -1.5, 2.5, -4.5, -5, -4.5])
    _fill(img, proj.surface(u, v), _shade(ident.beard_colour, 0.9))


def _draw_mouth(img, ident, proj, expr):
    mw, mv = ident.mouth_w, ident.mouth_v
    u = np.linspace(-mw, mw, 11)
    r = (u / mw) ** 2
    bend = ident.mouth_curve + expr.smile
    line = mv - bend * r + bend * 0.3
    gap = expr.mouth_open * (1 - r)
    upper_top = line - gap / 2 - ident.lip_upper * (1 - r) ** 0.6 - 0.6 * np.exp(-(u / 2.5) ** 2)
    lower_bot = line + gap / 2 + ident.lip_lower * (1 - r) ** 0.7
    lip = ident.lip_colour
    if expr.mouth_open > 0.5:
        _fill(img, proj.surface(np.concatenate([u, u[::-1]]),
                                np.concatenate([line - gap / 2, (line + gap / 2)[::-1]])), (60, 20, 25))
    _fill(img, proj.surface(np.concatenate([u, u[::-1]]), np.concatenate([upper_top, (line - gap / 2)[::-1]])),
          _shade(lip, 0.9))
    _fill(img, proj.surface(np.concatenate([u, u[::-1]]), np.concatenate([line + gap / 2, lower_bot[::-1]])), lip)
    _stroke(img, proj.surface(u, line - gap / 2), _shade(lip, 0.55), 1)


def _draw_nose(img, ident, proj, skin):
    top, tip, w, d = ident.eye_v + 2, ident.eye_v + ident.nose_len, ident.nose_width, ident.nose_depth
    dark = _shade(skin, 0.68)
    t = np.linspace(0, 1, 6)
    lift = d * t ** 1.5
    if ident.nose_style == _SHADOW:
        u = np.concatenate([0.15 * w + 0.35 * w * t, [0.0], -(0.15 * w + 0.35 * w * t[::-1])])
        v = np.concatenate([top + (tip - top) * t, [tip + 1.5], top + (tip - top) * t[::-1]])
        _fill(img, proj.surface(u, v, np.concatenate([lift, [d], lift[::-1]])), _shade(skin, 0.86))
    elif ident.nose_style == _HOOK:
        u = ident.nose_side * np.concatenate([0.2 * w * np.ones(5), [0.45 * w]])
        v = np.concatenate([top + (tip - top) * t[:5], [tip]])
        _stroke(img, proj.surface(u, v, lift), dark, 1)
    else:
        for side in (-1.0, 1.0):
            u = side * (0.18 * w + 0.22 * w * t)
            _stroke(img, proj.surface(u, top + 4 + (tip - top - 4) * t, lift), _shade(skin, 0.8), 1)
    u = np.linspace(-0.5 * w, 0.5 * w, 9)
    v = tip + 1.2 - 1.5 * np.cos(np.linspace(-np.pi / 2, np.pi / 2, 9))
    _stroke(img, proj.surface(u, v, d * (1 - (u / (0.5 * w)) ** 2) * 0.6), dark, 1)
    for side in (-1.0, 1.0):
        nu, nv = _ellipse(side * 0.28 * w, tip + 0.3, 0.16 * w + 0.6, 1.1, side * 15)
        _fill(img, proj.surface(nu, nv, 0.4 * d), _shade(skin, 0.45))


def _draw_eyes(img, ident, proj, expr):
    rx, ry = ident.eye_rx, ident.eye_ry * expr.eye_open
    lid = _shade(ident.brow_colour, 0.7)
    for side in (-1.0, 1.0):
        u0, v0, tilt = side * ident.eye_dx, ident.eye_v, side * ident.eye_tilt
        if expr.eye_open < 0.35:
            u, v = _ellipse(u0, v0, rx, 0.01, tilt)
            _stroke(img, proj.surface(u, v), lid, 1.5 * proj.scale)
            continue
        u, v = _ellipse(u0, v0, rx, ry, tilt)
        _fill(img, proj.surface(u, v), (236.0, 234.0, 228.0))
        ri = min(ident.eye_ry * ident.iris_ratio * 1.5, rx * 0.6)
        gx = u0 + expr.gaze * (rx - ri) * 0.6
        for radius, colour in ((ri, ident.iris), (ri * 0.45, (15.0, 12.0, 12.0))):
            iu, iv = _ellipse(gx, v0, radius, radius)
            iu = np.clip(iu, u0 - rx * 0.95, u0 + rx * 0.95)
            half = ry * np.sqrt(np.clip(1 - ((iu - u0) / rx) ** 2, 0, 1))
            iv = np.clip(iv, v0 - half, v0 + half)
            _fill(img, proj.surface(iu, iv), colour)
        upper = np.r_[12:24, 0]  # t from pi to 2 pi: the upper half of the eye
        _stroke(img, proj.surface(u[upper], v[upper]), lid, max(1.0, proj.scale * 1.3))


def _draw_brows(img, ident, proj, expr):
    t = np.linspace(-1, 1, 9)
    half = ident.brow_len * ident.eye_rx
    for side in (-1.0, 1.0):
        u = side * (ident.eye_dx + half * t)
        base = ident.eye_v - ident.brow_gap - expr.brow_raise - ident.brow_arch * (1 - t ** 2)
        base = base - np.tan(np.deg2rad(ident.brow_tilt)) * half * t  # t runs inner -> outer on both sides
        thick = ident.brow_thick * (1 - 0.45 * np.clip(t, 0, 1))
        pts = proj.surface(np.concatenate([u, u[::-1]]),
                           np.concatenate([base - thick / 2, (base + thick / 2)[::-1]]))
        _fill(img, pts, ident.brow_colour)


def _draw_hair(img, ident, proj, colour):
    style = ident.hair_style
    if style == _BUZZ:
        colour = _mix(colour, ident.skin, 0.45)
    volume = {_BALD: 0.8, _BUZZ: 0.8}.get(style, ident.hair_volume)
    hu, hv = _hairline(ident)
    span = ident.face_ax + volume * 0.8
    ou, ov = _hair_outer(ident, span, volume, 3.0 if style == _CURLY else 0.0)
    pts = np.concatenate([proj.silhouette(ou, ov), proj.surface(hu, hv)])
    _fill(img, pts, colour)
    if style == _SIDE:
        pu = ident.hair_part * ident.face_ax * 0.45
        line_v = np.linspace(ident.hairline - 1, -ident.face_ay * 0.9, 5)
        _stroke(img, proj.surface(np.full(5, pu), line_v), _shade(colour, 0.6), 1)


def _draw_glasses(img, ident, proj):
    if not ident.glasses:
        return
    colour, width = ident.glasses_colour, ident.glasses_thick * proj.scale
    size = ident.eye_rx + ident.glasses_size
    height = ident.eye_ry + ident.glasses_size * 0.9
    inner = []
    for side in (-1.0, 1.0):
        u0, v0 = side * ident.eye_dx, ident.eye_v + 0.5
        if ident.glasses == _ROUND:
            u, v = _ellipse(u0, v0, size, height)
        else:
            c = np.clip(_COS24 * 1.6, -1, 1)
            s = np.clip(_SIN24 * 1.6, -1, 1)
            u, v = u0 + size * c, v0 + height * s
        _stroke(img, proj.surface(u, v, 1.5), colour, width, closed=True)
        inner.append(u0 - side * size)
        temple_u = np.array([u0 + side * size, side * ident.face_ax * 1.02])
        _stroke(img, proj.surface(temple_u, np.array([v0 - 1, v0 - 2]), 1.5), colour, width)
    bridge_u = np.linspace(inner[0], inner[1], 5)
    bridge_v = ident.eye_v - 1 - 1.2 * np.cos(bridge_u / max(1e-6, inner[1]) * np.pi / 2)
    _stroke(img, proj.surface(bridge_u, bridge_v, 2.5), colour, width)


def draw_face(img, ident, pose, expr):
    """Draw the face of ``ident`` in ``pose`` with expression ``expr`` onto RGB uint8 ``img`` (in place)."""
    proj = Projector(ident, pose)
    skin = ident.skin
    hair = ident.hair_colour
    if ident.hair_style == _LONG:
        _draw_long_hair(img, ident, proj, _shade(hair, 0.85))
    _draw_neck(img, ident, proj, skin)
    _draw_ears(img, ident, proj, skin, front=False)
    u, v = _outline(ident)
    _fill(img, proj.silhouette(u, v), skin)
    _draw_ears(img, ident, proj, skin, front=True)
    _draw_skin_marks(img, ident, proj, skin)
    _draw_beard(img, ident, proj, skin)
    _draw_mouth(img, ident, proj, expr)
    _draw_moustache(img, ident, proj)
    _draw_nose(img, ident, proj, skin)
    _draw_eyes(img, ident, proj, expr)
    _draw_brows(img, ident, proj, expr)
    _draw_hair(img, ident, proj, hair)
    _draw_glasses(img, ident, proj)
    return img
