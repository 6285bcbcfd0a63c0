"""Reference implementations of the protocols of docs/evaluation.md, written from that page in plain
float64 NumPy and Python loops (no project code), for the evaluation tests to compare with."""
import math

import numpy as np


def unit(v):
    v = np.asarray(v, dtype=np.float64)
    return v / np.sqrt(np.sum(v * v))


# ----------------------------------------------------------------------------- section 3: MegaFace

def reference_rows(probes, labels, distractors, sizes, far):
    """[(n, rank-1, TAR)] for each distractor count n (docs/evaluation.md section 3, steps 2-5)."""
    p = [unit(v) for v in probes]
    d = [unit(v) for v in distractors]
    labels = list(labels)
    out = []
    for n in sizes:
        hits, genuine = 0, []
        for g in range(len(p)):
            for q in range(len(p)):
                if g != q and labels[g] == labels[q]:
                    score = p[q] @ p[g]
                    genuine.append(score)
                    hits += all(score > p[q] @ d[j] for j in range(n))
        used = [q for q in range(len(p)) if labels.count(labels[q]) > 1]
        impostor = np.array([p[q] @ d[j] for q in used for j in range(n)])
        genuine = np.array(genuine)
        # the ROC point with the largest FPR not above ``far``: every threshold, accepting score > t
        best_tar = 0.0
        for t in sorted(set(impostor) | set(genuine), reverse=True) + [-np.inf]:
            if (impostor > t).mean() <= far:
                best_tar = max(best_tar, (genuine > t).mean())
        out.append((n, hits / len(genuine), best_tar))
    return out


# ----------------------------------------------------------------------------- section 4: IJB 1:1

def image_features(orig, flip, detector, use_flip_test, use_norm_score, use_detector_score):
    """Step 4, image by image."""
    out = []
    for i in range(len(orig)):
        v = np.asarray(orig[i], dtype=np.float64)
        if use_flip_test:
            v = v + np.asarray(flip[i], dtype=np.float64)
        if not use_norm_score:
            v = unit(v)
        if use_detector_score:
            v = v * float(detector[i])
        out.append(v)
    return out


def template_features(feats, templates, medias):
    """Steps 5-6: {template: normalised sum over its media of the media's mean image feature}."""
    result = {}
    for t in sorted(set(templates)):
        total = 0.0
        for m in sorted({medias[i] for i in range(len(templates)) if templates[i] == t}):
            members = [feats[i] for i in range(len(templates)) if templates[i] == t and medias[i] == m]
            total = total + np.mean(members, axis=0)
        result[t] = unit(total)
    return result


def roc(labels, scores):
    """Step 8: one point per distinct score (accept score >= s), equal-step inner points dropped,
    (0, 0) in front; returns (fpr, tpr) lists."""
    pos = sum(1 for y in labels if y)
    neg = len(labels) - pos
    points = []
    for s in sorted(set(scores), reverse=True):
        tp = sum(1 for y, v in zip(labels, scores) if y and v >= s)
        fp = sum(1 for y, v in zip(labels, scores) if not y and v >= s)
        points.append((fp, tp))
    kept = [points[0]]
    for i in range(1, len(points) - 1):
        same_fp_step = points[i][0] - points[i - 1][0] == points[i + 1][0] - points[i][0]
        same_tp_step = points[i][1] - points[i - 1][1] == points[i + 1][1] - points[i][1]
        if not (same_fp_step and same_tp_step):
            kept.append(points[i])
    if len(points) > 1:
        kept.append(points[-1])
    kept = [(0, 0)] + kept
    return [fp / neg for fp, _ in kept], [tp / pos for _, tp in kept]


def tar_at(fpr, tpr, far):
    """Step 9: the nearest point's TPR, the last of equally near points."""
    best, best_gap = None, None
    for i, f in enumerate(fpr):
        gap = abs(f - far)
        if best is None or gap <= best_gap:
            best, best_gap = i, gap
    return tpr[best]


def one_to_one(orig, flip, detector, templates, medias, pairs, labels, fars, **options):
    """Pair scores and TAR at each FAR of section 4."""
    feats = image_features(orig, flip, detector, **options)
    tf = template_features(feats, templates, medias)
    scores = [float(tf[a] @ tf[b]) for a, b in pairs]
    fpr, tpr = roc(labels, scores)
    return tf, scores, [tar_at(fpr, tpr, f) for f in fars]


# ----------------------------------------------------------------------------- section 5: IJB 1:N

def first_subjects(rows):
    """A list's templates, each once in increasing order, with the subject of its first row."""
    subject = {}
    for t, s in rows:
        subject.setdefault(t, s)
    return [(t, subject[t]) for t in sorted(subject)]


def ijb_1n(tf, gallery_lists, probe_rows, ranks, fpirs):
    """``ijb_1n`` steps 1-5: {rank k: rate}, {fpir: tpir}."""
    gallery_rows = [row for rows in gallery_lists for row in rows]
    gallery = first_subjects(gallery_rows)
    probes = first_subjects(probe_rows)
    rank_of, mate_scores, nonmate = [], [], []
    for t, s in probes:
        mates = [g for g, gs in gallery if gs == s]
        assert len(mates) == 1
        scores = {g: float(tf[t] @ tf[g]) for g, _ in gallery}
        mate = scores[mates[0]]
        rank_of.append(1 + sum(v > mate for v in scores.values()))
        mate_scores.append(mate)
        nonmate += [v for g, v in scores.items() if g != mates[0]]
    nonmate.sort(reverse=True)
    q = len(probes)
    rates = {k: sum(r <= k for r in rank_of) / q for k in ranks}
    tpir = {f: sum(m > nonmate[math.ceil(q * f) - 1] for m in mate_scores) / q for f in fpirs}
    return rates, tpir


def ijb_evals(tf, gallery_lists, probe_rows, ranks, fpirs):
    """``ijb_evals`` steps 1-7: per gallery (rates, tpir), then the mean line's (rates, tpir)."""
    probes = first_subjects(probe_rows)
    per_gallery, hit_counts = [], []
    for rows in gallery_lists:
        gallery = first_subjects(rows)
        hits = {k: 0 for k in ranks}
        correct_scores, nonmated_best, mated = [], [], 0
        for t, s in probes:
            scores = {g: float(tf[t] @ tf[g]) for g, _ in gallery}
            mates = [g for g, gs in gallery if gs == s]
            if not mates:
                nonmated_best.append(max(scores.values()))
                continue
            mated += 1
            mate = scores[mates[0]]
            rank = 1 + sum(v > mate for v in scores.values())
            for k in ranks:
                hits[k] += rank <= k
            others = [v for g, v in scores.items() if g != mates[0]]
            correct_scores.append(mate if mate > max(others) else None)
        nonmated_best.sort(reverse=True)
        tpir = {}
        for f in fpirs:
            threshold = nonmated_best[max(int(len(nonmated_best) * f) - 1, 0)]
            tpir[f] = sum(1 for m in correct_scores if m is not None and m > threshold) / mated
        per_gallery.append(({k: hits[k] / mated for k in ranks}, tpir))
        hit_counts.append(hits)
    mean = ({k: sum(h[k] for h in hit_counts) / len(probes) for k in ranks},
            {f: float(np.mean([t[f] for _, t in per_gallery])) for f in fpirs})
    return per_gallery, mean
