"""Building blocks shared by the backbones: input normalisation, Conv/BN/act, heads, init.

Names follow insightface so checkpoints match by name: ``conv_bn_act(x, ..., name="conv_1")``
creates ``conv_1_conv2d_weight``, ``conv_1_batchnorm_gamma/beta`` and, for PReLU,
``conv_1_relu_gamma``; every head ends in ``pre_fc1`` (FullyConnected) and the
BatchNorm ``fc1`` whose output ``fc1_output`` is the embedding.
"""
import mxnet as mx

from ..errors import FaceKDError

PRELU_INIT = 0.25
ACTIVATIONS = ("prelu", "relu", "sigmoid", "tanh", "softrelu", "softsign")
MXNET_BN_EPS = 1e-3  # MXNet's default BatchNorm eps, used by insightface's MobileFaceNet
EMBEDDING_EPS = 2e-5


# ----------------------------------------------------------------------------- config checks
def positive_int(cfg, key):
    """``cfg[key]`` as a positive int, or FaceKDError naming the config key."""
    value = cfg.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise FaceKDError(f"config {key}={value!r} for network {cfg.get('network')!r}: "
                          "must be a positive integer; fix the network table in config.py")
    return value


def act_type(cfg):
    """The activation of ``cfg.net_act``, validated."""
    value = cfg.get("net_act")
    if value not in ACTIVATIONS:
        raise FaceKDError(f"config net_act={value!r} for network {cfg.get('network')!r}: "
                          f"use one of {', '.join(ACTIVATIONS)}")
    return value


def bn_momentum(cfg):
    """``cfg.bn_mom`` (BatchNorm moving-average momentum), validated to lie in [0, 1)."""
    value = cfg.get("bn_mom")
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 <= value < 1:
        raise FaceKDError(f"config bn_mom={value!r}: must be a number in [0, 1), e.g. 0.9")
    return float(value)


# ----------------------------------------------------------------------------- layers
def data_input(mean=127.5, scale=0.0078125):
    """The ``data`` variable (raw RGB 0..255, NCHW), normalised as ``(x - mean) * scale``."""
    data = mx.sym.Variable("data")
    return (data - mean) * scale


def activation(x, kind, name):
    """Activation ``kind`` named ``name``; PReLU's gamma ``{name}_gamma`` starts at 0.25."""
    if kind == "prelu":
        gamma = mx.sym.Variable(f"{name}_gamma", init=mx.init.Constant(PRELU_INIT))
        return mx.sym.LeakyReLU(data=x, gamma=gamma, act_type="prelu", name=name)
    return mx.sym.Activation(data=x, act_type=kind, name=name)


def conv(x, num_filter, kernel=(1, 1), stride=(1, 1), pad=(0, 0), num_group=1, name=None,
         no_bias=True, workspace=256):
    """A Convolution (no bias by default) named ``name``."""
    return mx.sym.Convolution(data=x, num_filter=num_filter, kernel=kernel, stride=stride, pad=pad,
                              num_group=num_group, no_bias=no_bias, workspace=workspace, name=name)


def batchnorm(x, name, momentum, eps=EMBEDDING_EPS, fix_gamma=False):
    """A BatchNorm named ``name`` (learnable gamma unless ``fix_gamma``)."""
    return mx.sym.BatchNorm(data=x, fix_gamma=fix_gamma, eps=eps, momentum=momentum, name=name)


def conv_bn(x, num_filter, kernel=(1, 1), stride=(1, 1), pad=(0, 0), num_group=1, *, name, cfg):
    """insightface's "Linear": ``{name}_conv2d`` -> ``{name}_batchnorm``, no activation."""
    body = conv(x, num_filter, kernel, stride, pad, num_group, name=f"{name}_conv2d",
                workspace=cfg.get("workspace", 256))
    return batchnorm(body, f"{name}_batchnorm", bn_momentum(cfg), eps=MXNET_BN_EPS)


