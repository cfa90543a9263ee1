"""MADE in NumPy/CuPy with hand-written gradients.

The Python API::

    from made_np import MADE, MADEConfig, TrainConfig, fit, evaluate, sample
    from made_np import load_dataset, load_checkpoint, save_checkpoint, complete, log_marginal
    from made_np import MADEDensity          # a scikit-learn density estimator

The names load on first use, so ``import made_np`` itself imports nothing heavy
(NumPy included): an entry point such as the ``made-np`` command can still set
NumPy's BLAS options before NumPy loads.
"""

__version__ = "0.1.0"

#: Public name -> the module that defines it.
_API = {
    "MADE": "made_np.model",
    "MADEConfig": "made_np.config",
    "TrainConfig": "made_np.config",
    "fit": "made_np.train",
    "evaluate": "made_np.train",
    "sample": "made_np.sampling",
    "load_dataset": "made_np.data",
    "load_checkpoint": "made_np.checkpoint",
    "save_checkpoint": "made_np.checkpoint",
    "complete": "made_np.conditional",
    "log_marginal": "made_np.conditional",
    "MADEDensity": "made_np.estimator",
}

__all__ = ["__version__", *_API]


def __getattr__(name):
    if name in _API:
        import importlib

        value = getattr(importlib.import_module(_API[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'made_np' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_API))
