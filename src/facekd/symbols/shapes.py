"""Shape inference without MXNet's console noise.

``Symbol.infer_shape`` prints "infer_shape error. Arguments: ..." to stdout before it
raises; the callers here turn the error into one line of their own, so that print is
captured and dropped.
"""
import contextlib
import io


def infer_shape(symbol, **shapes):
    """``symbol.infer_shape(**shapes)``: (arg shapes, output shapes, aux shapes); MXNetError on failure."""
    with contextlib.redirect_stdout(io.StringIO()):
        return symbol.infer_shape(**shapes)