def conv_bn_act(x, num_filter, kernel=(1, 1), stride=(1, 1), pad=(0, 0), num_group=1, *, name, cfg):
    """insightface's "Conv": :func:`conv_bn` then ``cfg.net_act`` named ``{name}_relu``."""
    body = conv_bn(x, num_filter, kernel, stride, pad, num_group, name=name, cfg=cfg)
    return activation(body, act_type(cfg), f"{name}_relu")


def embedding_bn(x, cfg, eps=EMBEDDING_EPS, fix_gamma=True):
    """The embedding BatchNorm ``fc1`` (output ``fc1_output``)."""
    return batchnorm(x, "fc1", bn_momentum(cfg), eps=eps, fix_gamma=fix_gamma)


# ----------------------------------------------------------------------------- heads
def pre_fc1(body, cfg):
    """Flatten, then the FullyConnected ``pre_fc1`` (``emb_size`` outputs).

    The explicit Flatten (no parameters; FullyConnected flattens anyway) avoids an MXNet 1.9.1
    bug of the fused CPU (MKLDNN) inference graph, where a FullyConnected fed directly by a 4-D
    output fails from the second forward on ("We can't generate TBlob for MKLDNN data"), so the
    saved graphs run fused as they are. ``facekd.embedder.flatten_fc_inputs`` still does the same
    for checkpoints made elsewhere.
    """
    body = mx.sym.Flatten(data=body, name="pre_fc1_flatten")
    return mx.sym.FullyConnected(data=body, num_hidden=positive_int(cfg, "emb_size"), name="pre_fc1")


def head_gdc(body, cfg, channels):
    """GDC: depthwise 7x7 Linear over the map, FullyConnected ``pre_fc1``, BN ``fc1``."""
    body = conv_bn(body, channels, kernel=(7, 7), num_group=channels, name="conv_6dw7_7", cfg=cfg)
    return embedding_bn(pre_fc1(body, cfg), cfg)


def _head_bn_fc(body, cfg, dropout):
    body = batchnorm(body, "bn1", bn_momentum(cfg))
    if dropout:
        body = mx.sym.Dropout(data=body, p=dropout)
    return embedding_bn(pre_fc1(body, cfg), cfg)


def head_e(body, cfg, channels):
    """E: BN ``bn1`` -> Dropout 0.4 -> FullyConnected ``pre_fc1`` -> BN ``fc1``."""
    return _head_bn_fc(body, cfg, dropout=0.4)


def head_fc(body, cfg, channels):
    """FC: E without the dropout."""
    return _head_bn_fc(body, cfg, dropout=0.0)


HEADS = {"GDC": head_gdc, "E": head_e, "FC": head_fc}


def embedding_head(body, cfg, channels):
    """The head named by ``cfg.net_output`` on ``body`` (``channels`` x 7 x 7)."""
    name = cfg.get("net_output")
    if name not in HEADS:
        raise FaceKDError(f"config net_output={name!r} for network {cfg.get('network')!r}: "
                          f"use one of {', '.join(HEADS)}")
    return HEADS[name](body, cfg, channels)


# ----------------------------------------------------------------------------- initialisation
INITIALIZERS = {
    # insightface: Xavier (gaussian, 'out', magnitude 2)
    "insightface": lambda: mx.init.Xavier(rnd_type="gaussian", factor_type="out", magnitude=2),
    # PocketNet: Xavier uniform ('in', magnitude 1), PyTorch's default convolution init U(+-1/sqrt(fan_in))
    "pytorch": lambda: mx.init.Xavier(rnd_type="uniform", factor_type="in", magnitude=1),
}


def make_initializer(kind):
    """The weight initialiser ``kind`` (variables' own ``init`` attributes win): its rule for the
    body; BatchNorm gamma 1, beta 0; PReLU gamma 0.25 (from the variable); ``fc7*_weight`` Normal(0.01)."""
    return mx.init.Mixed([r"^fc7.*_weight$", ".*"], [mx.init.Normal(0.01), INITIALIZERS[kind]()])
