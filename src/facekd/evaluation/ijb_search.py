"""IJB-B / IJB-C 1:N: probe templates searched among gallery templates, scored as insightface does.

Two protocols, chosen with ``--protocol-1n`` (registry :data:`PROTOCOLS_1N`); both take the
L2-normalised template features of the 1:1 protocol and score by cosine.

* ``ijb_1n`` (default), insightface's ``recognition/_evaluation_/ijb/ijb_1n.py``: one gallery
  made of every gallery list (G1 then G2; S1, S2 for IJB-B). Every probe's subject must own
  exactly one gallery template (its mate). rank-k = share of the probes whose mate is among
  the k best-scoring gallery templates. TPIR @ FPIR f: the threshold is the
  ``ceil(probes * f)``-th largest of all probe x non-mate scores; TPIR = share of the
  probes whose mate scores above it (rank not required).
* ``ijb_evals``, insightface's ``ijb_evals.py`` (``evaluation_1N``, ``run_model_test_1N``):
  each gallery on its own, open set. Probes whose subject owns a template of the gallery
  are mated, the others non-mated. rank-k over the mated probes; TPIR @ FPIR f: the
  threshold is the ``max(int(non-mated * f), 1)``-th largest of the non-mated probes' best
  scores, and a mated probe counts when its mate beats every non-mate template and the
  threshold. A mean line sums the rank-k counts of the galleries over all probes and
  averages the TPIRs.

Ranks count the gallery templates scoring strictly above the mate (ties in the probe's
favour; insightface's argsort leaves their order unspecified).
"""
import math
from dataclasses import dataclass

import numpy as np

from ..errors import FaceKDError
from ..registry import Registry

RANKS = (1, 5, 10)
FPIRS = (0.01, 0.1)


@dataclass
class SearchResult:
    gallery: str            # "G1+G2", "G1", "mean of G1, G2"
    protocol: str
    ranks: dict             # k -> identification rate
    tpir: dict              # FPIR -> TPIR
    probes: int             # probe templates searched
    mated: int
    nonmated: int
    gallery_size: int


def lookup(tids, wanted, what):
    """Rows of ``wanted`` template ids in the sorted ``tids``; an unknown template is an error."""
    wanted = np.asarray(wanted, dtype=np.int64)
    pos = np.minimum(np.searchsorted(tids, wanted), len(tids) - 1)
    bad = tids[pos] != wanted
    if bad.any():
        raise FaceKDError(f"{what}: template {wanted[bad][0]} has no features")
    return pos


def mate_positions(probe_subjects, gallery_subjects, gallery):
    """Index of the gallery template of each probe's subject, -1 when the gallery has none."""
    gallery_subjects = np.asarray(gallery_subjects, dtype=np.int64)
    order = np.argsort(gallery_subjects, kind="stable")
    ordered = gallery_subjects[order]
    repeated = ordered[1:][ordered[1:] == ordered[:-1]]
    if repeated.size:
        raise FaceKDError(f"IJB 1:N gallery {gallery}: subject {repeated[0]} has several gallery templates; "
                          f"each subject needs exactly one, as in the IJB gallery lists")
    probe_subjects = np.asarray(probe_subjects, dtype=np.int64)
    pos = np.minimum(np.searchsorted(ordered, probe_subjects), len(ordered) - 1)
    return np.where(ordered[pos] == probe_subjects, order[pos], -1)


@dataclass
class _Scan:
    rank: np.ndarray          # 1 + gallery templates scoring above the mate (mated probes; 0 otherwise)
    mate: np.ndarray          # the mate's score (-inf for non-mated probes)
    best_other: np.ndarray    # best score over the probe's non-mate templates
    top_other: np.ndarray     # the ``keep`` largest probe x non-mate scores, over all probes


def _scan(probe_feats, gallery_feats, mates, keep=0, chunk=2048):
    """One pass over the probe x gallery scores, a block of probes at a time."""
    n = len(probe_feats)
    rank = np.zeros(n, dtype=np.int64)
    mate = np.full(n, -np.inf)
    best_other = np.empty(n)
    top = np.empty(0)
    for s in range(0, n, chunk):
        sims = probe_feats[s:s + chunk] @ gallery_feats.T
        rows = np.arange(len(sims))
        m = mates[s:s + chunk]
        has = m >= 0
        own = np.where(has, sims[rows, np.maximum(m, 0)], -np.inf)
        mate[s:s + chunk] = own
        rank[s:s + chunk] = np.where(has, 1 + (sims > own[:, None]).sum(axis=1), 0)
        others = sims.copy()
        others[rows[has], m[has]] = -np.inf
        best_other[s:s + chunk] = others.max(axis=1)
        if keep:
            values = others[np.isfinite(others)]
            merged = np.concatenate([top, values])
            top = np.partition(merged, merged.size - min(keep, merged.size))[merged.size - min(keep, merged.size):]
    return _Scan(rank, mate, best_other, np.sort(top)[::-1])


