"""The repairs of the exported graph, on a hand-made network checked against a float64 NumPy forward.

The network has the three things MXNet 1.9.1's ONNX converters get wrong: a BatchNorm with
fix_gamma=True and a gamma that is not 1, a PReLU on a map whose width equals its channel
count (numpy-style broadcasting then silently scales the width axis), and a FullyConnected
on a 4-D map. Exported with the repairs, onnxruntime computes the NumPy numbers; without them
it does not (so the test can fail).
"""
import mxnet as mx
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from facekd.deploy.onnx_export import ONNX_REPAIRS, export_onnx, input_normalisation, prelu_input_ranks
from facekd.deploy.quantize import input_path_first
from facekd.deploy.slim import SlimModel
from facekd.symbols.common import data_input

from deployhelpers import run_onnxruntime

C, H, W, D = 4, 4, 4, 5  # W == C: the broadcasting bug gives numbers, not an error
BN_EPS, FC1_EPS = 1e-3, 2e-5


def tiny_network():
    x = data_input()
    x = mx.sym.Convolution(x, num_filter=C, kernel=(3, 3), pad=(1, 1), no_bias=True, name="c0")
    x = mx.sym.BatchNorm(x, fix_gamma=True, eps=BN_EPS, name="bn0")
    x = mx.sym.LeakyReLU(x, gamma=mx.sym.Variable("act_gamma"), act_type="prelu", name="act")
    x = mx.sym.FullyConnected(x, num_hidden=D, name="pre_fc1")  # on the 4-D map, no Flatten
    return mx.sym.BatchNorm(x, fix_gamma=True, eps=FC1_EPS, name="fc1")


def tiny_weights(seed=0):
    rng = np.random.RandomState(seed)
    arg = {"c0_weight": rng.randn(C, 3, 3, 3), "bn0_gamma": rng.uniform(0.3, 3, C), "bn0_beta": rng.randn(C) * 0.1,
           "act_gamma": np.array([0.05, 0.5, 1.5, -0.4]), "pre_fc1_weight": rng.randn(D, C * H * W) * 0.2,
           "pre_fc1_bias": rng.randn(D) * 0.1, "fc1_gamma": rng.uniform(0.3, 3, D), "fc1_beta": rng.randn(D) * 0.1}
    aux = {"bn0_moving_mean": rng.randn(C) * 0.1, "bn0_moving_var": rng.uniform(0.5, 2, C),
           "fc1_moving_mean": rng.randn(D) * 0.1, "fc1_moving_var": rng.uniform(0.5, 2, D)}
    return arg, aux


def numpy_forward(images, arg, aux):
    """float64 forward as MXNet defines it: fix_gamma BatchNorms scale by 1, PReLU slopes per channel."""
    x = (np.asarray(images, dtype=np.float64) - 127.5) * 0.0078125
    pad = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    w = arg["c0_weight"]
    z = np.zeros((len(x), C, H, W))
    for i in range(H):
        for j in range(W):
            z[:, :, i, j] = np.einsum("nckl,ockl->no", pad[:, :, i:i + 3, j:j + 3], w)
    per_channel = (slice(None), None, None)  # (C,) -> (C, 1, 1)
    z = (z - aux["bn0_moving_mean"][per_channel]) / np.sqrt(aux["bn0_moving_var"] + BN_EPS)[per_channel] \
        + arg["bn0_beta"][per_channel]
    z = np.where(z > 0, z, arg["act_gamma"][per_channel] * z)
    y = z.reshape(len(z), -1) @ arg["pre_fc1_weight"].T + arg["pre_fc1_bias"]
    return (y - aux["fc1_moving_mean"]) / np.sqrt(aux["fc1_moving_var"] + FC1_EPS) + arg["fc1_beta"]


def slim_model(arg, aux):
    nd = lambda d: {k: mx.nd.array(v) for k, v in d.items()}  # noqa: E731
    return SlimModel(tiny_network(), nd(arg), nd(aux))


