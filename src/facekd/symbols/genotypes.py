"""PocketNet cell genotypes: the JSON file the PocketNet builder reads, and the published genotype.

A genotype fixes the two cells of a DARTS cell network. A cell reads two inputs (input
0 and 1: the outputs of the cells k-2 and k-1) and computes intermediate nodes in
order; node j sums operations on earlier states, each given as ``[operation, input]``
where input 0/1 are the cell inputs and input 2 + i is node i. The cell outputs the
concatenation of the nodes listed in ``*_concat`` (inputs numbered the same way).

The file (UTF-8 JSON, one object), as ``recognition/search.py`` writes it::

    {
      "format": "facekd-genotype", "version": 1,
      "normal": [[["dw_conv_3x3", 0], ["dw_conv_1x1", 1]], ...],    one list per node
      "normal_concat": [2, 3, 4, 5],
      "reduce": [[["dw_conv_3x3", 1], ["dw_conv_7x7", 0]], ...],
      "reduce_concat": [2, 3, 4, 5],
      "search": {...}                                               optional, not read by the builder
    }

The order of a node's pairs names the parameters (``cell3_n0_op1_*`` is the second
operation of node 0 of cell 3), so a genotype and its checkpoints stay matched. A file
is untrusted input: it is parsed as data and every field is checked.
"""
import json
import os
from dataclasses import dataclass
from typing import Tuple

from ..errors import FaceKDError
from ..jsonfile import read_json

FORMAT = "facekd-genotype"
VERSION = 1
MAX_BYTES = 1 << 20  # a genotype is a few hundred bytes; refuse anything that is clearly not one
# The operations a genotype may name: the PocketNet primitives except "none", which the
# search relaxes over but a derived cell never keeps.
OPERATIONS = ("max_pool_3x3", "avg_pool_3x3", "skip_connect", "dw_conv_3x3", "dw_conv_5x5",
              "dw_conv_7x7", "dw_conv_1x1")
CELLS = ("normal", "reduce")


@dataclass(frozen=True)
class Genotype:
    """Both cells: per node a tuple of (operation, input) pairs, and the concatenated states."""
    normal: Tuple[Tuple[Tuple[str, int], ...], ...]
    normal_concat: Tuple[int, ...]
    reduce: Tuple[Tuple[Tuple[str, int], ...], ...]
    reduce_concat: Tuple[int, ...]

    def cell(self, reduction):
        """(nodes, concat) of the reduction cell when ``reduction``, else of the normal cell."""
        return (self.reduce, self.reduce_concat) if reduction else (self.normal, self.normal_concat)

    def to_json(self):
        """The genotype as the file's JSON object (without the optional ``search`` record)."""
        out = {"format": FORMAT, "version": VERSION}
        for kind in CELLS:
            nodes, concat = self.cell(kind == "reduce")
            out[kind] = [[[op, source] for op, source in node] for node in nodes]
            out[f"{kind}_concat"] = list(concat)
        return out


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _nodes(value, kind, where):
    if not isinstance(value, list) or not value:
        raise FaceKDError(f"{where}: {kind!r} must be a non-empty list of nodes, got {value!r}; "
                          "write it with recognition/search.py")
    nodes = []
    for j, node in enumerate(value):
        if not isinstance(node, list) or not node:
            raise FaceKDError(f"{where}: {kind} node {j} must be a non-empty list of [operation, input] "
                              f"pairs, got {node!r}")
        pairs = []
        for pair in node:
            if not (isinstance(pair, list) and len(pair) == 2):
                raise FaceKDError(f"{where}: {kind} node {j}: {pair!r} is not an [operation, input] pair")
            op, source = pair
            if op not in OPERATIONS:
                raise FaceKDError(f"{where}: {kind} node {j}: unknown operation {op!r}; "
                                  f"valid: {', '.join(OPERATIONS)}")
            if not _is_int(source) or not 0 <= source < 2 + j:
                raise FaceKDError(f"{where}: {kind} node {j}: input {source!r} must be an integer in "
                                  f"0..{1 + j} (0, 1 the cell inputs, 2 + i node i before it)")
            pairs.append((op, source))
        nodes.append(tuple(pairs))
    return tuple(nodes)


def _concat(value, kind, count, where):
    ok = (isinstance(value, list) and value and all(_is_int(v) and 2 <= v < 2 + count for v in value)
          and len(set(value)) == len(value))
    if not ok:
        raise FaceKDError(f"{where}: '{kind}_concat' must list distinct nodes among 2..{1 + count} "
                          f"(2 + i is node i), got {value!r}")
    return tuple(value)


