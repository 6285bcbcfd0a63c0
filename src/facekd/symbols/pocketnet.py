"""PocketNet: one generic DARTS cell network built from a genotype.

``pocketnets128|256`` (C=16, 18 cells) and ``pocketnetm128|256`` (C=32, 9 cells),
from ``cfg.pocket_channels`` and ``cfg.pocket_cells``. All BatchNorms here use
eps 1e-5 with a learnable gamma (the final one, ``fc1``, included).
"""
import mxnet as mx

from ..errors import FaceKDError
from . import register_network
from .common import activation, act_type, batchnorm, bn_momentum, conv, data_input, positive_int

BN_EPS = 1e-5
STEM_MULTIPLIER = 4
TAIL_CHANNELS = 512

# Node j of a cell sums two (operation, input) pairs; input 0/1 are the cell inputs
# (outputs of cells k-2 and k-1), input 2 + i is node i. The cell outputs all nodes.
NORMAL = (
    (("dw_conv_3x3", 0), ("dw_conv_1x1", 1)),
    (("dw_conv_3x3", 2), ("dw_conv_5x5", 0)),
    (("dw_conv_3x3", 3), ("dw_conv_3x3", 0)),
    (("dw_conv_3x3", 4), ("skip_connect", 0)),
)
REDUCE = (
    (("dw_conv_3x3", 1), ("dw_conv_7x7", 0)),
    (("skip_connect", 2), ("dw_conv_5x5", 1)),
    (("max_pool_3x3", 0), ("skip_connect", 2)),
    (("max_pool_3x3", 0), ("max_pool_3x3", 1)),
)


def _bn(x, name, cfg):
    return batchnorm(x, name, bn_momentum(cfg), eps=BN_EPS)


def dw_sep(x, c_in, c_out, kernel, stride, name, cfg):
    """act -> depthwise kxk (pad k//2) -> pointwise 1x1 to ``c_out`` -> BN."""
    pad = (kernel // 2, kernel // 2)
    body = activation(x, act_type(cfg), f"{name}_act")
    body = conv(body, c_in, (kernel, kernel), (stride, stride), pad, num_group=c_in, name=f"{name}_dw")
    body = conv(body, c_out, name=f"{name}_pw")
    return _bn(body, f"{name}_bn", cfg)


def factorized_reduce(x, c_in, c_out, name, cfg):
    """act, two stride-2 depthwise 1x1 + pointwise branches (the second shifted one pixel), concat, BN."""
    body = activation(x, act_type(cfg), f"{name}_act")
    shifted = mx.sym.slice(body, begin=(None, None, 1, 1), end=(None, None, None, None))
    branches = []
    for i, branch in enumerate((body, shifted), start=1):
        branch = conv(branch, c_in, stride=(2, 2), num_group=c_in, name=f"{name}_dw{i}")
        branches.append(conv(branch, c_out // 2, name=f"{name}_pw{i}"))
    return _bn(mx.sym.concat(*branches, dim=1), f"{name}_bn", cfg)


def max_pool_bn(x, c, stride, name, cfg):
    """Max-pool 3x3 pad 1 (stride) -> BN."""
    body = mx.sym.Pooling(data=x, kernel=(3, 3), stride=(stride, stride), pad=(1, 1), pool_type="max",
                          name=f"{name}_pool")
    return _bn(body, f"{name}_bn", cfg)


def skip_connect(x, c, stride, name, cfg):
    """Identity, or a factorized reduce when the op runs at stride 2."""
    return x if stride == 1 else factorized_reduce(x, c, c, name, cfg)


OPS = {
    "dw_conv_1x1": lambda x, c, s, name, cfg: dw_sep(x, c, c, 1, s, name, cfg),
    "dw_conv_3x3": lambda x, c, s, name, cfg: dw_sep(x, c, c, 3, s, name, cfg),
    "dw_conv_5x5": lambda x, c, s, name, cfg: dw_sep(x, c, c, 5, s, name, cfg),
    "dw_conv_7x7": lambda x, c, s, name, cfg: dw_sep(x, c, c, 7, s, name, cfg),
    "max_pool_3x3": max_pool_bn,
    "skip_connect": skip_connect,
}


def cell(s0, s1, c_pp, c_p, c, reduction_prev, reduction, name, cfg):
    """One cell on inputs ``s0`` (``c_pp`` channels) and ``s1`` (``c_p``); returns 4C channels."""
    if reduction_prev:
        s0 = factorized_reduce(s0, c_pp, c, f"{name}_pre0", cfg)
    else:
        s0 = dw_sep(s0, c_pp, c, 1, 1, f"{name}_pre0", cfg)
    s1 = dw_sep(s1, c_p, c, 1, 1, f"{name}_pre1", cfg)
    states = [s0, s1]
    for j, edges in enumerate(REDUCE if reduction else NORMAL):
        terms = []
        for k, (op, source) in enumerate(edges):
            stride = 2 if reduction and source < 2 else 1
            terms.append(OPS[op](states[source], c, stride, f"{name}_n{j}_op{k}", cfg))
        states.append(terms[0] + terms[1])
    return mx.sym.concat(*states[2:], dim=1)


def reduction_cells(n):
    """Indices of the reduction cells among ``n`` cells: n//3, 2n//3 and n-1."""
    return {n // 3, 2 * n // 3, n - 1}


@register_network("pocketnets128", "pocketnets256", "pocketnetm128", "pocketnetm256", flops_mode="pocketnet",
                  initializer="pytorch")
def pocketnet(cfg):
    """PocketNet with ``cfg.pocket_cells`` cells of width ``cfg.pocket_channels``; embedding ``fc1``."""
    if cfg.get("net_output") != "pocket":
        raise FaceKDError(f"config net_output={cfg.get('net_output')!r} for network {cfg.get('network')!r}: "
                          "PocketNet has its own head; use net_output='pocket'")
    n, c = positive_int(cfg, "pocket_cells"), positive_int(cfg, "pocket_channels")
    if n < 3 or c % 2:
        raise FaceKDError(f"config pocket_cells={n}, pocket_channels={c}: need at least 3 cells "
                          "and an even channel count")
    emb = positive_int(cfg, "emb_size")
    c_cur = STEM_MULTIPLIER * c
    body = conv(data_input(scale=1 / 127.5), c_cur, (3, 3), (2, 2), (1, 1), name="stem_conv")
    body = _bn(body, "stem_bn", cfg)
    s0 = s1 = body
    c_pp, c_p, c_cur = c_cur, c_cur, c
    reductions, reduction_prev = reduction_cells(n), False
    for i in range(n):
        reduction = i in reductions
        if reduction:
            c_cur *= 2
        out = cell(s0, s1, c_pp, c_p, c_cur, reduction_prev, reduction, f"cell{i}", cfg)
        s0, s1 = s1, out
        c_pp, c_p, reduction_prev = c_p, 4 * c_cur, reduction
    body = activation(s1, act_type(cfg), "tail_act1")
    body = conv(body, TAIL_CHANNELS, name="tail_conv")
    body = _bn(body, "tail_bn1", cfg)
    body = activation(body, act_type(cfg), "tail_act2")
    body = conv(body, TAIL_CHANNELS, (7, 7), num_group=TAIL_CHANNELS, name="tail_dw")
    body = _bn(body, "tail_bn2", cfg)
    body = mx.sym.FullyConnected(data=body, num_hidden=emb, no_bias=True, name="pre_fc1")
    return batchnorm(body, "fc1", bn_momentum(cfg), eps=BN_EPS, fix_gamma=False)
