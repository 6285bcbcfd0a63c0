"""The genotype file format and the PocketNet builder that reads it (train.py --genotype)."""
import hashlib
import json

import mxnet as mx
import pytest

from facekd.config import generate_config
from facekd.errors import FaceKDError
from facekd.symbols import get_symbol, genotypes
from facekd.training.args import parse_args

# Fingerprints of the four published PocketNets as the builder made them before genotypes moved into
# the file format: (sha256 of the sorted "name:shape" lines of arguments and auxiliary states at
# 112x112, sha256 of the graph JSON built under a fresh NameManager).
PUBLISHED_GRAPHS = {
    "pocketnets128": ("095fe85c0b4f4a244fb9aa09784d2df34bbf40ff45826b052b5b66e1d7c4852e",
                      "0a4944fd526440a9622facc14ae01fcc3fb76456bae2f1df7da63bd84d00cb11"),
    "pocketnets256": ("377115130b2810da5ec9db4ea74bc2e7ce3b6f2bb056714f79f72a83a1578975",
                      "c6653b48ff048a797dfdc61fff5e427f33acae2888d8aa5bc1b62a695e3ed942"),
    "pocketnetm128": ("d2e00485a308e8e53ce85174cfb2e6bb1808b34c6fe75fe385129a232b8c5a53",
                      "2a0a335bf7a4bed7ae93d92b5d2c2a8b320bdc7e1fa0566fcc56833104e82116"),
    "pocketnetm256": ("eb9a7347201fe5bc285f206ba8e34750224a933804d6e8eb7acb1ac5e2987b36",
                      "b19ccfcb68006d06519c9b6c6aa6f827e8b8f0f0bdcebb54d0b968ce18404897"),
}


def _fingerprint(network, **overrides):
    with mx.name.NameManager():
        sym = get_symbol(generate_config(network, "emore", "arcface", **overrides))
    args, _, aux = sym.infer_shape(data=(1, 3, 112, 112))
    lines = [f"{n}:{s}" for n, s in zip(sym.list_arguments(), args)]
    lines += [f"aux {n}:{s}" for n, s in zip(sym.list_auxiliary_states(), aux)]
    return (hashlib.sha256("\n".join(sorted(lines)).encode()).hexdigest(),
            hashlib.sha256(sym.tojson().encode()).hexdigest())


@pytest.mark.parametrize("network", sorted(PUBLISHED_GRAPHS))
def test_published_genotype_builds_the_same_graph_as_before(network):
    assert _fingerprint(network) == PUBLISHED_GRAPHS[network]


def test_pocketnet_with_the_published_genotype_file_is_pocketnets128(tmp_path):
    path = genotypes.save(genotypes.PUBLISHED["pocketnet"], str(tmp_path / "published.json"))
    assert _fingerprint("pocketnet", pocket_genotype=path) == _fingerprint("pocketnets128")


# A hand-made genotype: 3 nodes, the normal cell concatenating only nodes 0 and 2.
HANDMADE = {
    "format": "facekd-genotype", "version": 1,
    "normal": [[["skip_connect", 0], ["avg_pool_3x3", 1]],
               [["dw_conv_5x5", 2]],
               [["max_pool_3x3", 3], ["dw_conv_1x1", 0], ["skip_connect", 2]]],
    "normal_concat": [2, 4],
    "reduce": [[["dw_conv_3x3", 0], ["dw_conv_7x7", 1]],
               [["skip_connect", 0], ["max_pool_3x3", 2]],
               [["avg_pool_3x3", 3], ["skip_connect", 1]]],
    "reduce_concat": [2, 3, 4],
}


def _nodes_by_name(sym):
    nodes = json.loads(sym.tojson())["nodes"]
    return nodes, {n["name"]: i for i, n in enumerate(nodes)}


