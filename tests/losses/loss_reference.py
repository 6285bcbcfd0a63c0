"""Float64 NumPy versions of every loss head, written from the published formulas (docs/fidelity.md).

Gradients are taken by central finite differences of these functions, never from MXNet.
"""
import numpy as np

COS_EPS = 1e-6  # clip of cos θ before arccos (docs/fidelity.md)


def normalize(x):
    x = np.asarray(x, dtype=np.float64)
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def margin_target(c, m1, m2, m3):
    """cos(m1·θ + m2) − m3; where m1·θ + m2 > π the fallback cos θ − cos θ0 − 1 − m3, θ0 = (π − m2)/m1."""
    c = np.asarray(c, dtype=np.float64)
    m2 = np.broadcast_to(np.asarray(m2, dtype=np.float64), c.shape)
    if m1 == 1.0 and not np.any(m2):
        return c - m3
    theta = np.arccos(np.clip(c, -1 + COS_EPS, 1 - COS_EPS))
    angle = m1 * theta + m2
    fallback = c - np.cos((np.pi - m2) / m1) - 1.0
    return np.where(angle > np.pi, fallback, np.cos(angle)) - m3


def unguarded_target(c, m1, m2, m3):
    """The published formula with no guard at all."""
    return np.cos(m1 * np.arccos(c) + m2) - m3


def margin_logits(e, w_unit, y, s, m1, m2, m3):
    cos = normalize(e) @ np.asarray(w_unit, dtype=np.float64).T
    z = s * cos
    rows = np.arange(len(y))
    z[rows, y] = s * margin_target(cos[rows, y], m1, m2, m3)
    return z


def log_softmax(z):
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def cross_entropy(z, y):
    return -log_softmax(z)[np.arange(len(y)), y].mean()


def accuracy(z, y):
    return float((z.argmax(axis=1) == y).mean())


def softmax_loss(e, w, b, y):
    return cross_entropy(e @ w.T + b, y)


def margin_loss(e, w, y, s, m1, m2, m3):
    return cross_entropy(margin_logits(e, normalize(w), y, s, m1, m2, m3), y)


def one_minus_cos(e, t):
    return np.mean(1.0 - np.sum(normalize(e) * normalize(t), axis=1))


def angular_loss(e, w, t, y, s, m, alpha):
    return margin_loss(e, w, y, s, 1.0, m, 0.0) + alpha * one_minus_cos(e, t)


def template_loss(e, w, t, y, s, m, lam):
    return margin_loss(e, w, y, s, 1.0, m, 0.0) + lam * np.mean((normalize(e) - normalize(t)) ** 2)


def triplet_distance(kind, a, b):
    if kind == "L2":
        return np.sum((a - b) ** 2, axis=1)
    return np.arccos(np.clip(np.sum(a * b, axis=1), -1 + COS_EPS, 1 - COS_EPS))


def triplet_margins(t, kind, m_min, m_max):
    ta, tp, tn = np.split(normalize(t), 3)
    gap = np.maximum(triplet_distance(kind, ta, tn) - triplet_distance(kind, ta, tp), 0.0)
    if gap.max() == 0:
        return np.full_like(gap, m_min)
    return m_min + (m_max - m_min) * gap / gap.max()


def triplet_distances(e, kind):
    a, p, n = np.split(normalize(e), 3)
    return triplet_distance(kind, a, p), triplet_distance(kind, a, n)


def triplet_loss(e, t, kind, m_min, m_max):
    d_ap, d_an = triplet_distances(e, kind)
    return np.mean(np.maximum(d_ap - d_an + triplet_margins(t, kind, m_min, m_max), 0.0))


def kd_loss(e, w, t, wt_unit, y, s, m, temperature, alpha):
    zs = margin_logits(e, normalize(w), y, s, 1.0, m, 0.0)
    zt = margin_logits(t, wt_unit, y, s, 1.0, m, 0.0)
    log_q = log_softmax(zt / temperature)
    kl = np.mean(np.sum(np.exp(log_q) * (log_q - log_softmax(zs / temperature)), axis=1))
    return (1 - alpha) * cross_entropy(zs, y) + alpha * temperature ** 2 * kl


