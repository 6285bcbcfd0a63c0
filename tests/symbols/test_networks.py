"""Backbones: shapes, sizes against the reference parameter and FLOP counts, names, init, normalisation."""
import json

import mxnet as mx
import numpy as np
import pytest

from facekd.config import generate_config
from facekd.errors import FaceKDError
from facekd.symbols import NETWORKS, get_symbol, network_initializer
from facekd.symbols.flops import count_flops, count_params
from facekd.symbols.pocketnet import factorized_reduce

EMB = {"y1": 512, "y2": 256, "r18": 512, "r34": 512, "r50": 512, "r100": 512,
       "pocketnets128": 128, "pocketnets256": 256, "pocketnetm128": 128, "pocketnetm256": 256,
       "pocketnet": 128}  # pocketnet: any genotype (--genotype), PocketNetS-128 by default

# The networks' reference sizes, within 1% (docs/decisions.md, "Networks"), and PocketNet's published
# table: (network, overrides, mode, FLOPs, params)
TABLE = [
    ("y1", {}, "conv_fc", 440.2e6, 1.193e6),
    ("y1", {"emb_size": 128, "net_act": "prelu"}, "conv_fc", 439.8e6, 1.003e6),
    ("y2", {}, "conv_fc", 933.3e6, 2.00e6),
    ("r18", {}, "conv_fc", 5.2e9, 24.0e6),
    ("r34", {}, "conv_fc", 8.9e9, 34.1e6),
    ("r50", {}, "conv_fc", 12.6e9, 43.6e6),
    ("r100", {}, "conv_fc", 24.2e9, 65.16e6),
    ("pocketnets128", {}, "pocketnet", 587.11e6, 925_632),
    ("pocketnets256", {}, "pocketnet", 587.24e6, 991_424),
    ("pocketnetm128", {}, "pocketnet", 1099.02e6, 1_686_656),
    ("pocketnetm256", {}, "pocketnet", 1099.16e6, 1_752_448),
]


def cfg_for(network, **overrides):
    return generate_config(network, "emore", "arcface", **overrides)


def sym_for(network, **overrides):
    return get_symbol(cfg_for(network, **overrides))


def test_registry_holds_every_network():
    assert set(NETWORKS.names()) == set(EMB)


@pytest.mark.parametrize("network", sorted(EMB))
def test_output_is_fc1_with_embedding_shape(network):
    sym = sym_for(network)
    assert sym.list_outputs() == ["fc1_output"]
    _, out_shapes, _ = sym.infer_shape(data=(3, 3, 112, 112))
    assert out_shapes == [(3, EMB[network])]


@pytest.mark.parametrize("network,overrides,mode,flops,params", TABLE,
                         ids=[f"{r[0]}-{r[1].get('emb_size', '')}" for r in TABLE])
def test_sizes_match_reference_table(network, overrides, mode, flops, params):
    sym = sym_for(network, **overrides)
    assert count_params(sym) == pytest.approx(params, rel=0.01)
    assert count_flops(sym, mode=mode) == pytest.approx(flops, rel=0.01)


@pytest.mark.parametrize("network", ["y1", "pocketnets128"])
def test_forward_runs_on_a_batch_of_two(network):
    cfg = cfg_for(network)
    mod = mx.mod.Module(get_symbol(cfg), data_names=["data"], label_names=None, context=mx.cpu())
    mod.bind(data_shapes=[("data", (2, 3, 112, 112))], for_training=True)
    mod.init_params(network_initializer(cfg))
    data = np.random.RandomState(0).uniform(0, 255, (2, 3, 112, 112)).astype(np.float32)
    mod.forward(mx.io.DataBatch([mx.nd.array(data)]), is_train=True)  # batch statistics in the BNs
    out = mod.get_outputs()[0].asnumpy()
    assert out.shape == (2, EMB[network]) and np.isfinite(out).all()
    assert np.abs(out[0] - out[1]).mean() > 0.1 * np.abs(out).mean()


MFN_NAMES = ["conv_1_conv2d_weight", "conv_1_batchnorm_gamma", "conv_1_batchnorm_beta",
             "conv_2_dw_conv2d_weight", "dconv_23_conv_sep_conv2d_weight", "dconv_23_conv_dw_conv2d_weight",
             "dconv_23_conv_proj_batchnorm_gamma", "res_3_block0_conv_sep_conv2d_weight",
             "res_3_block3_conv_proj_conv2d_weight", "res_5_block1_conv_dw_batchnorm_beta",
             "conv_6sep_conv2d_weight", "conv_6dw7_7_conv2d_weight", "conv_6dw7_7_batchnorm_gamma",
             "pre_fc1_weight", "pre_fc1_bias", "fc1_gamma", "fc1_beta"]
RESNET_NAMES = ["conv0_weight", "bn0_gamma", "relu0_gamma", "stage1_unit1_bn1_gamma",
                "stage1_unit1_conv1_weight", "stage1_unit1_bn2_beta", "stage1_unit1_relu1_gamma",
                "stage1_unit1_conv2_weight", "stage1_unit1_bn3_gamma", "stage1_unit1_conv1sc_weight",
                "stage1_unit1_sc_gamma", "stage3_unit30_conv2_weight", "stage4_unit3_bn3_beta",
                "bn1_gamma", "bn1_beta", "pre_fc1_weight", "pre_fc1_bias", "fc1_gamma", "fc1_beta"]


