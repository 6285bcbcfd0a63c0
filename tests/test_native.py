"""facekd.native: the facekd_unit_rows operator against float64 NumPy, its use by the heads, and
the fallbacks where it cannot be built."""
import os

import mxnet as mx
import numpy as np
import pytest

from facekd import native
from facekd.config import generate_config
from facekd.losses import build_head

EPS = 1e-10


def loaded():
    if not native.load():
        pytest.skip(f"native operators unavailable: {native.reason()}")


def unit_rows_reference(w, dv):
    """float64: v = w / n and dw = dv / n - (dv . w) / n^3 w, n = sqrt(|w|^2 + eps)."""
    n = np.sqrt((w * w).sum(axis=1, keepdims=True) + EPS)
    return w / n, dv / n - (dv * w).sum(axis=1, keepdims=True) / n ** 3 * w


@pytest.mark.parametrize("rows,dim", [(1, 1), (37, 7), (300, 515)])
def test_unit_rows_matches_float64(rows, dim):
    loaded()
    rng = np.random.default_rng(rows)
    w = rng.standard_normal((rows, dim)) * rng.uniform(0.01, 10, size=(rows, 1))
    if rows > 1:
        w[rows // 2] = 0.0  # a zero row: the eps keeps it finite, as L2Normalization's does
    dv = rng.standard_normal((rows, dim))
    ex = native.unit_rows(mx.sym.Variable("w")).simple_bind(mx.cpu(), w=w.shape)
    ex.arg_dict["w"][:] = w.astype(np.float32)
    ex.forward(is_train=True)
    ex.backward(mx.nd.array(dv))
    v, dw = unit_rows_reference(w.astype(np.float32).astype(np.float64), dv)
    np.testing.assert_allclose(ex.outputs[0].asnumpy(), v, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ex.grad_dict["w"].asnumpy(), dw, rtol=1e-4, atol=1e-5 * max(np.abs(dw).max(), 1e-3))
    norms = np.linalg.norm(ex.outputs[0].asnumpy().astype(np.float64), axis=1)
    np.testing.assert_allclose(norms[np.abs(w).sum(axis=1) > 0], 1.0, rtol=1e-6)


def test_unit_rows_refuses_a_vector_and_float64():
    loaded()
    with pytest.raises(RuntimeError, match="rows x dim"):
        native.unit_rows(mx.sym.Variable("w")).simple_bind(mx.cpu(), w=(5,))
    with pytest.raises(RuntimeError, match="float32"):
        native.unit_rows(mx.sym.Variable("w")).simple_bind(mx.cpu(), w=(5, 3), type_dict={"w": np.float64})


def head(native_unit_rows):
    cfg = generate_config("y1", "emore", "arcface")
    cfg.update(num_classes=20, emb_size=8, per_batch_size=4, native_unit_rows=native_unit_rows)
    return build_head(mx.sym.Variable("data"), mx.sym.Variable("softmax_label"), cfg)


def test_heads_use_the_operator_only_when_told():
    loaded()
    assert native.UNIT_ROWS in head(True).tojson()
    stock = head(False).tojson()
    assert native.UNIT_ROWS not in stock and '"square"' in stock


@pytest.fixture
def fresh(monkeypatch, tmp_path):
    """A process state before any load, and an empty cache."""
    monkeypatch.setattr(native, "_state", {})
    monkeypatch.setenv("FACEKD_CACHE", str(tmp_path))
    return tmp_path


def test_switch_off_keeps_the_stock_graph(fresh, monkeypatch):
    monkeypatch.setenv(native.SWITCH, "0")
    assert not native.unit_rows_available([mx.cpu()])
    assert native.reason() == f"{native.SWITCH}=0"
    with pytest.raises(RuntimeError, match="load"):
        native.unit_rows(mx.sym.Variable("w"))
    assert not list(fresh.iterdir())  # nothing built


def test_gpu_contexts_do_not_build_or_load(fresh):
    assert not native.unit_rows_available([mx.cpu(), mx.gpu(0)])
    assert "loaded" not in native._state and not list(fresh.iterdir())


@pytest.mark.parametrize("cxx,words", [("/nonexistent/c++", "could not run"), ("false", "failed")])
def test_a_failed_build_is_reported_and_leaves_nothing(fresh, monkeypatch, cxx, words):
    monkeypatch.setenv("CXX", cxx)
    assert not native.load()
    assert words in native.reason() and cxx in native.reason()
    built = native.library_path()
    assert not [p for p in fresh.rglob("*") if p.is_file()]  # no library, no temporary left
    assert not native.load() and not os.path.exists(built)  # decided once per process


def test_no_compiler_is_a_reason(fresh, monkeypatch):
    monkeypatch.delenv("CXX", raising=False)
    monkeypatch.setattr(native.shutil, "which", lambda name: None)
    assert native.compiler() is None
    assert not native.load() and "no C++ compiler" in native.reason()