def distillation_margins(t, w_unit, y, m_min, m_max):
    c = np.sum(normalize(t) * w_unit[y], axis=1)
    largest = max(c.max(), 1e-12)
    return np.clip(m_min + (m_max - m_min) * c / largest, 0.0, m_max)


def margin_distillation_logits(e, w_unit, t, y, s, m_min, m_max):
    return margin_logits(e, w_unit, y, s, 1.0, distillation_margins(t, w_unit, y, m_min, m_max), 0.0)


def margin_distillation_loss(e, w_unit, t, y, s, m_min, m_max):
    return cross_entropy(margin_distillation_logits(e, w_unit, t, y, s, m_min, m_max), y)


def numeric_grad(f, x, h=1e-6):
    """Central finite differences of the scalar f at x (float64)."""
    x = np.array(x, dtype=np.float64)
    grad = np.zeros_like(x)
    for idx in np.ndindex(*x.shape):
        old = x[idx]
        x[idx] = old + h
        up = f(x)
        x[idx] = old - h
        down = f(x)
        x[idx] = old
        grad[idx] = (up - down) / (2 * h)
    return grad


# ----------------------------------------------------------------------------- Partial FC (sampled softmax)
# The softmax of a sampled head runs over the classes of a sample S only (every class of the
# batch is in S): p_ij = exp(z_ij) / sum_{l in S} exp(z_il) for j in S. Written here on the full
# (B x C) logits with the classes outside S removed from the softmax, and the original class ids.

def restrict(z, sample):
    """The logits of the classes outside ``sample`` set to -inf: they leave every softmax."""
    out = np.full(np.shape(z), -np.inf)
    out[:, sample] = np.asarray(z, dtype=np.float64)[:, sample]
    return out


def sampled_margin_loss(e, w, y, sample, s, m1, m2, m3):
    return cross_entropy(restrict(margin_logits(e, normalize(w), y, s, m1, m2, m3), sample), y)


def sampled_angular_loss(e, w, t, y, sample, s, m, alpha):
    return sampled_margin_loss(e, w, y, sample, s, 1.0, m, 0.0) + alpha * one_minus_cos(e, t)


def sampled_template_loss(e, w, t, y, sample, s, m, lam):
    return sampled_margin_loss(e, w, y, sample, s, 1.0, m, 0.0) + lam * np.mean((normalize(e) - normalize(t)) ** 2)


def sampled_kd_loss(e, w, t, wt_unit, y, sample, s, m, temperature, alpha):
    """Student and teacher distributions both over the sampled classes."""
    zs = restrict(margin_logits(e, normalize(w), y, s, 1.0, m, 0.0), sample)
    zt = restrict(margin_logits(t, wt_unit, y, s, 1.0, m, 0.0), sample)
    log_q, log_p = log_softmax(zt / temperature)[:, sample], log_softmax(zs / temperature)[:, sample]
    kl = np.mean(np.sum(np.exp(log_q) * (log_q - log_p), axis=1))
    return (1 - alpha) * cross_entropy(zs, y) + alpha * temperature ** 2 * kl


def sampled_margin_distillation_loss(e, w_unit, t, y, sample, s, m_min, m_max):
    """The per-sample margins come from the positive centres, which are always in the sample."""
    return cross_entropy(restrict(margin_distillation_logits(e, w_unit, t, y, s, m_min, m_max), sample), y)


def lazy_sgd(w, mom, grad_rows, rows, lr, momentum, wd, rescale):
    """MXNet's lazy SGD with momentum: only ``rows`` (their weights, momentum and decay) move.

    mom[r] = momentum * mom[r] - lr * (rescale * g[r] + wd * w[r]);  w[r] += mom[r]
    """
    w, mom = np.array(w, dtype=np.float64), np.array(mom, dtype=np.float64)
    mom[rows] = momentum * mom[rows] - lr * (rescale * np.asarray(grad_rows, dtype=np.float64) + wd * w[rows])
    w[rows] += mom[rows]
    return w, mom
