"""MADE in NumPy/CuPy with hand-written gradients.

The Python API::

    from made_np import MADE, MADEConfig, TrainConfig, fit, evaluate, sample
    from made_np import load_dataset, load_checkpoint, save_checkpoint, complete, log_marginal
    from made_np import MADEDensity          # a scikit-learn density estimator

and what the ``made-np`` command line uses (it imports nothing else but :mod:`made_np.plots`): the
data and checkpoint files, the memory estimates, the choices of the options, the exceptions.

The names load on first use, so ``import made_np`` itself imports nothing heavy
(NumPy included): an entry point such as the ``made-np`` command can still set
NumPy's BLAS options before NumPy loads.
"""

__version__ = "0.1.0"

#: The public names, by the module that defines them. ``made_np.plots`` (matplotlib) is imported by name.
_MODULES = {
    "made_np.model": "MADE",
    "made_np.config": "MADEConfig TrainConfig UNLIMITED MAX_EVAL_MASKS MAX_COUNT MAX_EPOCHS EPOCHS_RANGE UPDATES_BUDGET "
                      "SMALL_DATA_MASKS SMALL_DATA_ROWS ATOM_SHARE ATOM_RATIO recipe_summary DEFAULT_DIRECT MAX_COMPONENTS ENCODINGS ENGINES LR_SCHEDULES OUTPUT_BIASES PRESETS",
    "made_np.train": "fit evaluate mean_and_stderr DivergenceError",
    "made_np.select": "fit_selected fit_choice first_checkpoint selects candidates candidate_row choose table_lines validation_nll "
                      "CANDIDATES CANDIDATES_DIR CHOOSING CHOSEN_SETTINGS",
    "made_np.sampling": "sample balanced_labels METHODS DEFAULT_METHOD",
    "made_np.conditional": "complete impute log_marginal mixture_size occlusion_mask COMPLETION_METHODS "
                           "DISCRETE_ESTIMATES",
    "made_np.density": "log_density_table entropy kl_divergence",
    "made_np.estimator": "MADEDensity MADEImputer",
    "made_np.checks": "MAX_SEED check_context",
    "made_np.backend": "get_xp to_host device_of DEVICES DTYPES BackendError BackendChoiceError",
    "made_np.layers": "ACTIVATIONS INITS",
    "made_np.masks": "ORDERINGS BANK_ORDERINGS DEGREE_RULES MaskError",
    "made_np.optim": "OPTIMIZERS",
    "made_np.heads": "HEADS",
    "made_np.npyio": "DataError expand_path one_line",
    "made_np.download": "fetch SOURCES DIST_FILE MNIST_FILE",
    "made_np.data": "square_image_shape MIN_IMAGE_SIDE load_dataset read_array read_table is_named check_same_data CONTEXT_SOURCES NAMES PATH_NAMES find_data_file",
    "made_np.checkpoint": "load_checkpoint save_checkpoint read_checkpoint_meta update_checkpoint_meta "
                          "resolve_checkpoint_path check_resume_state finished_run_blocker",
    "made_np.runfolder": "CHECKPOINT_NAME METRICS_NAME RESULTS_NAME CheckpointError RunFolderError run_lock "
                         "atomic_file write_json json_text other_run",
    "made_np.limits": "LimitError memory_limit use_limit check_api model_parts sample_parts rows_parts complete_parts "
                      "png_parts check_png_count training_parts figure_samples Part MAX_PNG_IMAGES",
    "made_np.fast": "prefer_short_blas_spin unset_empty_thread_variables",
    "made_np.fast.threads": "ThreadError parse_threads check_thread_variables",
}
#: Public name -> the module that defines it.
_API = {name: module for module, names in _MODULES.items() for name in names.split()}

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
