"""mxnet_cause: the line of an MXNet error that says what went wrong, never its 'Traceback' header."""
import re
import subprocess
import sys

import mxnet as mx
import pytest

from facekd.errors import mxnet_cause


def _raised(fn):
    with pytest.raises(mx.base.MXNetError) as info:
        fn()
    return info.value


def test_cause_of_a_corrupt_params_file(tmp_path):
    path = tmp_path / "model-0001.params"
    path.write_bytes(b"not an ndarray file")
    exc = _raised(lambda: mx.nd.load(str(path)))
    assert str(exc).startswith("Traceback (most recent call last):")  # what used to be quoted
    cause = mxnet_cause(exc)
    assert cause.startswith("Check failed: ") and cause.endswith("Invalid NDArray file format"), cause


def test_cause_of_a_shape_error():
    data = mx.sym.Variable("data")
    sym = mx.sym.Pooling(mx.sym.Convolution(data, kernel=(3, 3), num_filter=2, stride=(2, 2)),
                         kernel=(60, 60), pool_type="avg")
    exc = _raised(lambda: sym.infer_shape(data=(1, 3, 16, 16)))
    cause = mxnet_cause(exc)
    assert re.match(r"Error in operator pooling\d+: Check failed: ", cause), cause
    assert "kernel size (60) exceeds input" in cause and "pooling.cc" not in cause


def test_cause_of_other_exceptions():
    assert mxnet_cause(ValueError("bad value\nmore")) == "bad value"
    assert mxnet_cause(RuntimeError("")) == "RuntimeError"


def test_run_cli_prints_one_line_and_exits_2():
    code = ("from facekd.errors import FaceKDError, run_cli\n"
            "def main(argv):\n    raise FaceKDError('x.bin: line one\\nline two')\n"
            "run_cli(main)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == ["-c: error: x.bin: line one line two"]
