"""The array-module switch: the one module that knows about CuPy.

Every compute module (layers, heads, model, optim, sampling) receives its array
namespace ``xp`` from here and calls only what the Python array API standard defines
(2023.12, and ``take_along_axis`` of 2024.12) on ``xp`` and on its arrays, so the same
lines run on NumPy (CPU), CuPy (CUDA) and any other standard namespace: a model built
with ``xp=np`` computes with :func:`namespace` ``(np)``, array-api-compat's standard
wrapper of NumPy (the tests run the core a second time on ``array_api_strict`` arrays
on a second, fake device). The speed forms of :mod:`made_np.fast` (CPU threads, fused
kernels) run on plain NumPy or CuPy, :func:`native`. Host copies happen only at the
edges: loading data (:func:`to_device`), and saving or printing (:func:`to_host`).

The device is chosen by the ``--device`` option of the CLI, else by the
``MADE_NP_DEVICE`` environment variable, else ``cpu``. CuPy is imported lazily,
only when ``cuda`` is asked for.
"""
from __future__ import annotations

import functools
import os

import array_api_compat
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
    """Name of the device an array module computes on: ``"cpu"`` (NumPy), ``"cuda"`` (CuPy), or
    the module's name for any other namespace (``"array_api_strict"``)."""
    if array_api_compat.is_numpy_namespace(xp):
        return "cpu"
    return "cuda" if array_api_compat.is_cupy_namespace(xp) else xp.__name__


@functools.cache
def namespace(xp):
    """The array API standard namespace of the array module ``xp``: NumPy itself from 2.1 on (it
    implements the 2023.12 standard; array-api-compat's wrapper cost a mask bank's 1x500 step 4-6%
    in Python calls at two threads, docs/performance.md), else for NumPy and CuPy the wrapper that
    :func:`array_api_compat.array_namespace` gives their arrays, any other standard namespace
    (``array_api_strict``) itself. The core computes with it."""
    if xp is np and getattr(np, "__array_api_version__", "") >= "2023.12":
        return np
    return array_api_compat.array_namespace(xp.empty(0))


def native(xp):
    """The plain NumPy or CuPy module behind ``xp`` (itself or its :func:`namespace`), what the
    speed forms of :mod:`made_np.fast` run on; None for any other namespace."""
    if not hasattr(xp, "__name__"):  # not a module
        return None
    if array_api_compat.is_numpy_namespace(xp):
        return np
    if array_api_compat.is_cupy_namespace(xp):
        import cupy
        return cupy
    return None


def dtype_in(xp, dtype):
    """The floating ``dtype`` (a name or NumPy dtype, :func:`resolve_dtype`) as the namespace
    ``xp`` spells it: a NumPy dtype for NumPy and CuPy, ``xp.float32``... otherwise."""
    if native(xp) is not None:
        return np.dtype(dtype)
    return getattr(xp, np.dtype(dtype).name) if isinstance(dtype, (str, np.dtype, type)) else dtype  # xp's own


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
    """Copy an array (NumPy, CuPy, or of any standard namespace, from any device) to a host
    :class:`numpy.ndarray` (no copy if already host).

    A CUDA array (anything with ``__cuda_array_interface__``; not just anything with a ``.get``,
    as a DataFrame) goes through :func:`cupy.asnumpy`: a blocking copy on the current stream, after
    the work queued there; an array of another standard namespace through DLPack.
    """
    if isinstance(a, np.ndarray):
        return a
    if hasattr(a, "__cuda_array_interface__"):
        import cupy

        return cupy.asnumpy(a)
    if array_api_compat.is_array_api_obj(a) and not isinstance(a, (np.generic, int, float, complex)):
        return np.from_dlpack(a).copy()  # the standard's interchange (array_api_strict's fake devices too)
    return np.asarray(a)


