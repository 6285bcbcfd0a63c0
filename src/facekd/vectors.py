"""Row normalisation of embedding matrices, the one NumPy implementation."""
import numpy as np

NORM_FLOOR = 1e-12  # a zero row stays zero instead of dividing by zero


def normalize_rows(x, dtype=np.float64):
    """Rows of ``x`` divided by their L2 norm, computed in ``dtype`` (zero rows stay zero)."""
    x = np.asarray(x, dtype=dtype)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norms, x.dtype.type(NORM_FLOOR))
