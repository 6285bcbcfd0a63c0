"""The genotype of the architecture weights, as DARTS derives it.

Per edge the weight of each primitive is the softmax of its row of alpha. For every
intermediate node: each incoming edge is scored by its strongest primitive other than
``none``; the node keeps the ``k`` (2) best-scored edges, each with that primitive,
strongest first (ties go to the earlier input). The cell concatenates all its
intermediate nodes. (PocketNet's search code ranked the edges by the raw alphas; DARTS,
and this module, by the softmax weights, which are comparable between edges.)
"""
import numpy as np

from ..symbols.genotypes import Genotype
from .space import NONE, PRIMITIVES, num_edges

EDGES_PER_NODE = 2


def softmax(alpha):
    """Row-wise softmax of an (edges x primitives) matrix (float64)."""
    a = np.asarray(alpha, dtype=np.float64)
    e = np.exp(a - a.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def derive_cell(weights, nodes, k=EDGES_PER_NODE, primitives=PRIMITIVES):
    """The nodes of one cell (tuples of (primitive, input)) from its softmax weights (edges x primitives)."""
    weights = np.asarray(weights, dtype=np.float64)
    if weights.shape != (num_edges(nodes), len(primitives)):
        raise ValueError(f"weights of shape {weights.shape} for {nodes} nodes and {len(primitives)} primitives")
    keep = [i for i, p in enumerate(primitives) if p != NONE]
    out, row = [], 0
    for j in range(nodes):
        block = weights[row:row + 2 + j][:, keep]  # the 2 + j edges into node j
        row += 2 + j
        best = block.argmax(axis=1)
        strength = block[np.arange(len(block)), best]
        chosen = sorted(range(len(block)), key=lambda i: (-strength[i], i))[:k]
        out.append(tuple((primitives[keep[best[i]]], int(i)) for i in chosen))
    return tuple(out)


def derive(alphas, nodes, k=EDGES_PER_NODE):
    """The :class:`Genotype` of ``alphas`` ({"normal": matrix, "reduce": matrix}, raw alphas)."""
    concat = tuple(range(2, 2 + nodes))
    return Genotype(normal=derive_cell(softmax(alphas["normal"]), nodes, k), normal_concat=concat,
                    reduce=derive_cell(softmax(alphas["reduce"]), nodes, k), reduce_concat=concat)
