"""PocketNet: one DARTS cell network built from a genotype (``symbols/genotypes.py``).

``pocketnets128|256`` (C=16, 18 cells) and ``pocketnetm128|256`` (C=32, 9 cells) build the
published genotype; ``pocketnet`` builds any genotype, a file written by
``recognition/search.py`` (``--genotype FILE``) or a published name, at the width and
cell count of ``cfg.pocket_channels`` and ``cfg.pocket_cells`` (``--init-channels``,
``--layers``). All BatchNorms here use eps 1e-5 with a learnable gamma (the final one,
``fc1``, included).

The operations, the cell inputs' preprocessing, the macro structure and the tail are
shared with the architecture search (``facekd.search.network``), which builds them
without the BatchNorms' affine parameters (``affine=False``, as DARTS searches): a
searched genotype trains with exactly the operations it was searched with.
"""
import functools
import operator

import mxnet as mx

from ..errors import FaceKDError
from . import genotypes, register_network
from .common import PRELU_INIT, activation, act_type, batchnorm, bn_momentum, conv, data_input, positive_int

BN_EPS = 1e-5
STEM_MULTIPLIER = 4
TAIL_CHANNELS = 512
TAIL_KERNEL = 7  # the tail's depthwise conv spans the whole 7x7 map of a 112x112 input


def _bn(x, name, cfg, affine=True):
    """BatchNorm (eps 1e-5); without ``affine`` its gamma (1) and beta (0) are frozen (lr_mult 0)."""
    if affine:
        return batchnorm(x, name, bn_momentum(cfg), eps=BN_EPS)
    gamma = mx.sym.Variable(f"{name}_gamma", lr_mult=0.0, wd_mult=0.0, init=mx.init.One())
    beta = mx.sym.Variable(f"{name}_beta", lr_mult=0.0, wd_mult=0.0, init=mx.init.Zero())
    return mx.sym.BatchNorm(data=x, gamma=gamma, beta=beta, fix_gamma=True, eps=BN_EPS,
                            momentum=bn_momentum(cfg), name=name)


def _act(x, channels, name, cfg):
    """The operations' activation ``cfg.net_act`` named ``name``.

    With ``cfg.pocket_prelu_conv`` (the architecture search) a PReLU is computed as
    relu(x) + depthwise 1x1 conv of min(x, 0) with the slopes as the conv's weight
    (``{name}_gamma``, shape (C, 1, 1, 1), 0.25): the same function. The search runs MXNet
    without oneDNN (``search.supernet``), where MXNet 1.9.1's PReLU returns the slope gradient
    multiplied by the slope (0.25 x the central difference), and its backward makes the whole
    supernet step 1.4x slower; the conv form's gradients are exact (tests/search/test_mixed_edge.py).
    """
    kind = act_type(cfg)
    if kind != "prelu" or not cfg.get("pocket_prelu_conv"):
        return activation(x, kind, name)
    slopes = mx.sym.Variable(f"{name}_gamma", shape=(channels, 1, 1, 1), init=mx.init.Constant(PRELU_INIT))
    negative = mx.sym.Convolution(data=mx.sym.minimum(x, 0.0), weight=slopes, num_filter=channels,
                                  num_group=channels, kernel=(1, 1), no_bias=True, name=f"{name}_neg")
    return mx.sym.relu(x) + negative


