"""IR ResNet (insightface "fresnet", unit v3, input v1): ``r18`` ``r34`` ``r50`` ``r100``."""
from ..errors import FaceKDError
from . import register_network
from .common import activation, act_type, batchnorm, bn_momentum, conv, data_input, embedding_head

WIDTHS = (64, 128, 256, 512)
UNITS = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3), 50: (3, 4, 14, 3), 100: (3, 13, 30, 3)}


def ir_unit(x, num_filter, stride, dim_match, name, cfg):
    """BN -> Conv3x3 -> BN -> act -> Conv3x3 (stride) -> BN, plus the shortcut.

    The shortcut is the input when ``dim_match``, else Conv 1x1 (stride) + BN.
    """
    mom, ws = bn_momentum(cfg), cfg.get("workspace", 256)
    body = batchnorm(x, f"{name}_bn1", mom)
    body = conv(body, num_filter, (3, 3), (1, 1), (1, 1), name=f"{name}_conv1", workspace=ws)
    body = batchnorm(body, f"{name}_bn2", mom)
    body = activation(body, act_type(cfg), f"{name}_relu1")
    body = conv(body, num_filter, (3, 3), stride, (1, 1), name=f"{name}_conv2", workspace=ws)
    body = batchnorm(body, f"{name}_bn3", mom)
    if dim_match:
        shortcut = x
    else:
        shortcut = conv(x, num_filter, (1, 1), stride, name=f"{name}_conv1sc", workspace=ws)
        shortcut = batchnorm(shortcut, f"{name}_sc", mom)
    return body + shortcut


def _check(cfg):
    depth = cfg.get("num_layers")
    if depth not in UNITS:
        raise FaceKDError(f"config num_layers={depth!r} for network {cfg.get('network')!r}: "
                          f"fresnet supports {', '.join(map(str, UNITS))}")
    for key, supported in (("net_unit", 3), ("net_input", 1), ("net_se", 0)):
        if cfg.get(key, supported) != supported:
            raise FaceKDError(f"config {key}={cfg.get(key)!r}: only {key}={supported} is implemented "
                              "for fresnet; remove the override")
    return UNITS[depth]


@register_network("r18", "r34", "r50", "r100")
def fresnet(cfg):
    """IR ResNet of depth ``cfg.num_layers`` on 112x112 input; head ``cfg.net_output`` (E)."""
    units = _check(cfg)
    body = conv(data_input(), WIDTHS[0], (3, 3), (1, 1), (1, 1), name="conv0",
                workspace=cfg.get("workspace", 256))
    body = batchnorm(body, "bn0", bn_momentum(cfg))
    body = activation(body, act_type(cfg), "relu0")
    for stage, (width, count) in enumerate(zip(WIDTHS, units), start=1):
        body = ir_unit(body, width, (2, 2), False, f"stage{stage}_unit1", cfg)
        for unit in range(2, count + 1):
            body = ir_unit(body, width, (1, 1), True, f"stage{stage}_unit{unit}", cfg)
    return embedding_head(body, cfg, WIDTHS[-1])
