"""facekd.checkpoints and facekd.embedder: model argument, checkpoints, the Embedder against a float64 NumPy forward."""

import mxnet as mx
import numpy as np
import pytest

from facekd.errors import FaceKDError
from facekd.checkpoints import load_checkpoint, parse_model_arg, parse_model_list
from facekd.embedder import Embedder

H, W, D = 6, 5, 4
EPS = 2e-5


def tiny_symbol(with_head=True):
    """data -> Flatten -> FullyConnected pre_fc1 -> BatchNorm fc1 [-> fc7 -> softmax]."""
    x = mx.sym.Flatten(mx.sym.Variable("data"))
    x = mx.sym.FullyConnected(x, num_hidden=D, name="pre_fc1")
    x = mx.sym.BatchNorm(x, fix_gamma=True, eps=EPS, momentum=0.9, name="fc1")
    if not with_head:
        return x
    x = mx.sym.FullyConnected(x, num_hidden=3, no_bias=True, name="fc7")
    return mx.sym.SoftmaxOutput(x, name="softmax")


def tiny_params(seed=0):
    rng = np.random.RandomState(seed)
    arg = {"pre_fc1_weight": rng.randn(D, 3 * H * W) * 0.1, "pre_fc1_bias": rng.randn(D),
           "fc1_gamma": rng.rand(D) + 0.5, "fc1_beta": rng.randn(D), "fc7_weight": rng.randn(3, D)}
    aux = {"fc1_moving_mean": rng.randn(D), "fc1_moving_var": rng.rand(D) + 0.5}
    return ({k: mx.nd.array(v) for k, v in arg.items()}, {k: mx.nd.array(v) for k, v in aux.items()})


def numpy_forward(images_nchw, arg, aux):
    """float64 reference: flatten, affine, inference BatchNorm with gamma fixed to 1."""
    x = np.asarray(images_nchw, dtype=np.float64).reshape(len(images_nchw), -1)
    w = arg["pre_fc1_weight"].asnumpy().astype(np.float64)
    z = x @ w.T + arg["pre_fc1_bias"].asnumpy()
    mean, var = aux["fc1_moving_mean"].asnumpy(), aux["fc1_moving_var"].asnumpy()
    return (z - mean) / np.sqrt(var + EPS) + arg["fc1_beta"].asnumpy()


def save(prefix, epoch, symbol, arg, aux):
    mx.model.save_checkpoint(prefix, epoch, symbol, arg, aux)


def test_parse_model_arg():
    assert parse_model_arg("./models/y1-arcface-emore/model,1") == ("./models/y1-arcface-emore/model", 1)
    assert parse_model_arg("a,b/model,12") == ("a,b/model", 12)
    assert parse_model_list("m,1|2|30") == [("m", 1), ("m", 2), ("m", 30)]
    for bad in ("model", "model,", "model,x", ",1", "m,1|2"):
        with pytest.raises(FaceKDError):
            parse_model_arg(bad)


@pytest.mark.parametrize("contexts", [1, 2])
def test_embedder_matches_numpy_forward(contexts):
    arg, aux = tiny_params()
    ctx = [mx.cpu(i) for i in range(contexts)]
    emb = Embedder(tiny_symbol(), arg, aux, ctx, batch_size=4, image_size=(H, W))
    assert emb.emb_size == D
    rng = np.random.RandomState(1)
    images = rng.randint(0, 256, size=(7, H, W, 3)).astype(np.uint8)  # 7 = 4 + partial batch of 3
    expected = numpy_forward(images.transpose(0, 3, 1, 2), arg, aux)
    np.testing.assert_allclose(emb.embed(images), expected, rtol=1e-4, atol=1e-4)
    floats = images.transpose(0, 3, 1, 2).astype(np.float32)
    np.testing.assert_allclose(emb.embed(floats), expected, rtol=1e-4, atol=1e-4)
    assert emb.embed(images[:1]).shape == (1, D)