def dw_sep(x, c_in, c_out, kernel, stride, name, cfg, affine=True):
    """act -> depthwise kxk (pad k//2) -> pointwise 1x1 to ``c_out`` -> BN."""
    pad = (kernel // 2, kernel // 2)
    body = _act(x, c_in, f"{name}_act", cfg)
    body = conv(body, c_in, (kernel, kernel), (stride, stride), pad, num_group=c_in, name=f"{name}_dw")
    body = conv(body, c_out, name=f"{name}_pw")
    return _bn(body, f"{name}_bn", cfg, affine)


# oneDNN (MKLDNN) concatenates 4-D maps in channel blocks of 16: in MXNet 1.9.1 its backward fails
# ("could not construct a sub-memory", or a floating point exception that kills the process) for
# some graphs whose parts are not a multiple of 16 wide (train.py --init-channels 4 or 12).
ONEDNN_CONCAT_BLOCK = 16


def channel_concat(parts, widths):
    """Concatenation along the channels; when a part's width is not a multiple of 16 the parts go
    through 5-D (which MXNet concatenates without oneDNN) and back: same values, no parameters.
    (The published PocketNets have parts of 16 and more: their graphs keep the plain concat.)"""
    if all(w % ONEDNN_CONCAT_BLOCK == 0 for w in widths):
        return mx.sym.concat(*parts, dim=1)
    joined = mx.sym.concat(*[mx.sym.expand_dims(p, axis=4) for p in parts], dim=1)
    return mx.sym.reshape(joined, shape=(0, 0, 0, -3))


def factorized_reduce(x, c_in, c_out, name, cfg, affine=True):
    """act, two stride-2 depthwise 1x1 + pointwise branches (the second shifted one pixel), concat, BN."""
    body = _act(x, c_in, f"{name}_act", cfg)
    shifted = mx.sym.slice(body, begin=(None, None, 1, 1), end=(None, None, None, None))
    branches = []
    for i, branch in enumerate((body, shifted), start=1):
        branch = conv(branch, c_in, stride=(2, 2), num_group=c_in, name=f"{name}_dw{i}")
        branches.append(conv(branch, c_out // 2, name=f"{name}_pw{i}"))
    return _bn(channel_concat(branches, (c_out // 2,) * 2), f"{name}_bn", cfg, affine)


def _pool_bn(kind, x, stride, name, cfg, affine, **extra):
    body = mx.sym.Pooling(data=x, kernel=(3, 3), stride=(stride, stride), pad=(1, 1), pool_type=kind,
                          name=f"{name}_pool", **extra)
    return _bn(body, f"{name}_bn", cfg, affine)


def max_pool_bn(x, c, stride, name, cfg, affine=True):
    """Max-pool 3x3 pad 1 (stride) -> BN."""
    return _pool_bn("max", x, stride, name, cfg, affine)


def avg_pool_bn(x, c, stride, name, cfg, affine=True):
    """Average-pool 3x3 pad 1 (stride), the padding not counted in the mean -> BN."""
    return _pool_bn("avg", x, stride, name, cfg, affine, count_include_pad=False)


def skip_connect(x, c, stride, name, cfg, affine=True):
    """Identity, or a factorized reduce when the op runs at stride 2."""
    return x if stride == 1 else factorized_reduce(x, c, c, name, cfg, affine)


def _dw_conv(kernel):
    def op(x, c, stride, name, cfg, affine=True):
        return dw_sep(x, c, c, kernel, stride, name, cfg, affine)
    op.__doc__ = f"Depthwise {kernel}x{kernel} + pointwise 1x1, C -> C (:func:`dw_sep`)."
    return op


# operation name -> builder(x, channels, stride, name, cfg, affine=True); every name of
# genotypes.OPERATIONS (the search adds "none", which it never builds)
OPS = {
    "max_pool_3x3": max_pool_bn,
    "avg_pool_3x3": avg_pool_bn,
    "skip_connect": skip_connect,
    "dw_conv_3x3": _dw_conv(3),
    "dw_conv_5x5": _dw_conv(5),
    "dw_conv_7x7": _dw_conv(7),
    "dw_conv_1x1": _dw_conv(1),
}


def edge_stride(reduction, source):
    """Stride of an operation: 2 in a reduction cell when it reads a cell input, else 1."""
    return 2 if reduction and source < 2 else 1


def preprocess(s0, s1, c_pp, c_p, c, reduction_prev, name, cfg, affine=True):
    """The cell inputs brought to ``c`` channels at the cell's resolution: ``s0`` (``c_pp``
    channels) by a factorized reduce after a reduction cell, else like ``s1`` by dw 1x1 + pw 1x1."""
    if reduction_prev:
        s0 = factorized_reduce(s0, c_pp, c, f"{name}_pre0", cfg, affine)
    else:
        s0 = dw_sep(s0, c_pp, c, 1, 1, f"{name}_pre0", cfg, affine)
    s1 = dw_sep(s1, c_p, c, 1, 1, f"{name}_pre1", cfg, affine)
    return s0, s1


def cell(s0, s1, c_pp, c_p, c, reduction_prev, reduction, name, cfg, genotype):
    """One cell of ``genotype`` on inputs ``s0`` (``c_pp`` channels) and ``s1`` (``c_p``).

    Returns (output, number of concatenated states): the output has that many times ``c`` channels.
    """
    states = list(preprocess(s0, s1, c_pp, c_p, c, reduction_prev, name, cfg))
    nodes, concat = genotype.cell(reduction)
    for j, edges in enumerate(nodes):
        terms = [OPS[op](states[source], c, edge_stride(reduction, source), f"{name}_n{j}_op{k}", cfg)
                 for k, (op, source) in enumerate(edges)]
        states.append(functools.reduce(operator.add, terms))
    return channel_concat([states[i] for i in concat], (c,) * len(concat)), len(concat)


def reduction_cells(n):
    """Indices of the reduction cells among ``n`` cells: n//3, 2n//3 and n-1."""
    return {n // 3, 2 * n // 3, n - 1}


def cell_network(body, c_stem, c, n, make_cell):
    """The stem's output ``body`` (``c_stem`` channels) through ``n`` cells of width ``c``.

    ``make_cell(i, s0, s1, c_pp, c_p, c_cur, reduction_prev, reduction)`` builds cell ``i``
    and returns (output, states concatenated); the width doubles at each reduction cell.
    Returns (the last cell's output, its channels).
    """
    s0 = s1 = body
    c_pp, c_p, c_cur = c_stem, c_stem, c
    reductions, reduction_prev = reduction_cells(n), False
    for i in range(n):
        reduction = i in reductions
        if reduction:
            c_cur *= 2
        out, multiplier = make_cell(i, s0, s1, c_pp, c_p, c_cur, reduction_prev, reduction)
        s0, s1 = s1, out
        c_pp, c_p, reduction_prev = c_p, multiplier * c_cur, reduction
    return s1, c_p


def stem(body, channels, cfg):
    """Conv 3x3 stride 2 to ``channels`` -> BN (no activation)."""
    return _bn(conv(body, channels, (3, 3), (2, 2), (1, 1), name="stem_conv"), "stem_bn", cfg)


def tail(body, channels, emb, cfg, kernel=TAIL_KERNEL):
    """act -> conv 1x1 to 512 -> BN -> act -> depthwise ``kernel`` (no pad) -> BN -> FC to ``emb``
    -> BN ``fc1`` (learnable gamma): the embedding of the cells' output ``body`` (``channels``)."""
    body = _act(body, channels, "tail_act1", cfg)
    body = conv(body, TAIL_CHANNELS, name="tail_conv")
    body = _bn(body, "tail_bn1", cfg)
    body = _act(body, TAIL_CHANNELS, "tail_act2", cfg)
    body = conv(body, TAIL_CHANNELS, tuple(kernel) if isinstance(kernel, tuple) else (kernel, kernel),
                num_group=TAIL_CHANNELS, name="tail_dw")
    body = _bn(body, "tail_bn2", cfg)
    body = mx.sym.FullyConnected(data=body, num_hidden=emb, no_bias=True, name="pre_fc1")
    return batchnorm(body, "fc1", bn_momentum(cfg), eps=BN_EPS, fix_gamma=False)


def network_size(cfg):
    """(cells, width) of a PocketNet config, validated."""
    n, c = positive_int(cfg, "pocket_cells"), positive_int(cfg, "pocket_channels")
    if n < 3 or c % 2:
        raise FaceKDError(f"config pocket_cells={n}, pocket_channels={c}: need at least 3 cells "
                          "and an even channel count (--layers, --init-channels)")
    return n, c


@register_network("pocketnet", "pocketnets128", "pocketnets256", "pocketnetm128", "pocketnetm256",
                  flops_mode="pocketnet", initializer="pytorch")
def pocketnet(cfg):
    """PocketNet with ``cfg.pocket_cells`` cells of width ``cfg.pocket_channels`` of the genotype
    ``cfg.pocket_genotype`` (default: the published one); embedding ``fc1``."""
    if cfg.get("net_output") != "pocket":
        raise FaceKDError(f"config net_output={cfg.get('net_output')!r} for network {cfg.get('network')!r}: "
                          "PocketNet has its own head; use net_output='pocket'")
    n, c = network_size(cfg)
    genotype = genotypes.resolve(cfg.get("pocket_genotype") or genotypes.DEFAULT)
    emb = positive_int(cfg, "emb_size")
    c_stem = STEM_MULTIPLIER * c
    body = stem(data_input(scale=1 / 127.5), c_stem, cfg)

    def make_cell(i, s0, s1, c_pp, c_p, c_cur, reduction_prev, reduction):
        return cell(s0, s1, c_pp, c_p, c_cur, reduction_prev, reduction, f"cell{i}", cfg, genotype)

    body, channels = cell_network(body, c_stem, c, n, make_cell)
    return tail(body, channels, emb, cfg)