def test_handmade_genotype_file_round_trips_and_builds_its_cells(tmp_path):
    path = tmp_path / "g.json"
    path.write_text(json.dumps(HANDMADE))
    genotype = genotypes.load(str(path))
    assert genotypes.from_json(json.loads(genotypes.dumps(genotype, {"epoch": 1})), "x") == genotype
    c = 4
    sym = get_symbol(generate_config("pocketnet", "emore", "arcface", pocket_genotype=str(path),
                                     pocket_cells=3, pocket_channels=c))
    args, _, _ = sym.infer_shape(data=(2, 3, 112, 112))
    shapes = dict(zip(sym.list_arguments(), args))
    # cell 0 (normal) outputs 2 of its 3 nodes: cell 1 (reduction) reads 2C channels, its output 3 x 2C
    assert shapes["cell1_pre1_dw_weight"] == (2 * c, 1, 1, 1)
    assert shapes["cell2_pre1_dw_weight"] == (3 * 2 * c, 1, 1, 1)
    nodes, index = _nodes_by_name(sym)
    attrs = {n["name"]: n.get("attrs", {}) for n in nodes}
    avg = attrs["cell0_n0_op1_pool"]
    assert avg["pool_type"] == "avg" and avg["count_include_pad"] == "False"
    assert attrs["cell0_n1_op0_dw"]["kernel"] == "(5, 5)" and attrs["cell0_n1_op0_dw"]["stride"] == "(1, 1)"
    assert attrs["cell0_n2_op0_pool"]["pool_type"] == "max"
    # reduction cells: ops on the cell inputs run at stride 2, ops on nodes at stride 1
    assert attrs["cell1_n0_op1_dw"]["kernel"] == "(7, 7)" and attrs["cell1_n0_op1_dw"]["stride"] == "(2, 2)"
    assert attrs["cell1_n1_op0_dw1"]["stride"] == "(2, 2)"  # skip_connect at stride 2: factorized reduce
    assert attrs["cell1_n1_op1_pool"]["stride"] == "(1, 1)"
    # node 0 of cell 0 = skip(in0) + avg_pool(in1): the sum reads the preprocessed input 0 itself
    add = next(n for n in nodes if n["op"] == "elemwise_add"
               and index["cell0_n0_op1_bn"] in [e[0] for e in n["inputs"]])
    assert sorted(nodes[e[0]]["name"] for e in add["inputs"]) == ["cell0_n0_op1_bn", "cell0_pre0_bn"]
    # node 2 sums three operations; the 3rd is the identity of node 0
    assert not any(name.startswith("cell0_n2_op2") for name in index)
    assert "cell0_n3_op0_bn" not in index


def _write(tmp_path, obj=None, text=None):
    path = tmp_path / "genotype.json"
    path.write_text(text if text is not None else json.dumps(obj))
    return str(path)


def _with(**fields):
    return dict(HANDMADE, **fields)


@pytest.mark.parametrize("content,fragment", [
    ("{not json", "not a readable genotype JSON file"),
    ([1, 2], "expected a JSON object"),
    (_with(format="darts"), "'format' is 'darts'"),
    (_with(version=2), "version 2 is not supported"),
    (_with(normal=[]), "'normal' must be a non-empty list"),
    (_with(normal=[[["sep_conv_3x3", 0]]], normal_concat=[2]), "unknown operation 'sep_conv_3x3'"),
    (_with(normal=[[["none", 0]]], normal_concat=[2]), "unknown operation 'none'"),
    (_with(normal=[[["skip_connect", 2]]], normal_concat=[2]), "input 2 must be an integer in 0..1"),
    (_with(normal=[[["skip_connect", True]]], normal_concat=[2]), "input True"),
    (_with(normal=[[["skip_connect"]]], normal_concat=[2]), "is not an [operation, input] pair"),
    (_with(normal_concat=[2, 5]), "'normal_concat' must list distinct nodes among 2..4"),
    (_with(reduce_concat=[2, 2]), "'reduce_concat' must list distinct nodes"),
])
def test_bad_genotype_file_is_one_line_naming_the_file(tmp_path, content, fragment):
    path = _write(tmp_path, text=content) if isinstance(content, str) else _write(tmp_path, content)
    with pytest.raises(FaceKDError) as info:
        genotypes.load(path)
    message = str(info.value)
    assert path in message and fragment in message and "\n" not in message


def test_missing_and_oversized_genotype_files(tmp_path):
    with pytest.raises(FaceKDError, match="not found"):
        genotypes.load(str(tmp_path / "missing.json"))
    big = tmp_path / "big.json"
    big.write_bytes(b" " * (genotypes.MAX_BYTES + 1))
    with pytest.raises(FaceKDError, match="far too large"):
        genotypes.load(str(big))


@pytest.mark.parametrize("argv,fragment", [
    (["--network", "pocketnet", "--genotype", "/nonexistent/genotype.json"],
     "--genotype '/nonexistent/genotype.json' is invalid: it must be a genotype file"),
    (["--network", "pocketnet", "--layers", "2"], "--layers 2 is invalid: it must be an integer >= 3"),
    (["--network", "pocketnet", "--init-channels", "5"], "--init-channels 5 is invalid: it must be an even"),
    (["--network", "y1", "--genotype", "pocketnet"], "--genotype set the cells of a PocketNet network; "
                                                     "--network y1 has none"),
])
def test_train_cell_flags_are_checked(argv, fragment):
    with pytest.raises(FaceKDError) as info:
        parse_args(argv)
    assert fragment in str(info.value)


def test_train_cell_flags_reach_the_builder(tmp_path):
    path = _write(tmp_path, HANDMADE)
    _, cfg = parse_args(["--network", "pocketnet", "--genotype", path, "--layers", "5", "--init-channels", "8"])
    assert (cfg.pocket_genotype, cfg.pocket_cells, cfg.pocket_channels) == (path, 5, 8)
    names = set(get_symbol(cfg).list_arguments())
    # 5 cells, reductions at 1, 3 and 4: cell 2 is normal, its node 2's third op is an identity
    assert "cell2_n2_op1_pw_weight" in names and not any(n.startswith("cell2_n2_op2") for n in names)
    assert "cell4_n2_op0_bn_gamma" in names and "cell5_pre0_bn_gamma" not in names
