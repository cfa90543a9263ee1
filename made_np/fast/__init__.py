"""The speed forms of made-np: each one computes what a reference in ``made_np/`` computes.

* :mod:`made_np.fast.threads`: the CPU work pool, BLAS thread limits and the thread policy.
* :mod:`made_np.fast.kernels`: fused elementwise kernels (numexpr, CuPy) and the fused Bernoulli head.
* :mod:`made_np.fast.optim`: in-place, pool-split optimisers (Adam in its efficient bias-corrected form).
* :mod:`made_np.fast.blocked`: the block-sparse training form of a single-mask MADE.
* :mod:`made_np.fast.sampler`: the degree-ordered sampler, about one forward pass per batch of samples.
* :mod:`made_np.fast.engine`: what ``fit(..., engine="fast")`` trains with.

Each is tested equal to its reference (``tests/test_blocked.py``, ``tests/test_speedpaths.py``,
``tests/test_sampling.py``; 1e-10 in float64 where the arithmetic is the same up to rounding).
The core modules reach this package only at two seams: the engine chosen in
:func:`made_np.train.fit` and the sampling method of :func:`made_np.sampling.sample`.
"""

import os
import sys

#: OpenBLAS's idle worker threads spin about 2^28 cycles after every product before they
#: sleep. Training calls a product every few hundred microseconds, so a spinning thread
#: holds a core through the elementwise work in between, where the work pool wants it;
#: 2^10 cycles makes the pool pay (docs/performance.md). OpenBLAS reads the variable when
#: NumPy loads, so only a program's entry point can set it.
BLAS_ENV_DEFAULTS = {"OPENBLAS_THREAD_TIMEOUT": "10"}


#: Thread counts that the libraries made-np loads read from the environment (besides OpenMP's ``OMP_*``).
THREAD_COUNT_VARIABLES = ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS", "NUMEXPR_MAX_THREADS",
                          "MADE_NP_THREADS")


def unset_empty_thread_variables() -> list:
    """Unset the thread variables set to nothing (or blanks): OpenMP's ``OMP_*`` and
    :data:`THREAD_COUNT_VARIABLES`. Empty means unset, as :mod:`made_np.fast.threads` reads them; but
    libgomp (loaded with scikit-learn) reads ``OMP_NUM_THREADS=`` at load and prints
    ``libgomp: Invalid value for environment variable OMP_NUM_THREADS``.

    Called by entry points only (the ``made-np`` command), before any library loads. Returns the
    names unset.
    """
    empty = [name for name, value in os.environ.items()
             if (name.startswith("OMP_") or name in THREAD_COUNT_VARIABLES) and not value.strip()]
    for name in empty:
        del os.environ[name]
    return empty


def prefer_short_blas_spin() -> bool:
    """Set :data:`BLAS_ENV_DEFAULTS` (where the user has not) if NumPy is not loaded yet.

    Called by entry points only (the ``made-np`` command, the benchmark), never on
    ``import made_np``: it changes the whole process. Returns whether it could.
    """
    if "numpy" in sys.modules:
        return False
    for name, value in BLAS_ENV_DEFAULTS.items():
        os.environ.setdefault(name, value)
    return True
