"""The search space: PocketNet's eight primitives, the edges of a cell, and the mixed edge.

A cell of ``nodes`` intermediate nodes has an edge from every earlier state into every
node: node j reads the two cell inputs and nodes 0..j-1, so 2 + j edges, ``nodes *
(nodes + 3) / 2`` in all (14 for 4 nodes). The architecture weights of a cell type are
one matrix alpha (edges x primitives), rows in the order of :func:`edges`. An edge is
the *mixed* operation of DARTS: the sum of every primitive on its input weighted by the
softmax of its row of alpha. ``none`` (a zero map) adds nothing and is not built, but
its weight takes part in the softmax.
"""
import mxnet as mx

from ..symbols import genotypes
from ..symbols.pocketnet import OPS

NONE = "none"
# PocketNet's order (its search code's PRIMITIVES): columns of alpha
PRIMITIVES = ("max_pool_3x3", "avg_pool_3x3", "skip_connect", "dw_conv_3x3", "dw_conv_5x5",
              "dw_conv_7x7", "dw_conv_1x1", NONE)
assert set(PRIMITIVES) - {NONE} == set(genotypes.OPERATIONS) == set(OPS) and PRIMITIVES[-1] == NONE


def edges(nodes):
    """[(node, input), ...]: the rows of a cell's alpha matrix, node by node, inputs in order."""
    return [(j, i) for j in range(nodes) for i in range(2 + j)]


def num_edges(nodes):
    return nodes * (nodes + 3) // 2


def edge_label(node, source):
    """How plots and logs name an edge: ``n2<-in0``, ``n2<-n1``."""
    return f"n{node}<-" + (f"in{source}" if source < 2 else f"n{source - 2}")


def mixed_edge(x, weights, row, c, stride, name, cfg):
    """sum over the primitives k of ``weights[row, k]`` * op_k(``x``), every op on ``c`` channels at
    ``stride``, without the BatchNorms' affine parameters; ``weights`` is the softmax of alpha.

    The sum is one matrix product, (1 x K) weights by the (K x size) flattened outputs: its
    gradients are BLAS products too, where K broadcast multiplies would reduce each weight's
    gradient with MXNet's CPU reduction, about 5x slower.
    """
    built = [p for p in PRIMITIVES if p != NONE]
    row_weights = mx.sym.slice(weights, begin=(row, 0), end=(row + 1, len(built)), name=f"{name}_w")
    outs = [OPS[p](x, c, stride, f"{name}_{p}", cfg, affine=False) for p in built]
    flat = mx.sym.concat(*[mx.sym.reshape(o, shape=(1, -1)) for o in outs], dim=0, name=f"{name}_ops")
    return mx.sym.reshape_like(mx.sym.dot(row_weights, flat), outs[0], name=f"{name}_sum")
