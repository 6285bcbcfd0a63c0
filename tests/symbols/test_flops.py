"""FLOP and parameter counting on a tiny symbol counted by hand."""
import mxnet as mx
import pytest

from facekd.errors import FaceKDError
from facekd.symbols.flops import count_flops, count_params, format_flops


def tiny(with_loss=False):
    """data (1,3,8,8) -> conv 3x3 pad 1 to 4 (bias) -> BN -> PReLU -> maxpool 3x3 s2 p1
    -> depthwise 3x3 pad 1 (4 groups, no bias) -> FC 10 [-> fc7 FC 7 -> softmax]."""
    x = mx.sym.Convolution(mx.sym.Variable("data"), num_filter=4, kernel=(3, 3), pad=(1, 1), name="c1")
    x = mx.sym.BatchNorm(x, name="bn")
    x = mx.sym.LeakyReLU(x, act_type="prelu", name="act")
    x = mx.sym.Pooling(x, kernel=(3, 3), stride=(2, 2), pad=(1, 1), pool_type="max", name="pool")
    x = mx.sym.Convolution(x, num_filter=4, num_group=4, kernel=(3, 3), pad=(1, 1), no_bias=True, name="dw")
    x = mx.sym.FullyConnected(x, num_hidden=10, name="fc")
    if with_loss:
        x = mx.sym.FullyConnected(x, num_hidden=7, name="fc7")
        x = mx.sym.SoftmaxOutput(x, mx.sym.Variable("softmax_label"), name="softmax")
    return x


SHAPE = (1, 3, 8, 8)
# c1: 4*8*8 = 256 outputs x 27 MACs = 6912; dw: pool -> 4x4x4 = 64 outputs x 9 MACs = 576;
# fc: 64 inputs x 10 = 640 MACs. 2 per MAC: 2 * (6912 + 576 + 640) = 16256.
CONV_FC = 16256
# + BN 2 x 256 + PReLU 256 + pool 9 x 64 = 512 + 256 + 576 = 1344
POCKETNET = CONV_FC + 1344
# c1 4*27 + 4 bias, BN gamma/beta 8, PReLU 4, dw 4*9, fc 640 + 10
PARAMS = 112 + 8 + 4 + 36 + 650


def test_conv_fc_flops_by_hand():
    assert count_flops(tiny(), SHAPE) == CONV_FC


def test_pocketnet_flops_by_hand():
    assert count_flops(tiny(), SHAPE, mode="pocketnet") == POCKETNET


def test_flops_scale_with_batch():
    assert count_flops(tiny(), (3,) + SHAPE[1:]) == 3 * CONV_FC


def test_params_by_hand_exclude_fc7_label_and_aux():
    assert count_params(tiny(), SHAPE) == PARAMS
    assert count_params(tiny(with_loss=True), SHAPE, softmax_label=(1,)) == PARAMS
    assert count_flops(tiny(with_loss=True), SHAPE, softmax_label=(1,)) == CONV_FC + 2 * 10 * 7


def test_global_pool_counts_the_input_area():
    x = mx.sym.Pooling(mx.sym.Variable("data"), kernel=(1, 1), global_pool=True, pool_type="avg")
    assert count_flops(x, (1, 2, 5, 5), mode="pocketnet") == 2 * 25


def test_bad_mode_and_bad_shape_raise():
    with pytest.raises(FaceKDError, match="mode"):
        count_flops(tiny(), SHAPE, mode="macs")
    with pytest.raises(FaceKDError, match="shape"):
        count_flops(tiny(), (1, 3, 8))


@pytest.mark.parametrize("n,text", [(440_200_000, "440.2M"), (24_179_212_288, "24.2G"),
                                    (13_456, "13.5K"), (512, "512")])
def test_format_flops(n, text):
    assert format_flops(n) == text