def test_mobilefacenet_parameter_names():
    args = set(sym_for("y1").list_arguments())
    assert set(MFN_NAMES) <= args
    assert "conv_1_relu_gamma" not in args  # relu in the distillation config
    assert "conv_1_relu_gamma" in sym_for("y1", net_act="prelu").list_arguments()
    y2 = set(sym_for("y2").list_arguments())  # blocks [2, 8, 16, 4]: res_2 instead of conv_2_dw
    assert {"res_2_block1_conv_dw_conv2d_weight", "res_4_block15_conv_proj_conv2d_weight"} <= y2
    assert "conv_2_dw_conv2d_weight" not in y2 and "res_4_block16_conv_proj_conv2d_weight" not in y2


def test_resnet_parameter_names_and_unit_counts():
    sym = sym_for("r100")
    args = set(sym.list_arguments())
    assert set(RESNET_NAMES) <= args
    assert "stage2_unit13_conv1_weight" in args and "stage2_unit14_conv1_weight" not in args
    assert "stage2_unit2_conv1sc_weight" not in args  # only the first unit of a stage projects
    assert "fc1_moving_mean" in sym.list_auxiliary_states()


def _attrs(sym, name):
    return next(n.get("attrs", {}) for n in json.loads(sym.tojson())["nodes"] if n["name"] == name)


@pytest.mark.parametrize("network", ["y1", "r18"])
def test_embedding_bn_has_fixed_gamma(network):
    sym = sym_for(network)
    attrs = _attrs(sym, "fc1")
    assert attrs["fix_gamma"] == "True" and float(attrs["eps"]) == 2e-5 and float(attrs["momentum"]) == 0.9


def test_fixed_fc1_gamma_does_not_change_the_output():
    cfg = cfg_for("y1", emb_size=128, net_act="prelu")
    sym = get_symbol(cfg)
    mod = mx.mod.Module(sym, data_names=["data"], label_names=None, context=mx.cpu())
    mod.bind(data_shapes=[("data", (1, 3, 112, 112))], for_training=False)
    mod.init_params(network_initializer(cfg))
    batch = mx.io.DataBatch([mx.nd.full((1, 3, 112, 112), 90.0)])
    mod.forward(batch, is_train=False)
    before = mod.get_outputs()[0].asnumpy()
    args, aux = mod.get_params()
    args["fc1_gamma"] = mx.nd.full(args["fc1_gamma"].shape, 7.0)
    mod.set_params(args, aux)
    mod.forward(batch, is_train=False)
    np.testing.assert_allclose(mod.get_outputs()[0].asnumpy(), before, rtol=1e-6)


def _init_params(cfg, shape=(1, 3, 112, 112)):
    sym = get_symbol(cfg)
    mod = mx.mod.Module(sym, data_names=["data"], label_names=None, context=mx.cpu())
    mod.bind(data_shapes=[("data", shape)], for_training=False)
    mod.init_params(network_initializer(cfg))
    args, aux = mod.get_params()
    return {k: v.asnumpy() for k, v in args.items()}, {k: v.asnumpy() for k, v in aux.items()}


def test_initializer_prelu_bn_and_xavier():
    args, aux = _init_params(cfg_for("y1", emb_size=128, net_act="prelu"))
    prelu = [k for k in args if k.endswith("_relu_gamma")]
    assert prelu and all(np.all(args[k] == 0.25) for k in prelu)
    bn_gammas = [k for k in args if k.endswith("_gamma") and k not in prelu]
    assert all(np.all(args[k] == 1) for k in bn_gammas)
    assert all(np.all(v == 0) for k, v in args.items() if k.endswith("_beta") or k.endswith("_bias"))
    assert all(np.all(v == 0) for k, v in aux.items() if k.endswith("moving_mean"))
    assert all(np.all(v == 1) for k, v in aux.items() if k.endswith("moving_var"))
    # Xavier gaussian, 'out', magnitude 2: std = sqrt(2 / (out_channels * kh * kw))
    w = args["conv_6sep_conv2d_weight"]  # (512, 128, 1, 1)
    assert w.std() == pytest.approx(np.sqrt(2 / 512), rel=0.03)
    w = args["res_4_block0_conv_dw_conv2d_weight"]  # depthwise (256, 1, 3, 3)
    assert w.std() == pytest.approx(np.sqrt(2 / (256 * 9)), rel=0.1)


def test_initializer_pocketnet_prelu_and_uniform_weights():
    args, _ = _init_params(cfg_for("pocketnetm128"))
    prelu = [k for k in args if "_act" in k and k.endswith("_gamma")]
    assert prelu and all(np.all(args[k] == 0.25) for k in prelu)
    w = args["tail_conv_weight"]  # (512, 1024, 1, 1): U(+-1/sqrt(1024)), PyTorch's default conv init
    assert np.abs(w).max() <= 1 / 32 and w.std() == pytest.approx(1 / 32 / np.sqrt(3), rel=0.03)