def test_set_params_refreshes_weights():
    arg0, aux0 = tiny_params(0)
    arg1, aux1 = tiny_params(1)
    emb = Embedder(tiny_symbol(), arg0, aux0, mx.cpu(), batch_size=3, image_size=(H, W))
    images = np.random.RandomState(2).randint(0, 256, size=(3, H, W, 3)).astype(np.uint8)
    emb.set_params(arg1, aux1)
    np.testing.assert_allclose(emb.embed(images), numpy_forward(images.transpose(0, 3, 1, 2), arg1, aux1),
                               rtol=1e-4, atol=1e-4)


def test_embedder_without_weights_until_set_params():
    emb = Embedder(tiny_symbol(), {}, {}, mx.cpu(), batch_size=2, image_size=(H, W))
    images = np.zeros((1, H, W, 3), np.uint8)
    with pytest.raises(FaceKDError, match="set_params"):
        emb.embed(images)
    arg, aux = tiny_params()
    emb.set_params(arg, aux)
    np.testing.assert_allclose(emb.embed(images), numpy_forward(np.zeros((1, 3, H, W)), arg, aux), atol=1e-4)


def test_from_checkpoint_and_errors(tmp_path):
    prefix = str(tmp_path / "model")
    arg, aux = tiny_params()
    save(prefix, 3, tiny_symbol(), arg, aux)
    sym, arg2, aux2 = load_checkpoint(prefix, 3)
    assert "fc1_output" in sym.get_internals().list_outputs()
    assert set(arg2) == set(arg) and set(aux2) == set(aux)
    emb = Embedder.from_checkpoint(prefix, 3, [mx.cpu()], 2, image_size=(H, W))
    images = np.random.RandomState(3).randint(0, 256, size=(5, H, W, 3)).astype(np.uint8)
    np.testing.assert_allclose(emb.embed(images), numpy_forward(images.transpose(0, 3, 1, 2), arg, aux),
                               rtol=1e-4, atol=1e-4)
    with pytest.raises(FaceKDError, match=r"model-0004\.params.*available epochs: 3"):
        load_checkpoint(prefix, 4)
    with pytest.raises(FaceKDError, match=r"other-symbol\.json"):
        load_checkpoint(str(tmp_path / "other"), 1)
    with open(prefix + "-0005.params", "wb") as f:
        f.write(b"not params")
    with pytest.raises(FaceKDError, match=r"model-0005\.params"):
        load_checkpoint(prefix, 5)


def test_graph_without_fc1_output():
    x = mx.sym.FullyConnected(mx.sym.Flatten(mx.sym.Variable("data")), num_hidden=D, name="embedding")
    with pytest.raises(FaceKDError, match="has no fc1_output"):
        Embedder(x, {}, {}, mx.cpu(), 2, image_size=(H, W))


def test_weight_and_input_errors():
    arg, aux = tiny_params()
    missing = dict(arg)
    del missing["pre_fc1_bias"]
    with pytest.raises(FaceKDError, match="pre_fc1_bias missing"):
        Embedder(tiny_symbol(), missing, aux, mx.cpu(), 2, image_size=(H, W))
    wrong = dict(arg, pre_fc1_weight=mx.nd.zeros((D, 7)))
    with pytest.raises(FaceKDError, match=r"pre_fc1_weight has shape \(4, 7\)"):
        Embedder(tiny_symbol(), wrong, aux, mx.cpu(), 2, image_size=(H, W))
    with pytest.raises(FaceKDError, match="--batch-size 1 is smaller"):
        Embedder(tiny_symbol(), arg, aux, [mx.cpu(0), mx.cpu(1)], 1, image_size=(H, W))
    with pytest.raises(FaceKDError, match="check the image size"):
        Embedder(tiny_symbol(), arg, aux, mx.cpu(), 2, image_size=(H + 1, W))
    emb = Embedder(tiny_symbol(), arg, aux, mx.cpu(), 2, image_size=(H, W))
    with pytest.raises(FaceKDError, match="expected uint8 RGB"):
        emb.embed(np.zeros((2, H + 1, W, 3), np.uint8))
    with pytest.raises(FaceKDError, match="expected uint8 RGB"):
        emb.embed(np.zeros((2, 3, H, W), np.uint8))


