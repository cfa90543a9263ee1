"""The array-module switch (made_np/backend.py): device and dtype choice, one-line errors.

Rules guarded: ``cpu`` gives NumPy; the device comes from the argument, else
``$MADE_NP_DEVICE``, else ``cpu``; an unknown device, a missing CuPy, or CuPy without a
usable GPU raise one user-facing line (CuPy named): an unknown device or dtype name is a
``ValueError`` (:class:`BackendChoiceError`), a missing CuPy or GPU a ``RuntimeError``
(:class:`BackendError`); only float32/float64 are accepted; host/device copies and host seeding behave.
"""
from __future__ import annotations

import sys
import types

import numpy as np
import pytest

from made_np import backend
from made_np.backend import BackendChoiceError, BackendError, get_xp, resolve_dtype


def one_line(exc_info) -> str:
    msg = str(exc_info.value)
    assert msg and "\n" not in msg, f"not one line: {msg!r}"
    return msg


def test_cpu_is_numpy(monkeypatch):
    monkeypatch.delenv("MADE_NP_DEVICE", raising=False)
    assert get_xp("cpu") is np
    assert get_xp("CPU") is np
    assert get_xp() is np and get_xp(None) is np
    assert backend.device_of(np) == "cpu"


def test_unknown_device_is_one_line(monkeypatch):
    """An unknown name is a bad argument (ValueError), not a machine without CuPy (RuntimeError)."""
    monkeypatch.delenv("MADE_NP_DEVICE", raising=False)
    with pytest.raises(ValueError) as e:
        get_xp("tpu")
    msg = one_line(e)
    assert "'tpu'" in msg and "cpu" in msg and "cuda" in msg
    assert isinstance(e.value, BackendChoiceError) and not isinstance(e.value, RuntimeError)


def test_cuda_without_cupy_names_cupy(monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", None)  # `import cupy` now raises ImportError
    with pytest.raises(BackendError) as e:
        get_xp("cuda")
    msg = one_line(e)
    assert "CuPy" in msg and "not installed" in msg
    assert isinstance(e.value, RuntimeError) and not isinstance(e.value, ValueError)  # the machine, not the name


def test_environment_variable_is_respected(monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", None)
    monkeypatch.setenv("MADE_NP_DEVICE", "cuda")
    with pytest.raises(BackendError, match="CuPy"):
        get_xp()
    assert get_xp("cpu") is np  # an explicit argument wins over the environment
    monkeypatch.setenv("MADE_NP_DEVICE", "cpu")
    assert get_xp() is np
    monkeypatch.setenv("MADE_NP_DEVICE", "gpu0")
    with pytest.raises(BackendChoiceError, match=r"^\$MADE_NP_DEVICE: unknown device 'gpu0'"):
        get_xp()


def _fake_cupy(count=None, error=None):
    def get_device_count():
        if error is not None:
            raise error
        return count

    runtime = types.SimpleNamespace(getDeviceCount=get_device_count)
    return types.SimpleNamespace(cuda=types.SimpleNamespace(runtime=runtime))


def test_cupy_without_a_gpu_is_one_line(monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", _fake_cupy(error=RuntimeError("cudaErrorNoDevice: no CUDA-capable device\nmore")))
    with pytest.raises(BackendError) as e:
        get_xp("cuda")
    assert "no usable CUDA GPU" in one_line(e) and "cudaErrorNoDevice" in str(e.value)
    monkeypatch.setitem(sys.modules, "cupy", _fake_cupy(count=0))
    with pytest.raises(BackendError) as e:
        get_xp("cuda")
    assert "no CUDA GPU" in one_line(e)
    fake = _fake_cupy(count=1)
    monkeypatch.setitem(sys.modules, "cupy", fake)
    assert get_xp("cuda") is fake


@pytest.mark.parametrize("given,expected", [("float32", np.float32), ("float64", np.float64),
                                            (np.float32, np.float32), (np.dtype("float64"), np.float64)])
def test_resolve_dtype_accepts_float32_and_float64(given, expected):
    assert resolve_dtype(given) == np.dtype(expected)
    assert isinstance(resolve_dtype(given), np.dtype)


@pytest.mark.parametrize("bad", ["float16", "int32", np.int64, np.float16, "complex128"])
def test_resolve_dtype_errors(bad):
    with pytest.raises(ValueError) as e:
        resolve_dtype(bad)
    msg = one_line(e)
    assert "unsupported dtype" in msg and "float32" in msg and "float64" in msg


def test_host_device_copies_and_seeding():
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    assert backend.to_host(a) is a
    assert backend.to_host([1, 2]).tolist() == [1, 2]
    d = backend.to_device(a, np)
    assert d.dtype == np.float32 and np.array_equal(d, a)
    assert backend.to_device(a, np, dtype=np.float64).dtype == np.float64
    r1, r2, r3 = backend.host_rng(1, 2), backend.host_rng(1, 2), backend.host_rng(1, 3)
    x1, x2, x3 = r1.random(4), r2.random(4), r3.random(4)
    assert np.array_equal(x1, x2) and not np.array_equal(x1, x3)
    backend.synchronize(np)  # a no-op on the CPU


def test_to_host_takes_only_device_arrays_for_device_arrays():
    """Anything with a ``.get`` (a pandas DataFrame) used to be taken for a CuPy array."""
    from made_np.backend import to_host

    class Table:  # a DataFrame's shape of interface: .get(key) and __array__
        def get(self, key, default=None):
            return default

        def __array__(self, dtype=None, copy=None):
            return np.ones((2, 3), dtype=dtype)

    np.testing.assert_array_equal(to_host(Table()), np.ones((2, 3)))


def test_to_host_copies_any_cuda_array_through_cupy_asnumpy(monkeypatch):
    """A CUDA array of another library (numba's, a DLPack wrapper) has __cuda_array_interface__ but no
    CuPy .get(): to_host called .get(); cupy.asnumpy takes any of them (a blocking copy)."""
    class ForeignDeviceArray:  # no .get()
        __cuda_array_interface__ = {"shape": (2,), "typestr": "<f4", "data": (0, False), "version": 3}

    seen = []
    monkeypatch.setitem(sys.modules, "cupy", types.SimpleNamespace(asnumpy=lambda a: seen.append(a) or np.zeros(2)))
    a = ForeignDeviceArray()
    assert backend.to_host(a).tolist() == [0.0, 0.0] and seen == [a]


@pytest.mark.parametrize("cupy", [None, _fake_cupy(error=RuntimeError("no driver")), _fake_cupy(count=0)],
                         ids=["no CuPy", "no driver", "no GPU"])
def test_cuda_errors_name_where_the_setting_came_from(monkeypatch, cupy):
    """``MADE_NP_DEVICE=cuda made-np train`` without CuPy used to blame ``--device cuda``, an option never given."""
    monkeypatch.setitem(sys.modules, "cupy", cupy)  # None: `import cupy` raises ImportError
    monkeypatch.setenv("MADE_NP_DEVICE", "cuda")
    with pytest.raises(BackendError) as e:
        get_xp()
    assert one_line(e).startswith("$MADE_NP_DEVICE=cuda") and "--device" not in str(e.value)
    with pytest.raises(BackendError) as e:
        get_xp("cuda")  # the option (or argument) wins over the environment, and is the one named
    assert one_line(e).startswith("--device cuda")
