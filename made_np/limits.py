"""Sizes checked before allocating: the memory a command will need, against a limit.

Every command that builds arrays whose size the user chooses (``--hidden``, ``-n``,
``--batch-size``, a data set's ``D`` and classes, a checkpoint's configuration)
first adds up what it is about to allocate and refuses with one line naming the
option and the estimate when the sum exceeds the limit::

    --hidden 1000000,1000000 (D = 64, 2 classes) needs about 14.6 TiB of memory, mostly
    for parameters, gradients and Adam's state (14.6 TiB); the limit is 12.0 GiB
    (--max-memory or $MADE_NP_MAX_MEMORY raises it)

The limit is ``--max-memory`` (``2G``, ``500M``, ``1.5GiB`` or a number of bytes),
else ``$MADE_NP_MAX_MEMORY``, else half of the machine's RAM (:func:`default_limit`),
or :data:`FALLBACK_LIMIT` where the RAM cannot be read.

The estimates are deliberately coarse (a factor of two either way): they count the
arrays that grow with the user's choices and ignore the fixed costs (Python, NumPy,
matplotlib). They are there to turn "Unable to allocate 7.3 TiB" minutes into a run,
or a machine swapping to death, into an immediate, actionable error.

Count bounds of figures live here too (:data:`MAX_PNG_IMAGES`: a ``.png`` grid of samples); those
of masks are the configuration's (:data:`made_np.config.MAX_EVAL_MASKS`, ``MAX_NUM_MASKS``).
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass

ENV = "MADE_NP_MAX_MEMORY"
#: The limit where the machine's RAM cannot be read.
FALLBACK_LIMIT = 16 * 2**30
#: Images in a ``.png`` grid of samples. The figure's height grows with them (Agg draws at most
#: 2^16 pixels a side), and matplotlib resamples it in float64 RGBA: 5000 MNIST images take
#: 3 GB and 25 s to draw. More samples belong in an ``.npy``.
MAX_PNG_IMAGES = 2500
#: Bytes per pixel of a rendered figure: matplotlib's float64 RGBA resampling buffers and copies.
FIGURE_BYTES_PER_PIXEL = 80
#: Points of a ``.png`` scatter or rows of a heat-map of samples (data that are not images).
MAX_PNG_POINTS = 200_000
#: Parameter copies of a loaded model: weights, masks, gradients and the masked-product buffer
#: (:class:`made_np.layers.MaskedDense`), plus the arrays read from the checkpoint.
MODEL_COPIES = 6
#: Extra parameter copies while training, besides the optimiser's state buffers and their copies in
#: the checkpoint (:func:`model_parts`): the in-place optimiser's scratch buffer, the block-sparse
#: form (2), the best weights, and the checkpoint's copies of the weights and the best weights.
TRAIN_EXTRA_COPIES = 1 + 2 + 1 + 2
_UNITS = {"": 1, "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40, "p": 2**50}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)(?:e(\d+))?\s*([kmgtp]?)(?:i?b)?\s*$", re.IGNORECASE)


#: The masks of a bank are kept on the device while they take at most this many bytes
#: (else each :meth:`made_np.model.MADE.mask` rebuilds its mask): a bank's masks are bool, one byte an
#: entry (32 masks of a 1x8000 MNIST MADE with direct connections: 421 MB), a single
#: fixed mask is in the weights' dtype.
MASK_CACHE_BYTES = 512 * 2**20


class LimitError(ValueError):
    """A request beyond a size limit; the message is one line naming the option and the fix."""


def fmt_bytes(n: float) -> str:
    """``1536`` -> ``"1.5 KiB"``; binary units up to EiB (an int beyond float's range: ``"more than 1e308 bytes"``)."""
    if n > 1e308:  # a file header may declare any integer: float(n) would raise
        return "more than 1e308 bytes"
    n = float(n)
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if n < 1024:
            return f"{int(n)} bytes" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} EiB"