def test_initializer_fc7_weight_is_normal_001():
    x = mx.sym.FullyConnected(mx.sym.Variable("data"), num_hidden=4000, no_bias=True, name="fc7")
    mod = mx.mod.Module(x, data_names=["data"], label_names=None, context=mx.cpu())
    mod.bind(data_shapes=[("data", (1, 64))], for_training=False)
    mod.init_params(network_initializer(cfg_for("r18")))
    w = mod.get_params()[0]["fc7_weight"].asnumpy()
    assert abs(w.mean()) < 1e-3 and w.std() == pytest.approx(0.01, rel=0.03)


def _first_conv_input(sym, conv_name, data):
    """Evaluate the graph entry feeding ``conv_name`` on ``data``."""
    nodes = json.loads(sym.tojson())["nodes"]
    conv = next(n for n in nodes if n["name"] == conv_name)
    source = nodes[conv["inputs"][0][0]]["name"]
    entry = sym.get_internals()[f"{source}_output"]
    return entry.eval(ctx=mx.cpu(), data=mx.nd.array(data))[0].asnumpy()


@pytest.mark.parametrize("network,conv_name,reference", [
    ("y1", "conv_1_conv2d", lambda x: (x - 127.5) * 0.0078125),
    ("r18", "conv0", lambda x: (x - 127.5) * 0.0078125),
    ("pocketnets128", "stem_conv", lambda x: (x / 255.0 - 0.5) / 0.5),
])
def test_input_is_normalised_inside_the_graph(network, conv_name, reference):
    x = np.array([0, 1, 127.5, 200, 255], dtype=np.float64).reshape(1, 1, 1, 5).repeat(3, axis=1)
    got = _first_conv_input(sym_for(network), conv_name, x.astype(np.float32))
    np.testing.assert_allclose(got, reference(x), rtol=1e-6, atol=1e-6)


def test_factorized_reduce_matches_numpy():
    """PReLU, two stride-2 depthwise+pointwise 1x1 branches (second shifted one pixel), concat, BN."""
    cfg = cfg_for("pocketnets128")
    rng = np.random.RandomState(1)
    c_in, c_out = 3, 4
    x = rng.randn(2, c_in, 6, 6)
    p = {"fr_act_gamma": rng.uniform(0.1, 0.4, c_in),
         "fr_dw1_weight": rng.randn(c_in, 1, 1, 1), "fr_pw1_weight": rng.randn(c_out // 2, c_in, 1, 1),
         "fr_dw2_weight": rng.randn(c_in, 1, 1, 1), "fr_pw2_weight": rng.randn(c_out // 2, c_in, 1, 1),
         "fr_bn_gamma": rng.uniform(0.5, 2, c_out), "fr_bn_beta": rng.randn(c_out)}
    mean, var = rng.randn(c_out), rng.uniform(0.5, 2, c_out)
    sym = factorized_reduce(mx.sym.Variable("data"), c_in, c_out, "fr", cfg)
    exe = sym.bind(mx.cpu(), args={"data": mx.nd.array(x), **{k: mx.nd.array(v) for k, v in p.items()}},
                   aux_states={"fr_bn_moving_mean": mx.nd.array(mean), "fr_bn_moving_var": mx.nd.array(var)})
    got = exe.forward(is_train=False)[0].asnumpy()

    a = np.where(x > 0, x, x * p["fr_act_gamma"][None, :, None, None])
    def branch(z, dw, pw):  # 1x1 depthwise stride 2 then pointwise
        z = z[:, :, ::2, ::2] * dw[:, 0, 0, 0][None, :, None, None]
        return np.einsum("oc,nchw->nohw", pw[:, :, 0, 0], z)
    y = np.concatenate([branch(a, p["fr_dw1_weight"], p["fr_pw1_weight"]),
                        branch(a[:, :, 1:, 1:], p["fr_dw2_weight"], p["fr_pw2_weight"])], axis=1)
    ref = ((y - mean[None, :, None, None]) / np.sqrt(var[None, :, None, None] + 1e-5)
           * p["fr_bn_gamma"][None, :, None, None] + p["fr_bn_beta"][None, :, None, None])
    assert got.shape == (2, c_out, 3, 3)
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("network,overrides,fragment", [
    ("y1", {"net_output": "XYZ"}, "net_output"),
    ("y1", {"net_act": "swish"}, "net_act"),
    ("y1", {"net_blocks": [1, 4, 6]}, "net_blocks"),
    ("y1", {"emb_size": 0}, "emb_size"),
    ("r50", {"num_layers": 51}, "num_layers"),
    ("r50", {"net_unit": 1}, "net_unit"),
    ("r50", {"bn_mom": 1.5}, "bn_mom"),
    ("pocketnets128", {"net_output": "GDC"}, "net_output"),
    ("pocketnets128", {"pocket_channels": 15}, "pocket_channels"),
])
def test_bad_config_raises_one_line_error(network, overrides, fragment):
    with pytest.raises(FaceKDError, match=fragment) as info:
        sym_for(network, **overrides)
    assert "\n" not in str(info.value)
