"""MobileFaceNet (insightface "fmobilefacenet"): ``y1`` and ``y2``, blocks from ``cfg.net_blocks``."""
from ..errors import FaceKDError
from . import register_network
from .common import conv_bn, conv_bn_act, data_input, embedding_head

LAST_CHANNELS = 512


def dresidual(x, num_out, num_group, stride, name, cfg):
    """1x1 Conv to ``num_group`` -> depthwise 3x3 Conv (stride) -> 1x1 Linear to ``num_out``."""
    body = conv_bn_act(x, num_group, name=f"{name}_conv_sep", cfg=cfg)
    body = conv_bn_act(body, num_group, kernel=(3, 3), stride=stride, pad=(1, 1), num_group=num_group,
                       name=f"{name}_conv_dw", cfg=cfg)
    return conv_bn(body, num_out, name=f"{name}_conv_proj", cfg=cfg)


def residual(x, num_block, num_out, num_group, name, cfg):
    """``num_block`` stride-1 :func:`dresidual` blocks, each with the identity added back."""
    for i in range(num_block):
        x = dresidual(x, num_out, num_group, (1, 1), f"{name}_block{i}", cfg) + x
    return x


def _blocks(cfg):
    blocks = cfg.get("net_blocks")
    if (not isinstance(blocks, (list, tuple)) or len(blocks) != 4
            or not all(isinstance(b, int) and not isinstance(b, bool) and b >= 0 for b in blocks)
            or blocks[0] < 1):
        raise FaceKDError(f"config net_blocks={blocks!r} for network {cfg.get('network')!r}: "
                          "expected 4 non-negative integers with the first >= 1, e.g. [1, 4, 6, 2]")
    return blocks


@register_network("y1", "y2")
def mobilefacenet(cfg):
    """MobileFaceNet on 112x112 input; head ``cfg.net_output`` (GDC) to ``cfg.emb_size``."""
    blocks = _blocks(cfg)
    body = conv_bn_act(data_input(), 64, kernel=(3, 3), stride=(2, 2), pad=(1, 1), name="conv_1", cfg=cfg)
    if blocks[0] == 1:
        body = conv_bn_act(body, 64, kernel=(3, 3), pad=(1, 1), num_group=64, name="conv_2_dw", cfg=cfg)
    else:
        body = residual(body, blocks[0], 64, 64, "res_2", cfg)
    body = dresidual(body, 64, 128, (2, 2), "dconv_23", cfg)
    body = residual(body, blocks[1], 64, 128, "res_3", cfg)
    body = dresidual(body, 128, 256, (2, 2), "dconv_34", cfg)
    body = residual(body, blocks[2], 128, 256, "res_4", cfg)
    body = dresidual(body, 128, 512, (2, 2), "dconv_45", cfg)
    body = residual(body, blocks[3], 128, 256, "res_5", cfg)
    body = conv_bn_act(body, LAST_CHANNELS, name="conv_6sep", cfg=cfg)
    return embedding_head(body, cfg, LAST_CHANNELS)