@pytest.mark.parametrize("network", ["y1", "pocketnets128"])
def test_real_network(network, monkeypatch):
    """The project's networks, several forwards (MKLDNN fused graph), against an unfused plain Module."""
    from facekd import symbols
    from facekd.config import generate_config

    cfg = generate_config(network, "synthetic", "arcface")
    sym = symbols.get_symbol(cfg)
    monkeypatch.setenv("MXNET_SUBGRAPH_BACKEND", "NONE")  # the reference only: plain operators
    ref = mx.mod.Module(sym, data_names=["data"], label_names=None, context=mx.cpu())
    ref.bind(data_shapes=[("data", (3, 3, 112, 112))], for_training=False)
    monkeypatch.delenv("MXNET_SUBGRAPH_BACKEND")
    ref.init_params(mx.init.Xavier(rnd_type="gaussian", magnitude=2))
    arg, aux = ref.get_params()
    rng = np.random.RandomState(1)
    aux = {k: mx.nd.array(rng.rand(*v.shape) + 0.5) for k, v in aux.items()}  # non-trivial statistics
    ref.set_params(arg, aux)
    emb = Embedder(sym, arg, aux, mx.cpu(), 2)
    assert emb.emb_size == cfg.emb_size
    for trial in range(2):
        images = rng.randint(0, 256, size=(3, 112, 112, 3)).astype(np.uint8)
        out = emb.embed(images)  # a full batch and a padded one
        ref.forward(mx.io.DataBatch([mx.nd.array(images.transpose(0, 3, 1, 2))]), is_train=False)
        expected = ref.get_outputs()[0].asnumpy()
        assert np.abs(expected).max() > 0.1
        np.testing.assert_allclose(out, expected, rtol=1e-3, atol=1e-3 * np.abs(expected).max())


def test_flatten_fc_inputs_keeps_the_graph():
    from facekd.embedder import flatten_fc_inputs

    x = mx.sym.Convolution(mx.sym.Variable("data"), kernel=(3, 3), num_filter=2, name="conv")
    x = mx.sym.FullyConnected(x, num_hidden=D, name="pre_fc1")
    x = mx.sym.BatchNorm(x, fix_gamma=True, name="fc1")
    out = flatten_fc_inputs(x)
    assert out.list_arguments() == x.list_arguments()
    assert out.list_auxiliary_states() == x.list_auxiliary_states()
    assert "pre_fc1_flatten_input_output" in out.get_internals().list_outputs()
    already = tiny_symbol(with_head=False)  # Flatten -> FullyConnected: unchanged
    assert flatten_fc_inputs(already) is already


def test_set_params_after_forward_takes_the_new_weights():
    """A refreshed Embedder equals a fresh one (MXNet's fused CPU graph caches FC weights)."""
    import mxnet as mx
    from facekd.config import generate_config
    from facekd.symbols import get_symbol, network_initializer

    sym = get_symbol(generate_config("y1", "synthetic", "arcface"))
    mod = mx.mod.Module(sym, data_names=["data"], label_names=None, context=mx.cpu())
    mod.bind(data_shapes=[("data", (4, 3, 112, 112))], for_training=False)
    mod.init_params(network_initializer())
    arg, aux = mod.get_params()
    aux = {k: (mx.nd.ones_like(v) * 50 if k.endswith("moving_var") else v) for k, v in aux.items()}
    changed = dict(arg, pre_fc1_weight=arg["pre_fc1_weight"] * 3.0,
                   conv_1_conv2d_weight=arg["conv_1_conv2d_weight"] * 0.5)
    images = np.random.default_rng(0).uniform(0, 255, (4, 3, 112, 112)).astype(np.float32)
    refreshed = Embedder(sym, arg, aux, [mx.cpu()], 4)
    before = refreshed.embed(images)
    refreshed.set_params(changed, aux)
    after = refreshed.embed(images)
    fresh = Embedder(sym, changed, aux, [mx.cpu()], 4).embed(images)
    assert np.abs(after - before).max() > 1e-3 * np.abs(before).max()
    np.testing.assert_allclose(after, fresh, rtol=1e-4, atol=1e-4 * np.abs(fresh).max())
