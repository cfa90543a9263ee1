"""MADE in NumPy/CuPy with hand-written gradients."""

# Imported first so that its OpenBLAS setting (a short spin-wait of idle BLAS threads,
# see made_np/backend.py and docs/performance.md) is in place before NumPy loads.
from . import backend  # noqa: F401

__version__ = "0.1.0"