def _gallery_feats(tids, tfeats, gallery, name):
    g_ids, g_subjects = gallery
    if len(g_ids) == 0:
        raise FaceKDError(f"IJB 1:N gallery {name} lists no templates")
    return tfeats[lookup(tids, g_ids, f"1:N gallery {name}")], np.asarray(g_subjects, dtype=np.int64)


def search_ijb_1n(tids, tfeats, galleries, probes, ranks=RANKS, fpirs=FPIRS):
    """insightface's ijb_1n.py: one gallery of every list, closed set (see the module docstring)."""
    names = list(galleries)
    label = "+".join(names)
    g_ids = np.concatenate([np.asarray(galleries[g][0], dtype=np.int64) for g in names])
    g_subjects = np.concatenate([np.asarray(galleries[g][1], dtype=np.int64) for g in names])
    g_ids, first = np.unique(g_ids, return_index=True)  # a template listed twice keeps its first subject
    g_feats, g_subjects = _gallery_feats(tids, tfeats, (g_ids, g_subjects[first]), label)
    if len(g_ids) < 2:
        raise FaceKDError(f"IJB 1:N gallery {label} has {len(g_ids)} template; the ijb_1n protocol needs "
                          f"non-mate templates, at least 2")
    p_ids, p_subjects = probes
    p_feats = tfeats[lookup(tids, p_ids, "1:N probe list")]
    mates = mate_positions(p_subjects, g_subjects, label)
    if (mates < 0).any():
        bad = int(np.flatnonzero(mates < 0)[0])
        raise FaceKDError(f"IJB 1:N probe template {p_ids[bad]} (subject {p_subjects[bad]}) has no template "
                          f"in gallery {label}; --protocol-1n ijb_1n searches every probe among all gallery "
                          f"lists (both G1 and G2), use --protocol-1n ijb_evals for an open-set search")
    q = len(p_ids)
    needed = [math.ceil(q * f) for f in fpirs]  # insightface's float product, rounded up
    scan = _scan(p_feats, g_feats, mates, keep=max(needed, default=0))
    rates = {k: float((scan.rank <= k).mean()) for k in ranks}
    tpir = {}
    for f, n_f in zip(fpirs, needed):
        if not 1 <= n_f <= len(scan.top_other):
            raise FaceKDError(f"FPIR {f:g} asks for the {n_f}-th largest of {len(scan.top_other)} non-mate "
                              f"scores; give an FPIR in (0, 1]")
        tpir[f] = float((scan.mate > scan.top_other[n_f - 1]).mean())
    return [SearchResult(label, "ijb_1n", rates, tpir, q, q, 0, len(g_ids))]


def search_ijb_evals(tids, tfeats, galleries, probes, ranks=RANKS, fpirs=FPIRS):
    """insightface's ijb_evals.py: each gallery open-set, then their mean (see the module docstring)."""
    p_ids, p_subjects = probes
    p_feats = tfeats[lookup(tids, p_ids, "1:N probe list")]
    q = len(p_ids)
    results, counts = [], []
    for name, gallery in galleries.items():
        g_feats, g_subjects = _gallery_feats(tids, tfeats, gallery, name)
        mates = mate_positions(p_subjects, g_subjects, name)
        mated = mates >= 0
        n_m, n_nm = int(mated.sum()), int((~mated).sum())
        scan = _scan(p_feats, g_feats, mates)
        hits = {k: int((mated & (scan.rank <= k)).sum()) for k in ranks}
        counts.append(hits)
        rates = {k: hits[k] / n_m if n_m else float("nan") for k in ranks}
        correct = mated & (scan.mate > scan.best_other)
        nonmated_best = np.sort(scan.best_other[~mated])[::-1]
        tpir = {}
        for f in fpirs:
            if not n_m or not n_nm:
                tpir[f] = float("nan")
                continue
            threshold = nonmated_best[min(max(int(n_nm * f) - 1, 0), n_nm - 1)]
            tpir[f] = float((correct & (scan.mate > threshold)).sum() / n_m)
        results.append(SearchResult(name, "ijb_evals", rates, tpir, q, n_m, n_nm, len(g_feats)))
    if len(results) > 1:
        rates = {k: sum(c[k] for c in counts) / q for k in ranks}
        tpir = {f: float(np.mean([r.tpir[f] for r in results])) for f in fpirs}
        results.append(SearchResult(f"mean of {', '.join(galleries)}", "ijb_evals", rates, tpir, q,
                                    sum(r.mated for r in results), sum(r.nonmated for r in results),
                                    sum(r.gallery_size for r in results)))
    return results


PROTOCOLS_1N = Registry("1:N protocol", "--protocol-1n")
PROTOCOLS_1N.register("ijb_1n", search_ijb_1n)
PROTOCOLS_1N.register("ijb_evals", search_ijb_evals)
DEFAULT_PROTOCOL_1N = "ijb_1n"
