"""The array-module switch: the one module that knows about CuPy.

Every compute module (layers, heads, model, optim, sampling) receives its array
module ``xp`` from here and calls only ``xp.*`` on arrays, so the same lines run
on NumPy (CPU) and CuPy (CUDA). (CPU threads and fused kernels are speed tools
and live in :mod:`made_np.fast`.) Host copies happen only at the edges: loading
data (:func:`to_device`), and saving or printing (:func:`to_host`).

The device is chosen by the ``--device`` option of the CLI, else by the
``MADE_NP_DEVICE`` environment variable, else ``cpu``. CuPy is imported lazily,
only when ``cuda`` is asked for.
"""
from __future__ import annotations

import os

import numpy as np


DEVICES = ("cpu", "cuda")
DTYPES = ("float32", "float64")


class BackendError(RuntimeError):
    """The environment cannot run the device asked for (CuPy not installed, no usable CUDA GPU):
    one user-facing line naming the setting (``--device cuda`` or ``$MADE_NP_DEVICE``)."""


class BackendChoiceError(ValueError):
    """A device or dtype name that is none of the choices (:data:`DEVICES`, :data:`DTYPES`): a bad
    argument, not a missing library; one user-facing line naming it and the choices."""


def get_xp(device: str | None = None):
    """Return the array module for a device.

    Parameters
    ----------
    device : {"cpu", "cuda"} or None
        ``None`` reads ``$MADE_NP_DEVICE`` and falls back to ``"cpu"``.

    Returns
    -------
    module
        :mod:`numpy` for ``"cpu"``, :mod:`cupy` for ``"cuda"``.

    Raises
    ------
    BackendChoiceError
        An unknown device name (a ``ValueError``).
    BackendError
        CuPy not installed, or no usable CUDA GPU (a ``RuntimeError``: the machine, not the argument).
    """
    source = "" if device else "$MADE_NP_DEVICE: " if os.environ.get("MADE_NP_DEVICE") else ""
    device = (device or os.environ.get("MADE_NP_DEVICE") or "cpu").lower()
    if device == "cpu":
        return np
    if device != "cuda":
        raise BackendChoiceError(f"{source}unknown device {device!r}: choose one of {', '.join(DEVICES)}")
    setting = f"$MADE_NP_DEVICE={os.environ['MADE_NP_DEVICE']}" if source else "--device cuda"  # whence cuda
    try:
        import cupy
    except ImportError:
        raise BackendError(f"{setting} needs CuPy, which is not installed: pip install 'made-np[cuda]'") from None
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:  # CUDA driver missing or broken
        first_line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise BackendError(f"{setting}: no usable CUDA GPU ({first_line})") from None
    if count < 1:
        raise BackendError(f"{setting}: CuPy found no CUDA GPU")
    return cupy


def device_of(xp) -> str:
    """Name of the device an array module computes on: ``"cpu"`` or ``"cuda"``."""
    return "cpu" if xp is np else "cuda"


def resolve_dtype(dtype) -> np.dtype:
    """Check and return a floating dtype.

    Parameters
    ----------
    dtype : str or numpy dtype
        ``"float32"`` (the default everywhere) or ``"float64"`` (gradient checks).

    Raises
    ------
    BackendChoiceError
        For any other dtype (a ``ValueError``).
    """
    name = np.dtype(dtype).name if not isinstance(dtype, str) else dtype
    if name not in DTYPES:
        raise BackendChoiceError(f"unsupported dtype {name!r}: choose one of {', '.join(DTYPES)}")
    return np.dtype(name)


def host_rng(*seed) -> np.random.Generator:
    """A host random generator seeded by integers (weights and masks are drawn on the host,
    so CPU and GPU runs with the same seed start from the same numbers); with no integer,
    fresh entropy from the operating system (NumPy would seed ``default_rng([])`` as a fixed
    stream, the one of seed 0)."""
    return np.random.default_rng(list(seed) if seed else None)


def to_host(a) -> np.ndarray:
    """Copy an array (NumPy or CuPy) to a host :class:`numpy.ndarray` (no copy if already host).

    A device array (anything with ``__cuda_array_interface__``; not just anything with a ``.get``,
    as a DataFrame) goes through :func:`cupy.asnumpy`: a blocking copy on the current stream, after
    the work queued there, which takes CUDA arrays of other libraries too (``.get()`` is CuPy's only).
    """
    if isinstance(a, np.ndarray):
        return a
    if hasattr(a, "__cuda_array_interface__"):
        import cupy

        return cupy.asnumpy(a)
    return np.asarray(a)


def to_device(a, xp, dtype=None):
    """Copy a host array to the device of ``xp``, C-contiguous (row-major).

    A no-op for a NumPy array that is already C-contiguous with that dtype. Data
    stored column-major (the ``.npz`` of binarized MNIST is) are copied to row
    order once here: every minibatch is a gather of rows, which costs about
    0.44 ms per minibatch of 100 from a column-major (50000, 784) uint8 array
    against 0.02 ms from a row-major one, and the elementwise work on a batch
    is only SIMD-fast when the batch is row-major like the logits.
    """
    if getattr(a, "ndim", 1) == 0:
        return xp.asarray(a, dtype=dtype)
    return xp.ascontiguousarray(a, dtype=dtype)


def synchronize(xp) -> None:
    """Wait for queued device work (for honest timings); nothing to do on the CPU."""
    if xp is not np:
        xp.cuda.get_current_stream().synchronize()


def ndtri(xp, p):
    """The standard normal's quantile function ``Phi^-1(p)`` on the array module ``xp``:
    :func:`scipy.special.ndtri` for NumPy, :func:`cupyx.scipy.special.ndtri` for CuPy (the
    real heads' inverse-CDF draws, docs/math.md Sec. 13).

    Parameters
    ----------
    xp : module
    p : array, any shape, float64, in (0, 1)

    Returns
    -------
    array, shape and dtype of ``p``: ``-inf`` at 0, ``+inf`` at 1 (callers clip ``p`` first).
    """
    if xp is np:
        from scipy.special import ndtri as f
    else:
        from cupyx.scipy.special import ndtri as f
    return f(p)