def parse_size(text, what: str = "--max-memory") -> int:
    """``"2G"`` -> 2 GiB, ``"500M"``, ``"1.5GiB"``, ``"64k"``, ``"1000000"`` (bytes) -> bytes.

    Units are binary (``K`` = 1024) and case-insensitive; ``B``/``iB`` may follow.

    Raises
    ------
    LimitError
        Anything else, or a size below 1 MiB or above 1 EiB; the message names ``what``.
    """
    m = _SIZE.match(str(text))
    if m is None or len(str(text)) > 40:
        raise LimitError(f"{what}: expected a size like 2G, 500M or a number of bytes, got {str(text)[:40]!r}")
    # parsed as a float: 1e400 is inf (10 ** 400 overflowed a float; 10 ** 999999999 took minutes)
    value = float(f"{m.group(1)}e{m.group(2) or 0}") * _UNITS[m.group(3).lower()]
    if not (2**20 <= value <= 2**60):
        size = fmt_bytes(value) if value < 2**70 else "more than 1 ZiB"
        raise LimitError(f"{what}: {str(text).strip()!r} is {size}; give a size between 1M and 1E")
    return int(value)


def default_limit() -> int:
    """Half of the machine's RAM (``os.sysconf``), else :data:`FALLBACK_LIMIT`."""
    try:
        pages, size = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return FALLBACK_LIMIT
    return pages * size // 2 if pages > 0 and size > 0 else FALLBACK_LIMIT


_LIMIT_IN_USE = None


def use_limit(limit) -> None:
    """Make ``limit`` (bytes, or None to undo) what :func:`memory_limit` returns without an
    option: the command line's ``--max-memory`` for the library's checks of its command."""
    global _LIMIT_IN_USE
    _LIMIT_IN_USE = None if limit is None else int(limit)


def memory_limit(option=None) -> int:
    """The limit in bytes: ``option`` (the ``--max-memory`` text or bytes), else the limit in use
    (:func:`use_limit`), else ``$MADE_NP_MAX_MEMORY``, else :func:`default_limit`.

    Raises
    ------
    LimitError
        A malformed ``option`` or environment variable (named in the message).
    """
    if option is not None:
        return parse_size(option, "--max-memory")
    if _LIMIT_IN_USE is not None:
        return _LIMIT_IN_USE
    env = os.environ.get(ENV)
    if env is not None and env.strip():
        return parse_size(env, f"${ENV}")
    return default_limit()


def check_api(parts) -> int:
    """:func:`check` against :func:`memory_limit` (``$MADE_NP_MAX_MEMORY``, else half the RAM):
    the Python API's guard before a large allocation (a new model, samples, completions).

    Raises
    ------
    LimitError
        A ValueError naming the argument, the estimate and the limit.
    """
    # within a command (:func:`use_limit`) the hint names its --max-memory
    return check(parts, memory_limit(), None if _LIMIT_IN_USE is not None else f"(${ENV} raises it, e.g. {ENV}=64G)")


# --------------------------------------------------------------------------- estimates


@dataclass(frozen=True)
class Part:
    """One term of an estimate: the option that sizes it, what it is, and its bytes."""

    option: str
    what: str
    nbytes: int


def check(parts, limit: int, hint: str | None = None) -> int:
    """Sum the parts; refuse with one line naming the largest part's option when over ``limit``.

    Returns
    -------
    int
        The estimate in bytes.

    Raises
    ------
    LimitError
    """
    parts = [p for p in parts if p.nbytes > 0]
    total = sum(p.nbytes for p in parts)
    if total > limit:
        big = max(parts, key=lambda p: p.nbytes)
        mostly = f"mostly for {big.what}" if len(parts) > 1 else f"for {big.what}"
        share = f" ({fmt_bytes(big.nbytes)})" if len(parts) > 1 else ""
        raise LimitError(f"{big.option} needs about {fmt_bytes(total)} of memory, {mostly}{share}; the limit "
                         f"is {fmt_bytes(limit)} {hint or f'(--max-memory or ${ENV} raises it)'}")
    return total


def layer_widths(cfg) -> list:
    """``[D * in_repeat, *hidden, D * out_repeat]`` of a :class:`made_np.config.MADEConfig`."""
    from . import backend
    from .heads import head_class

    in_repeat = cfg.classes if cfg.input_encoding == "onehot" else 1
    out_repeat = head_class(cfg.head).from_config(backend.get_xp("cpu"), cfg).logits_per_variable
    return [cfg.D * in_repeat, *cfg.hidden, cfg.D * out_repeat]


def num_weights(cfg, context: bool = True) -> int:
    """Entries of the weight matrices (the masked ones included) and direct connections, and with
    ``context`` the context blocks (which carry no mask)."""
    w, c = layer_widths(cfg), getattr(cfg, "context", 0) if context else 0
    return (sum(a * b for a, b in zip(w[:-1], w[1:])) + (c * w[1] if c and cfg.hidden else 0) + c * w[-1]
            + (w[0] * w[-1] if cfg.direct else 0))