def images(n=3, seed=1):
    return np.random.RandomState(seed).uniform(0, 255, (n, 3, H, W)).astype(np.float32)


def test_numpy_reference_is_what_mxnet_computes():
    arg, aux = tiny_weights()
    module = mx.mod.Module(tiny_network(), data_names=["data"], label_names=None, context=mx.cpu())
    module.bind(data_shapes=[("data", (3, 3, H, W))], for_training=False)
    module.set_params({k: mx.nd.array(v) for k, v in arg.items()}, {k: mx.nd.array(v) for k, v in aux.items()})
    x = images()
    module.forward(mx.io.DataBatch([mx.nd.array(x)]), is_train=False)
    np.testing.assert_allclose(module.get_outputs()[0].asnumpy(), numpy_forward(x, arg, aux), rtol=1e-4, atol=1e-5)


def test_repaired_export_computes_the_numpy_numbers(ort_python, tmp_path):
    arg, aux = tiny_weights()
    path = str(tmp_path / "tiny.onnx")
    info = export_onnx(slim_model(arg, aux), path, (H, W), "tiny")
    names = {r.name: n for r, n in info.repairs}
    assert names["fixed-gamma-as-ones"] == 2 and names["prelu-slope-per-channel"] == 1
    assert names["flatten-before-fc"] == 1
    x = images()
    np.testing.assert_allclose(run_onnxruntime(path, x, tmp_path), numpy_forward(x, arg, aux), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("dropped", ["fixed-gamma-as-ones", "prelu-slope-per-channel"])
def test_without_a_repair_the_numbers_are_wrong(ort_python, tmp_path, dropped):
    from facekd.deploy.onnx_export import GRAPH_REPAIRS

    arg, aux = tiny_weights()
    path = str(tmp_path / "tiny.onnx")
    export_onnx(slim_model(arg, aux), path, (H, W), "tiny",
                graph_repairs=[r for r in GRAPH_REPAIRS if r.name != dropped],
                onnx_repairs=[r for r in ONNX_REPAIRS if r.name != dropped])
    x = images()
    expected = numpy_forward(x, arg, aux)
    got = run_onnxruntime(path, x, tmp_path)
    assert np.abs(got - expected).max() > 0.05 * np.abs(expected).max()


def test_graph_facts():
    sym = tiny_network()
    assert input_normalisation(sym) == (127.5, 0.0078125)
    assert input_normalisation(mx.sym.FullyConnected(mx.sym.Variable("data"), num_hidden=2, name="fc1")) is None
    assert prelu_input_ranks(sym, (H, W)) == {"act": 4}


def test_input_path_first_keeps_a_topological_order():
    """The weights' DequantizeLinear nodes move from the front to just before their use."""
    init = [helper.make_tensor("w_q", TensorProto.INT8, [1, 1, 1, 1], [3]),
            helper.make_tensor("s", TensorProto.FLOAT, [], [0.5]), helper.make_tensor("z", TensorProto.INT8, [], [0]),
            helper.make_tensor("mean", TensorProto.FLOAT, [], [127.5]),
            helper.make_tensor("k_q", TensorProto.INT8, [], [2])]
    nodes = [helper.make_node("DequantizeLinear", ["w_q", "s", "z"], ["w"], name="w_DequantizeLinear"),
             helper.make_node("DequantizeLinear", ["k_q", "s", "z"], ["k"], name="k_DequantizeLinear"),
             helper.make_node("Sub", ["data", "mean"], ["a"], name="_minusscalar0"),
             helper.make_node("Mul", ["a", "k"], ["b"], name="_mulscalar0"),
             helper.make_node("Conv", ["b", "w"], ["out"], name="conv")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("data", TensorProto.FLOAT, [1, 1, 2, 2])],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 1, 2, 2])], init)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    input_path_first(model.graph)
    assert [n.name for n in model.graph.node] == ["_minusscalar0", "k_DequantizeLinear", "_mulscalar0",
                                                   "w_DequantizeLinear", "conv"]
    onnx.checker.check_model(model)  # still topologically sorted