def from_json(obj, where):
    """The :class:`Genotype` of a parsed genotype file; FaceKDError naming ``where`` and the field at fault."""
    if not isinstance(obj, dict):
        raise FaceKDError(f"{where}: expected a JSON object, got a {type(obj).__name__}; "
                          "write genotypes with recognition/search.py")
    if obj.get("format") != FORMAT:
        raise FaceKDError(f"{where}: 'format' is {obj.get('format')!r}, expected {FORMAT!r}; "
                          "this is not a genotype file of recognition/search.py")
    if obj.get("version") != VERSION:
        raise FaceKDError(f"{where}: genotype file version {obj.get('version')!r} is not supported "
                          f"(this version reads {VERSION}); write it again with this recognition/search.py")
    cells = {}
    for kind in CELLS:
        nodes = _nodes(obj.get(kind), kind, where)
        cells[kind] = nodes
        cells[f"{kind}_concat"] = _concat(obj.get(f"{kind}_concat"), kind, len(nodes), where)
    return Genotype(**cells)


def load(path):
    """The :class:`Genotype` of a genotype JSON file."""
    if not os.path.isfile(path):
        raise FaceKDError(f"genotype file {path} not found; give a file written by recognition/search.py "
                          f"(genotype.json in its --out) or a published genotype ({', '.join(PUBLISHED)})")
    if os.path.getsize(path) > MAX_BYTES:
        raise FaceKDError(f"{path}: {os.path.getsize(path)} bytes is far too large for a genotype file; "
                          "give the genotype.json that recognition/search.py wrote")
    obj = read_json(path, "genotype JSON file", "give the genotype.json that recognition/search.py wrote")
    return from_json(obj, path)


def describe(genotype):
    """One line: ``normal: n0 = dw_conv_3x3(in0) + dw_conv_1x1(in1); ... | reduce: ...``."""
    def name(source):
        return f"in{source}" if source < 2 else f"n{source - 2}"

    parts = []
    for kind in CELLS:
        nodes, concat = genotype.cell(kind == "reduce")
        text = "; ".join(f"n{j} = " + " + ".join(f"{op}({name(s)})" for op, s in node) for j, node in enumerate(nodes))
        parts.append(f"{kind}: {text}; out = concat({', '.join(name(i) for i in concat)})")
    return " | ".join(parts)


def _rows(key, rows, indent):
    pad = " " * indent
    body = f",\n{pad}  ".join(json.dumps(row) for row in rows)
    return f'{pad}{json.dumps(key)}: [\n{pad}  {body}\n{pad}]'


def _search_record(search):
    """The ``search`` record, one line per field; its per-cell weight matrices one row per line."""
    lines = []
    for key, value in search.items():
        if key == "weights" and isinstance(value, dict):
            cells = ",\n".join(_rows(kind, rows, 6) for kind, rows in value.items())
            lines.append(f'    "weights": {{\n{cells}\n    }}')
        else:
            lines.append(f"    {json.dumps(key)}: {json.dumps(value)}")
    return "{\n" + ",\n".join(lines) + "\n  }"


def dumps(genotype, search=None):
    """The file's text: one line per node and per field, then the optional ``search`` record
    (what recognition/search.py saw: epoch, settings, the softmax weights per edge)."""
    lines = []
    for key, value in genotype.to_json().items():
        lines.append(_rows(key, value, 2) if key in CELLS else f"  {json.dumps(key)}: {json.dumps(value)}")
    if search is not None:
        lines.append(f'  "search": {_search_record(search)}')
    return "{\n" + ",\n".join(lines) + "\n}\n"


def save(genotype, path, search=None):
    """Write ``genotype`` (and its ``search`` record) to ``path`` under a temporary name, then rename."""
    from ..atomic import atomic_path

    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        f.write(dumps(genotype, search))
    return path


def resolve(reference):
    """The genotype named by ``reference``: a published genotype's name, or a genotype file path."""
    if reference in PUBLISHED:
        return PUBLISHED[reference]
    return load(reference)


def is_reference(reference):
    """Whether ``reference`` names a published genotype or an existing file (checked before a run)."""
    return isinstance(reference, str) and (reference in PUBLISHED or os.path.isfile(reference))


# ----------------------------------------------------------------------------- published genotypes
# PocketNet's cells (searched with DARTS on CASIA-WebFace), in the file format above. All four
# PocketNet networks (S and M, 128 and 256) use it; they differ in width and cell count.
_POCKETNET = {
    "format": FORMAT, "version": VERSION,
    "normal": [[["dw_conv_3x3", 0], ["dw_conv_1x1", 1]],
               [["dw_conv_3x3", 2], ["dw_conv_5x5", 0]],
               [["dw_conv_3x3", 3], ["dw_conv_3x3", 0]],
               [["dw_conv_3x3", 4], ["skip_connect", 0]]],
    "normal_concat": [2, 3, 4, 5],
    "reduce": [[["dw_conv_3x3", 1], ["dw_conv_7x7", 0]],
               [["skip_connect", 2], ["dw_conv_5x5", 1]],
               [["max_pool_3x3", 0], ["skip_connect", 2]],
               [["max_pool_3x3", 0], ["max_pool_3x3", 1]]],
    "reduce_concat": [2, 3, 4, 5],
}

PUBLISHED = {"pocketnet": from_json(_POCKETNET, "the published PocketNet genotype")}
DEFAULT = "pocketnet"