def num_params(cfg) -> int:
    """Scalar parameters of the MADE of ``cfg``: weights and biases (exact, Python ints)."""
    return num_weights(cfg) + sum(layer_widths(cfg)[1:])


def itemsize(cfg) -> int:
    return 8 if cfg.dtype == "float64" else 4


def model_parts(cfg, *, label: str | None = None, optimizer: str | None = None, drawing: bool | None = None) -> list:
    """The parameters of a model and their copies: loaded (``optimizer=None``) or being trained with
    the optimiser registered as ``optimizer`` (with the state buffers its class declares, ``state_names``).
    ``drawing``: whether its initial weights are drawn here (default: when it is trained)."""
    size, P = itemsize(cfg), num_params(cfg)
    label = label or f"--hidden {','.join(map(str, cfg.hidden)) or '0'} (D = {cfg.D}, {cfg.classes} classes)"
    if optimizer is None:
        parts = [Part(label, "parameters, masks and gradients", P * size * MODEL_COPIES)]
    else:
        from .optim import optimizer_class

        cls = optimizer_class(optimizer)
        copies = MODEL_COPIES + TRAIN_EXTRA_COPIES + 2 * len(cls.state_names)  # a buffer, and its checkpoint copy
        parts = [Part(label, f"parameters, gradients and {cls.__name__}'s state", P * size * copies)]
    widths = layer_widths(cfg)
    biggest = max(a * b for a, b in zip(widths[:-1], widths[1:]))
    # drawn in float64, then cast (a loaded model draws nothing: the term is a margin there); a new
    # model's orthogonal draw also holds its Gaussian, QR's factors and LAPACK's workspace: peak
    # RSS 5.0x the matrix's float64 bytes
    drawing = optimizer is not None if drawing is None else drawing
    draws = 5.5 if drawing and getattr(cfg, "init", "uniform") == "orthogonal" else 1
    parts.append(Part(label, "the initial weights", int(biggest * 8 * draws)))
    mask_bytes = cfg.num_masks * num_weights(cfg, context=False) * (1 if cfg.num_masks != 1 else size)  # bank: bool
    if cfg.num_masks >= 1 and mask_bytes <= MASK_CACHE_BYTES:
        parts.append(Part(label, "the mask cache", mask_bytes))
    if cfg.input_encoding == "onehot":
        parts.append(Part(label, "the one-hot table", cfg.classes**2 * size))
    return parts


def rows_parts(cfg, rows: int, option: str, what: str, factor: int = 3) -> list:
    """Activations of ``rows`` examples through the network (forward, and backward when training)."""
    widths = layer_widths(cfg)
    per_row = sum(widths) * itemsize(cfg) * factor + cfg.D * (cfg.classes * itemsize(cfg) + 16)
    return [Part(option, what, rows * per_row)]


#: Bytes of a sampler's activations at a time: :func:`made_np.sampling.sample` draws in blocks of rows.
SAMPLE_BLOCK_BYTES = 1 << 28


