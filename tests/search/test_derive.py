"""Genotype derivation on hand-made architecture weights, and the heat-map PNG."""
import numpy as np
import pytest

from facekd.search.derive import derive, derive_cell, softmax
from facekd.search.heatmap import write_heatmap
from facekd.search.space import PRIMITIVES, edge_label, edges, num_edges
from facekd.symbols import genotypes

K = len(PRIMITIVES)
P = {name: i for i, name in enumerate(PRIMITIVES)}


def _weights(rows):
    """(edges x primitives) softmax weights: each row {primitive: weight}, the rest shared equally."""
    out = np.zeros((len(rows), K))
    for r, row in enumerate(rows):
        rest = (1.0 - sum(row.values())) / (K - len(row))
        out[r] = rest
        for name, w in row.items():
            out[r, P[name]] = w
    return out


def test_edges_of_a_cell():
    assert edges(2) == [(0, 0), (0, 1), (1, 0), (1, 1), (1, 2)]
    assert num_edges(4) == 14 == len(edges(4))
    assert edge_label(1, 2) == "n1<-n0" and edge_label(0, 1) == "n0<-in1"


def test_two_strongest_edges_by_their_strongest_op_other_than_none():
    weights = _weights([
        # node 0: in0, in1
        {"none": 0.6, "avg_pool_3x3": 0.2},          # none is the strongest but never kept: avg_pool 0.2
        {"dw_conv_5x5": 0.5},
        # node 1: in0, in1, n0
        {"max_pool_3x3": 0.30, "skip_connect": 0.29},
        {"none": 0.9},                                # edge score: the best of the others, 0.1 / 7
        {"dw_conv_1x1": 0.45},
        # node 2: in0, in1, n0, n1 -- two edges tie at 0.4: the earlier input wins
        {"dw_conv_7x7": 0.4},
        {"dw_conv_3x3": 0.41},
        {"skip_connect": 0.4},
        {"avg_pool_3x3": 0.2},
    ])
    cell = derive_cell(weights, nodes=3)
    assert cell == ((("dw_conv_5x5", 1), ("avg_pool_3x3", 0)),
                    (("dw_conv_1x1", 2), ("max_pool_3x3", 0)),
                    (("dw_conv_3x3", 1), ("dw_conv_7x7", 0)))


def test_derive_takes_raw_alphas_and_ranks_by_their_softmax():
    # edge in0 has the largest raw alpha (3.0) but spread over a strong "none": its softmax weight is lower
    normal = np.zeros((num_edges(1), K))
    normal[0, P["dw_conv_3x3"]], normal[0, P["none"]] = 3.0, 3.0
    normal[1, P["max_pool_3x3"]] = 2.6
    reduce = np.zeros((num_edges(1), K))
    reduce[0, P["skip_connect"]] = 1.0
    g = derive({"normal": normal, "reduce": reduce}, nodes=1, k=1)
    s = softmax(normal)
    assert s[1, P["max_pool_3x3"]] > s[0, P["dw_conv_3x3"]]  # 13.46 / 19.46 against 20.09 / 46.17
    assert g.normal == ((("max_pool_3x3", 1),),) and g.reduce == ((("skip_connect", 0),),)
    assert g.normal_concat == g.reduce_concat == (2,)
    np.testing.assert_allclose(softmax(np.log(_weights([{"none": 0.5}]))), _weights([{"none": 0.5}]))


def test_derived_genotype_is_a_valid_file(tmp_path):
    rng = np.random.default_rng(0)
    alphas = {kind: rng.normal(size=(num_edges(4), K)) for kind in ("normal", "reduce")}
    g = derive(alphas, nodes=4)
    path = genotypes.save(g, str(tmp_path / "g.json"), {"epoch": 1})
    assert genotypes.load(path) == g
    assert all(len(node) == 2 and len({s for _, s in node}) == 2 for node in g.normal + g.reduce)
    assert g.normal_concat == (2, 3, 4, 5)


def test_heatmap_png(tmp_path):
    import matplotlib.image

    rng = np.random.default_rng(0)
    alphas = {kind: rng.normal(size=(num_edges(4), K)) for kind in ("normal", "reduce")}
    weights = {k: softmax(a) for k, a in alphas.items()}
    path = write_heatmap(str(tmp_path / "alphas.png"), weights, derive(alphas, 4), 4, "epoch 1")
    image = matplotlib.image.imread(path)
    assert image.ndim == 3 and image.shape[0] > 200 and image.shape[1] > 600
    assert image[..., :3].std() > 0.05  # not blank
    assert [p.name for p in tmp_path.iterdir()] == ["alphas.png"]  # no temporary left


def test_derive_refuses_a_wrong_shape():
    with pytest.raises(ValueError):
        derive_cell(np.zeros((5, K)), nodes=3)
