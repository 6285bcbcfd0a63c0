"""The supernet: PocketNet's cell network with every edge mixed, and a margin-softmax head.

The macro structure is the trained network's (``symbols/pocketnet.py``: stem, cells with
reductions at n//3, 2n//3 and n-1, the same tail), as PocketNet searched: a stem of
``stem_multiplier`` x C channels (3 in DARTS and PocketNet's search, 4 in the trained
PocketNet), cells of ``nodes`` mixed nodes that output all their nodes, the operations
and the cell inputs' preprocessing without the BatchNorms' affine parameters. The two
architecture matrices ``alpha_normal`` and ``alpha_reduce`` (edges x primitives,
initialised N(0, 1e-3) as in DARTS) are inputs of the graph, shared by every cell of
their type; their softmax weights the mixed edges. The images may be shrunk inside the
graph (``image_size``, area averaging) to search cheaper; the tail's depthwise conv then
spans whatever map the cells leave (7x7 at 112x112).

The head is any hard-label margin head of the loss registry (``arcface`` by default,
as PocketNet searched), on the identities of the training set.
"""
import mxnet as mx

from .. import losses
from ..errors import FaceKDError, mxnet_cause
from ..symbols import pocketnet
from ..symbols.common import data_input
from ..symbols.shapes import infer_shape
from .space import PRIMITIVES, mixed_edge, num_edges

ALPHAS = {"normal": "alpha_normal", "reduce": "alpha_reduce"}  # cell type -> graph input
ALPHA_INIT_STD = 1e-3
DATA, LABEL = "data", "softmax_label"


def search_cell(s0, s1, c_pp, c_p, c, reduction_prev, reduction, name, cfg, weights, nodes):
    """One mixed cell: every node sums the mixed edges from all earlier states; outputs all nodes."""
    states = list(pocketnet.preprocess(s0, s1, c_pp, c_p, c, reduction_prev, name, cfg, affine=False))
    row = 0
    for j in range(nodes):
        terms = []
        for source in range(2 + j):
            terms.append(mixed_edge(states[source], weights, row, c, pocketnet.edge_stride(reduction, source),
                                    f"{name}_n{j}_e{source}", cfg))
            row += 1
        states.append(mx.sym.add_n(*terms, name=f"{name}_n{j}"))
    return mx.sym.concat(*states[2:], dim=1), nodes


def alpha_variables(nodes):
    """{cell type: the alpha variable (edges x primitives), initialised N(0, 1e-3)}."""
    shape = (num_edges(nodes), len(PRIMITIVES))
    return {kind: mx.sym.Variable(name, shape=shape, init=mx.init.Normal(ALPHA_INIT_STD))
            for kind, name in ALPHAS.items()}


def supernet_body(s):
    """(the cells' output on the stem, its channels), before the tail (settings ``s``: layers,
    init_channels, nodes, stem_multiplier, input_size, image_size, net_act, bn_mom)."""
    weights = {kind: mx.sym.softmax(alpha, axis=1, name=f"{ALPHAS[kind]}_softmax")
               for kind, alpha in alpha_variables(s.nodes).items()}
    body = data_input(scale=1 / 127.5)  # as PocketNet: (x / 255 - 0.5) / 0.5
    if tuple(s.image_size) != tuple(s.input_size):
        body = mx.sym.contrib.AdaptiveAvgPooling2D(body, output_size=tuple(s.image_size), name="resize")
    c_stem = s.stem_multiplier * s.init_channels
    body = pocketnet.stem(body, c_stem, s)

    def make_cell(i, s0, s1, c_pp, c_p, c_cur, reduction_prev, reduction):
        return search_cell(s0, s1, c_pp, c_p, c_cur, reduction_prev, reduction, f"cell{i}", s,
                           weights["reduce" if reduction else "normal"], s.nodes)

    return pocketnet.cell_network(body, c_stem, s.init_channels, s.layers, make_cell)


def final_map(body, s):
    """(height, width) of the cells' output for the dataset's images, or a FaceKDError when the
    sizes do not fit (a factorized reduce needs an even map)."""
    try:
        _, out_shapes, _ = infer_shape(body, data=(1, 3) + tuple(s.input_size))
    except mx.base.MXNetError as exc:
        raise FaceKDError(f"--image-size {s.image_size[0]} with --layers {s.layers}: the cells' feature maps "
                          f"do not fit ({mxnet_cause(exc)}); every reduction halves an even map, so use a "
                          "multiple of 16, e.g. 112 or 56") from None
    return tuple(out_shapes[0][2:])


def supernet_symbol(s):
    """(training symbol: the head's outputs, embedding symbol ``fc1``) of the supernet of settings ``s``."""
    body, channels = supernet_body(s)
    embedding = pocketnet.tail(body, channels, s.emb_size, s, kernel=final_map(body, s))
    return losses.build_head(embedding, mx.sym.Variable(LABEL), s), embedding