def sample_block_rows(cfg) -> int:
    """Rows that :func:`made_np.sampling.sample` draws at once: activations of about
    :data:`SAMPLE_BLOCK_BYTES` (two copies of every layer's outputs)."""
    return max(1, SAMPLE_BLOCK_BYTES // (sum(layer_widths(cfg)) * itemsize(cfg) * 2))


def sample_parts(cfg, n: int, option: str = "-n", *, png: bool = False, image_shape=None,
                 blocked: bool = False) -> list:
    """Drawing ``n`` samples (noise, outputs, and the sampler's activations: of all ``n`` rows,
    or with ``blocked`` of one block of :func:`sample_block_rows` rows, as
    :func:`made_np.sampling.sample` draws), and a ``.png`` of them."""
    D, widths = cfg.D, layer_widths(cfg)
    rows = min(n, sample_block_rows(cfg)) if blocked else n
    parts = [Part(f"{option} {n}", "the samples, their noise and the sampler's activations",
                  n * D * 32 + rows * sum(widths) * itemsize(cfg) * 2)]
    if png:
        parts += png_parts(n, D, image_shape, option)
    return parts


def complete_parts(cfg, rows: int, n: int, masks: int, option: str = "-n", masks_option: str = "--masks") -> list:
    """Completing ``rows`` examples ``n`` times each (``made-np complete``): the completions, their
    noise and the sampler's activations (as :func:`sample_parts` for ``rows * n`` samples), and
    the log-probabilities of every example under each of the ``masks`` masks of the mixture."""
    D, widths = cfg.D, layer_widths(cfg)
    return [Part(f"{option} {n}", f"{rows} x {n} completions, their noise and the sampler's activations",
                 rows * n * (D * 32 + sum(widths) * itemsize(cfg) * 2)),
            Part(f"{masks_option} {masks}", f"the log-probabilities of {rows} examples under {masks} masks",
                 rows * masks * 8 * 4)]


def png_grid_pixels(n: int, image_shape, ncols: int = 10) -> tuple:
    """``(width, height)`` in pixels of :func:`made_np.plots.plot_sample_grid`'s figure of ``n`` images."""
    h, w = image_shape
    ncols = max(1, min(ncols, n))
    grid_h, grid_w = -(-n // ncols) * (h + 1) - 1, ncols * (w + 1) - 1
    width_px = 100 * min(12.0, max(2.0, 0.8 * ncols))  # plots: width in inches at 100 dpi
    return int(width_px), int(width_px * grid_h / grid_w)


def png_parts(n: int, D: int, image_shape, option: str = "-n", ncols: int = 10) -> list:
    """A ``.png`` of ``n`` samples in ``ncols`` columns: the mosaic (float64) and the rendered
    figure (:data:`FIGURE_BYTES_PER_PIXEL`)."""
    if image_shape:
        h, w = image_shape
        width_px, height_px = png_grid_pixels(n, image_shape, ncols)
        return [Part(f"{option} {n}", "the .png grid",
                     n * (h + 1) * (w + 1) * 8 + width_px * min(height_px, 2**16) * FIGURE_BYTES_PER_PIXEL)]
    return [Part(f"{option} {n}", "the .png figure", n * D * 8 * 4)]


def check_png_count(n: int, image_shape, option: str = "-n", ncols: int = 10) -> None:
    """Refuse a ``.png`` of more samples than a figure can show: more than :data:`MAX_PNG_IMAGES`
    images (:data:`MAX_PNG_POINTS` points of a scatter or heat-map), or a grid of ``ncols``
    columns taller than the 2^16 pixels Agg can draw (tall, narrow images)."""
    top = MAX_PNG_IMAGES if image_shape else MAX_PNG_POINTS
    kind = "images in a .png grid" if image_shape else "samples in a .png figure"
    fix = "write them to an .npy file instead (--out samples.npy)"
    if n > top:
        raise LimitError(f"{option} {n}: at most {top} {kind}; {fix}")
    if image_shape and png_grid_pixels(n, image_shape, ncols)[1] > 60_000:
        h, w = image_shape
        raise LimitError(f"{option} {n}: a .png grid of {n} images of {h} x {w} pixels would be too tall to "
                         f"draw; ask for fewer, or {fix}")


def figure_samples(ds) -> int:
    """Samples drawn for a run's ``samples.png``: a grid of 100 images, a histogram of 100,000 on
    the C x C grid of 2-D data, else 1000 rows (the count :func:`training_parts` charges)."""
    return 100 if ds.image_shape else (100_000 if ds.D == 2 else 1000)


def training_parts(mcfg, cfg, ds, dataset_option: str) -> list:
    """What a training run allocates: the model of ``mcfg`` with its optimiser state and copies, a
    minibatch's activations, the evaluation batches, the data ``ds`` and the samples figure.
    ``dataset_option``: the ``--dataset`` given, named in the message."""
    n_train = int(ds.train.shape[0])
    n_eval = max(int(ds.valid.shape[0]), int(ds.test.shape[0]))
    return (model_parts(mcfg, optimizer=cfg.optimizer)
            + rows_parts(mcfg, min(cfg.batch_size, n_train), f"--batch-size {cfg.batch_size}",
                         "the activations of a minibatch", factor=5)
            + rows_parts(mcfg, min(cfg.eval_batch_size, n_eval), f"--dataset {dataset_option}",
                         "the evaluation batches")
            + [Part(f"--dataset {dataset_option}", "the training data", 2 * n_train * ds.D)]  # moved and shuffled
            + sample_parts(mcfg, figure_samples(ds), "samples.png with", png=True, image_shape=ds.image_shape,
                           blocked=True))