def to_device(a, xp, dtype=None, device=None):
    """Copy a host array to the device of ``xp`` (``device`` of a namespace with several, as
    ``array_api_strict.Device("device1")``), C-contiguous (row-major) for NumPy and CuPy.

    A no-op for a NumPy array that is already C-contiguous with that dtype. Data
    stored column-major (the ``.npz`` of binarized MNIST is) are copied to row
    order once here: every minibatch is a gather of rows, which costs about
    0.44 ms per minibatch of 100 from a column-major (50000, 784) uint8 array
    against 0.02 ms from a row-major one, and the elementwise work on a batch
    is only SIMD-fast when the batch is row-major like the logits.
    """
    plain = native(xp)
    if plain is None:
        return xp.asarray(a, dtype=None if dtype is None else dtype_in(xp, dtype), device=device)
    if getattr(a, "ndim", 1) == 0:
        return plain.asarray(a, dtype=dtype)
    return plain.ascontiguousarray(a, dtype=dtype)


def synchronize(xp) -> None:
    """Wait for queued device work (for honest timings); nothing to do on the CPU."""
    if array_api_compat.is_cupy_namespace(xp):
        native(xp).cuda.get_current_stream().synchronize()


def ndtri(xp, p):
    """The standard normal's quantile function ``Phi^-1(p)`` on the array module ``xp``:
    :func:`scipy.special.ndtri` for NumPy, :func:`cupyx.scipy.special.ndtri` for CuPy (the
    real heads' inverse-CDF draws, docs/math.md Sec. 13); the standard has no such function,
    so on any other namespace ``p`` goes to the host and back (:func:`to_host`, :func:`to_device`).

    Parameters
    ----------
    xp : module
    p : array, any shape, float64, in (0, 1)

    Returns
    -------
    array, shape and dtype of ``p``: ``-inf`` at 0, ``+inf`` at 1 (callers clip ``p`` first).
    """
    from scipy.special import ndtri as f
    if array_api_compat.is_cupy_namespace(xp):
        from cupyx.scipy.special import ndtri as f
    elif not array_api_compat.is_numpy_namespace(xp):
        return to_device(f(to_host(p)), xp, device=array_api_compat.device(p))
    return f(p)


def einsum(xp, subscripts: str, *operands):
    """``einsum`` of explicit ``subscripts`` (``"nj,jk,njk->nk"``): NumPy's or CuPy's own, which
    contracts without forming the product of all the operands; on any other namespace (the
    standard has no einsum) that product by broadcasting, then summed over the contracted letters.

    Parameters
    ----------
    xp : module
    subscripts : str
        One letter per axis of each operand, ``->`` and the output's letters.
    operands : arrays of one floating dtype

    Returns
    -------
    array, the output's axes in the order of its letters.
    """
    plain = native(xp)
    if plain is not None:
        return plain.einsum(subscripts, *operands)
    inputs, out = subscripts.replace(" ", "").split("->")
    letters = sorted(set(inputs.replace(",", "")), key=lambda c: (c not in out, out.find(c), c))
    product = None
    for names, a in zip(inputs.split(","), operands):
        a = xp.permute_dims(a, tuple(sorted(range(len(names)), key=lambda i: letters.index(names[i]))))
        a = xp.reshape(a, tuple(a.shape[sorted(names, key=letters.index).index(c)] if c in names else 1
                                for c in letters))
        product = a if product is None else product * a
    return xp.sum(product, axis=tuple(range(len(out), len(letters)))) if len(letters) > len(out) else product


def device(a):
    """The device an array lives on (:func:`array_api_compat.device`): ``"cpu"`` for NumPy."""
    return array_api_compat.device(a)


def dtype_kind(xp, dtype) -> str:
    """NumPy's one-letter kind of a dtype of ``xp`` (``"b"``, ``"i"``, ``"u"``, ``"f"``, ``"c"``; ``"O"``
    for any other): NumPy's and CuPy's own, :func:`isdtype` for another namespace's."""
    if native(xp) is not None:
        return dtype.kind
    kinds = (("b", "bool"), ("i", "signed integer"), ("u", "unsigned integer"), ("f", "real floating"),
             ("c", "complex floating"))
    return next((k for k, name in kinds if xp.isdtype(dtype, name)), "O")


def row_blocks(n: int, size: int):
    """Slices ``s:s+size`` of ``n`` rows, the last one cut at ``n`` (the standard leaves slice stops
    past the end unspecified)."""
    return (slice(s, min(s + size, n)) for s in range(0, n, size))
