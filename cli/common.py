"""What the commands share: one-line errors, the group class, common options and loaders.

Every user error (a missing or malformed file, a bad option value, an unusable
device) prints one line ``Error: ...`` and exits with status 2, never a traceback.
This package holds no math and no training recipe: those are the library's.
"""
from __future__ import annotations

import contextlib
import functools
import os
import re
import sys
import tempfile
from pathlib import Path

import click

import made_np
from made_np import (CHECKPOINT_NAME, DEVICES, DIST_FILE, MAX_EVAL_MASKS, MAX_SEED, MNIST_FILE, PATH_NAMES,
                     BackendError, BackendChoiceError, CheckpointError, DataError, LimitError, MaskError, ThreadError,
                     atomic_file, balanced_labels, check_context, check_same_data, check_thread_variables, evaluate,
                     find_data_file, is_named, json_text, load_checkpoint, load_dataset, other_run, read_array,
                     square_image_shape, to_host)

#: Exceptions that are the user's doing: shown as one line, exit status 2.
USER_ERRORS = (DataError, BackendError, BackendChoiceError, CheckpointError, MaskError, ThreadError, LimitError)
#: ``--seed`` and ``--data-seed``: non-negative integers below 2**63.
SEED = click.IntRange(0, MAX_SEED)


def seed_option(help: str, name: str = "--seed"):
    """``--seed`` (or ``name``, e.g. ``--data-seed``): an integer in 0..2**63-1, default 0."""
    return click.option(name, type=SEED, default=0, help=help)


def given(ctx, name: str) -> bool:
    """Whether option ``name`` was given on the command line (not its default)."""
    return ctx.get_parameter_source(name) == click.core.ParameterSource.COMMANDLINE


class UserError(click.ClickException):
    """A one-line user error (exit status 2)."""

    exit_code = 2


#: An exception's or a message's text on one line, all of it (the library's messages are short already).
one_line = functools.partial(made_np.one_line, limit=None)


@contextlib.contextmanager
def user_values(options: dict | None = None, prefix: str = ""):
    """Turn a ``ValueError`` of the library (its checks, in :mod:`made_np.checks` and the
    configurations) into a :class:`UserError`: the one place where the library's words become the
    command line's. ``options`` maps the name of an argument that a message starts with (``lr``,
    ``mask index``) to the option that gives it (``--lr``, ``--mask-index``); ``prefix`` goes first."""
    try:
        yield
    except USER_ERRORS:
        raise
    except ValueError as exc:
        text = one_line(exc)
        name = next((n for n in options or () if re.match(rf"{re.escape(n)}\b", text)), None)
        raise UserError(prefix + (text if name is None else options[name] + text[len(name):])) from None


#: Raised by Click >= 8.2 for a group called without its command; Click 8.1 prints the help and
#: exits 0 by itself, and has no such class (an ``except`` naming it would fail on every error).
_NO_ARGS_IS_HELP = getattr(click.exceptions, "NoArgsIsHelpError", ())


def say(text: str = "") -> None:
    """Print a line to standard output, or, once it cannot be written (a reader that went away:
    ``| head``; a full disk under ``> file``), say so once on standard error and print no more:
    the command goes on, since what it makes is in its files (a run folder), not in its output."""
    ctx = click.get_current_context(silent=True)
    meta = ctx.meta if ctx is not None else {}
    if meta.get("made_np.stdout_gone"):
        return
    try:
        click.echo(text)
    except OSError as exc:
        meta["made_np.stdout_gone"] = True
        with contextlib.suppress(OSError, ValueError):  # later writes, and Python's flush at exit, go nowhere
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            os.close(devnull)
        with contextlib.suppress(OSError):
            click.echo(f"made-np: standard output cannot be written ({one_line(exc.strerror or exc)}); "
                       "going on without printing", err=True)


class PathParam(click.Path):
    """:class:`click.Path` that refuses an empty name (an unset ``$VAR`` in a script), which
    it would read as the current folder: ``--resume ""`` started a new run."""

    def convert(self, value, param, ctx):
        if isinstance(value, str) and not value.strip():
            self.fail("an empty name; give a path (is a variable in the command unset?)", param, ctx)
        return super().convert(value, param, ctx)


class Group(click.Group):
    """A group whose errors are always one line ``Error: ...`` (exit 2 for user errors), and
    which prints its help (exit 0) when called without a command."""

    def invoke(self, ctx):
        try:
            check_thread_variables()
            return super().invoke(ctx)
        except USER_ERRORS as exc:
            raise UserError(one_line(exc)) from None
        except BrokenPipeError:  # the reader of our output went away (| head): nothing to tell it
            raise
        except OSError as exc:  # a path the system refuses (too long, a loop, no access): still one line
            where = f"{exc.filename}: " if exc.filename else ""
            reason = one_line(exc.strerror or exc)
            raise UserError(f"{where}{reason}; check the path (and its permissions) or choose another") from None
        except MemoryError as exc:  # past the estimates of made_np.limits: still one line
            detail = f" ({one_line(exc)})" if str(exc) else ""
            raise UserError(f"out of memory{detail}; try a smaller --hidden, --batch-size or -n, or free "
                            "memory on this machine") from None
        finally:
            made_np.use_limit(None)  # a --max-memory holds for its own command only

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        try:
            rv = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except _NO_ARGS_IS_HELP as exc:  # a group with no command: its help
            click.echo(exc.ctx.get_help())
            sys.exit(0)
        except click.ClickException as exc:  # a usage error (bad option, missing argument) names the help
            ctx = getattr(exc, "ctx", None) if isinstance(exc, click.UsageError) else None
            hint = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
            click.echo(f"Error: {one_line(exc.format_message())}{hint}", err=True)
            sys.exit(exc.exit_code)
        except click.Abort:
            click.echo("Aborted!", err=True)
            sys.exit(130)
        sys.exit(rv if isinstance(rv, int) else 0)  # an int here is the code of ctx.exit()


#: ``--device cpu|cuda`` (default ``$MADE_NP_DEVICE``, else cpu).
device_option = click.option(
    "--device", type=click.Choice(DEVICES), default=None, show_default="$MADE_NP_DEVICE, else cpu",
    help="Where to compute: cpu (NumPy) or cuda (CuPy, needs pip install -e '.[cuda]').")
#: ``--dataset-path``: where the data file of a named data set lies.
dataset_path_option = click.option(
    "--dataset-path", type=PathParam(), default=None, show_default="search $MADE_NP_DATA, the cache, ../shared/data",
    help="The data file (or a folder holding it) for binarized-mnist or 2d; for a run trained on a data "
         "file, where that file lies now.")
#: ``--max-memory SIZE``: the memory limit of :mod:`made_np.limits`.
max_memory_option = click.option(
    "--max-memory", default=None, metavar="SIZE", show_default="$MADE_NP_MAX_MEMORY, else half the RAM",
    help="Refuse work estimated to need more memory than this: 2G, 500M, or bytes.")


def options(*decorators):
    """One decorator applying ``decorators`` as if stacked in this order (the first is first in --help)."""
    return lambda f: functools.reduce(lambda f, option: option(f), reversed(decorators), f)


#: ``--device``, ``--dataset-path``, ``--max-memory``: of the commands that read a run and its data set.
run_data_options = options(device_option, dataset_path_option, max_memory_option)


def observed_options(default: str, observed: str, masks: str = ""):
    """``--observed``, ``--occlude`` and ``--masks`` (of ``complete`` and ``evaluate``): the observed entries
    of partly observed examples, and the observed-first masks of their mixture. ``default``: what the
    command does without them; ``observed`` ends the help of --observed, ``masks`` follows 'mixture' in --masks'."""
    return options(click.option("--observed", type=PathParam(dir_okay=False), default=None, show_default=default,
                                help=f"A .npy (N, D) (or (D,) for every row) of 0/1: 1 = observed{observed}."),
                   click.option("--occlude", default=None, show_default="none",
                                help="Hide part of every example instead of --observed: top, bottom, left, right (half "
                                     "of an image) or random:P (each variable with probability P, seeded by --seed)."),
                   click.option("--masks", type=click.IntRange(1, MAX_EVAL_MASKS), default=16,
                                help=f"Observed-first masks in the mixture{masks} (order-agnostic models: a bank with "
                                     "--order-agnostic or --num-masks inf); a single-ordering model uses its own mask(s)."))


#: ``--json``: one JSON object instead of text.
json_option = click.option("--json", "as_json", is_flag=True, default=False,
                           help="Print one JSON object instead of text (off by default).")


@contextlib.contextmanager
def row_progress(n_rows: int, label: str):
    """A progress bar on stderr (shown on a terminal only) over ``n_rows`` rows, with its time
    left; yields the ``progress(n)`` callback that the marginals and completions call after each
    group of rows sharing an observed pattern (random occlusions: a pattern a row); None, and
    nothing printed, when stderr is not a terminal."""
    if not sys.stderr.isatty():
        yield None
        return
    with click.progressbar(length=n_rows, label=label, file=sys.stderr, show_eta=True) as bar:
        yield bar.update


def report(result: dict, as_json: bool, *lines: str) -> None:
    """Print ``result`` as one JSON object (``--json``), else the text ``lines``."""
    for line in [json_text(result, "--json")] if as_json else lines:
        click.echo(line)


def memory_limit(max_memory) -> int:
    """The limit in bytes of ``--max-memory`` (or ``$MADE_NP_MAX_MEMORY``, or half the RAM): for the
    rest of the command also the limit of the library's checks (:func:`made_np.limits.check_api`)."""
    limit = made_np.memory_limit(max_memory)
    made_np.use_limit(limit)
    return limit


def load_run(checkpoint, device=None, max_memory=None, *, best: bool = True, outputs=(), inputs=()):
    """The start of every command that reads a checkpoint (file or run folder): check its output files
    before any work (``outputs``: ``(option, path or None, suffixes)``; none of them one of the
    command's ``inputs``, the checkpoint or another output), apply the memory limit, load the model
    (refused beyond the limit before its weights are read) and check that no output is the data the
    run was trained on (its ``--dataset`` file, ``--dataset-path``, or where a named data set is found)
    or a file of another run folder (:func:`made_np.runfolder.other_run`).
    Returns ``(model, info, [each output's checked path, or None])``; errors become one line."""
    paths = []
    for option, path, suffixes in outputs:
        out = None if path is None else output_path(path, option, suffixes, (checkpoint, *inputs, *paths))
        if out is not None and any(p is not None and out.resolve() == p.resolve() for p in paths):
            raise UserError(f"{option} {out}: the same file as --out; give another name")
        paths.append(out)
    limit = memory_limit(max_memory)
    with user_values():
        model, info = load_checkpoint(checkpoint, device, best=best, memory_limit=limit)
    spec = info.get("dataset") or {}
    name = str(spec.get("spec") or "")
    data = [spec.get("path"), None if is_named(name) else name]
    if name.lower() in PATH_NAMES:  # the named sets read from a file
        with contextlib.suppress(DataError, OSError):
            data.append(find_data_file(DIST_FILE if name.lower() == "2d" else MNIST_FILE, None))
    for (option, *_), out in zip(outputs, paths):  # writing the data would leave the run unable to resume
        why = out is not None and other_run(out, own=Path(info["path"]).parent)
        if why:
            raise UserError(f"{option} {out}: {why}")
        if out is not None and any(file and _same_file(out, file) for file in data):
            raise UserError(f"{option} {out}: is the data file the run was trained on; writing it would "
                            "lose the data the run resumes and is evaluated on: choose another file name")
    return model, info, paths


def output_path(path, option: str, suffixes: tuple, inputs: tuple = ()) -> Path:
    """Check an output file before any work: its extension (any case), that it is not a folder, a
    device, a pipe or a socket (links followed), that it is none of the command's ``inputs`` (the
    checkpoint, data files: writing over one would lose it), and that its folder exists or can be
    created, and can be written to. Returns the path, to be written under exactly that name (its
    folder is created only when writing).

    Raises
    ------
    UserError
        Naming ``option`` and the fix.
    """
    out = Path(path)
    if out.suffix.lower() not in suffixes:
        raise UserError(f"{option} {out}: expected a {' or '.join(suffixes)} file name")
    if out.is_dir():
        raise UserError(f"{option} {out}: is a folder; give a file name")
    if out.exists() and not out.is_file():  # a rename onto it would replace the device (/dev/null) itself
        raise UserError(f"{option} {out}: is not a regular file (a device, a pipe or a socket); give a file name")
    for other in inputs:
        if other is not None and _same_file(out, other):
            raise UserError(f"{option} {out}: is an input of this command ({other}); writing it would "
                            "overwrite it: choose another file name")
    # the nearest folder that exists on the way up: a folder a file can be created in
    existing = next((p for p in (out.parent, *out.parent.parents) if p.exists()), out.parent)
    if not existing.is_dir():
        raise UserError(f"{option} {out}: {existing} is a file, not a folder; choose another path")
    try:
        fd, tmp = tempfile.mkstemp(dir=existing, prefix=".made-np-write-test-")
        os.close(fd)
        os.unlink(tmp)
    except OSError as exc:
        raise UserError(f"{option} {out}: cannot write into {existing} ({one_line(exc.strerror or exc)}); "
                        "choose another path") from None
    return out


def _same_file(out: Path, other) -> bool:
    """Whether ``out`` names the file ``other`` (a file, or a run folder: its checkpoint)."""
    other = Path(other) / CHECKPOINT_NAME if Path(other).is_dir() else Path(other)
    with contextlib.suppress(OSError):
        return out.exists() and other.exists() and os.path.samefile(out, other)
    return False


@contextlib.contextmanager
def writing(path, option: str):
    """Create the folder of ``path`` (checked by :func:`output_path`) and turn an OSError while writing
    it (disk full, a read-only file) into one line naming ``option``. Outputs are written through a
    temporary file (:func:`made_np.runfolder.atomic_file`), so an earlier file of that name is still whole."""
    try:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        yield
    except OSError as exc:
        kept = " (an earlier file of that name is kept)" if Path(path).exists() else ""
        raise UserError(f"{option} {path}: cannot write ({one_line(exc.strerror or exc)}){kept}; free "
                        "space or choose another path") from None


def write_arrays(path, option: str, save, *args, **kwargs) -> None:
    """``save(file, *args, **kwargs)`` (``np.save``, ``np.savez``) into exactly ``path`` (``np.save(name)``
    would append .npy to a name ending in .NPY), under :func:`writing`."""
    with writing(path, option), atomic_file(path, "wb") as f:
        save(f, *args, **kwargs)


def check_dataset_path(dataset: str, dataset_path) -> None:
    """``--dataset-path`` locates the file of binarized-mnist or 2d; with another data set it
    would be ignored, so it is refused."""
    if dataset_path is not None and str(dataset).lower() not in PATH_NAMES:
        raise UserError(f"--dataset-path {dataset_path}: only binarized-mnist and 2d are looked for there; "
                        f"the data set {dataset!r} needs none (leave --dataset-path out)")


def load_split(info: dict, split: str, dataset_path=None):
    """Reload the data set a checkpoint was trained on and return ``(dataset, split array)``.

    The data set comes with the context it was trained with (``spec["context"]``), so that
    ``dataset.context_of(split)`` is the split's context for a conditional model.
    ``dataset_path`` (``--dataset-path``) is where binarized-mnist or 2d lies, or, for a run
    trained on a data file, where that file lies now (it was moved); either way it must hold
    the same data (:func:`made_np.data.check_same_data`).

    Raises
    ------
    UserError
        The checkpoint names no data set, its width differs from the model's, or the data
        changed since it was trained.
    """
    spec = info.get("dataset") or {}
    if not spec.get("spec"):
        raise UserError(f"{info['path']}: the checkpoint names no data set to evaluate on")
    source, path = spec["spec"], dataset_path or spec.get("path")
    named = is_named(source)
    if dataset_path is not None and not named:  # a run trained on a file: where that file is now
        source, path = str(dataset_path), None
    elif dataset_path is not None:
        check_dataset_path(source, dataset_path)
    try:
        ds = load_dataset(source, path=path, seed=int(spec.get("seed") or 0), context=spec.get("context"),
                          real=bool(spec.get("real")), allow_nan=bool(spec.get("allow_nan")))
    except DataError as exc:
        hint = "" if dataset_path is not None else ("; pass its file with --dataset-path" if named else
                                                   "; if the file has moved, give its new place with --dataset-path")
        raise UserError(f"{info['path']}: cannot load the data set it was trained on: {one_line(exc)}{hint}") from None
    D, C = info["model_config"].D, info["model_config"].classes
    check_same_data(spec, ds, str(info["path"]), source=None if dataset_path is None else f"--dataset-path {dataset_path}")
    if ds.D != D:
        raise UserError(f"data set {spec['spec']!r} has D = {ds.D}, but the checkpoint's model has D = {D}")
    if ds.classes > C:
        raise UserError(f"data set {spec['spec']!r} has {ds.classes} classes, but the checkpoint's model has "
                        f"{C}; it was trained on other data")
    return ds, getattr(ds, split)


def image_shape_of(info: dict):
    """The image shape stored with a checkpoint's data set, else that of a square D (:func:`made_np.square_image_shape`:
    a side of at least 4; a 4- or 9-column table is no image): None."""
    stored = (info.get("dataset") or {}).get("image_shape")
    return tuple(stored) if stored else square_image_shape(info["model_config"].D)


def check_header(info: dict, columns, path) -> None:
    """``--input``'s .csv header (``columns``, empty without one) against the header of the file the run
    trained on (where it had one): the same names in the same order, or a UserError."""
    trained = [str(c) for c in (info.get("dataset") or {}).get("columns") or ()]
    if columns and trained and list(columns) != trained:
        raise UserError(f"--input {path}: its header names the columns {', '.join(columns)}, but the model was "
                        f"trained on {', '.join(trained)}: give the columns in that order")


def format_nats(mean: float, stderr, n: int, per_dim: tuple | None = None) -> str:
    """``mean ± stderr nats``, with ``per_dim`` (evaluate's ``nll_per_dim``, ``stderr_per_dim``) followed by
    ``(... ± ... nats/dim)``; of one example (``n < 2``, ``stderr`` None) the standard error is undefined:
    ``mean ± n/a nats (...; one example: no standard error)``."""
    if n < 2 or stderr is None:
        shown = f"{per_dim[0]:.5f} ± n/a nats/dim; " if per_dim else ""
        return f"{mean:.3f} ± n/a nats ({shown}one example: no standard error)"
    return f"{mean:.3f} ± {stderr:.3f} nats" + (f" ({per_dim[0]:.5f} ± {per_dim[1]:.5f} nats/dim)" if per_dim else "")


def evaluate_both(model, x, eval_masks=None, batch_size: int = 1000, mask_index: int = 0, context=None) -> dict:
    """Single-mask and (when the bank has more than one mask) ensemble results.

    ``context``: the rows' context for a conditional model. Returns ``{"single": result,
    "ensemble": result or None}`` (see :func:`made_np.train.evaluate`).
    """
    return {"single": evaluate(model, x, ensemble=False, batch_size=batch_size, mask_index=mask_index, context=context),
            "ensemble": None if model.config.num_masks == 1 else
            evaluate(model, x, ensemble=True, eval_masks=eval_masks, batch_size=batch_size, context=context)}


def parse_context(model, text, n: int, n_given: bool = True, unit: str = "samples"):
    """The ``--context`` of ``sample`` and ``complete``: ``(context, n)`` for ``model``.

    ``text`` is a class label (an integer, for a onehot context) or a ``.npy`` file of
    labels (m,) or rows (m, C). One label or row is repeated to ``n`` rows; m > 1 rows give one
    row per sample: ``n`` becomes m unless it was given (``n_given``), when the two must agree
    (``unit``: what the rows are, in messages).
    Without ``--context`` a class-conditional model gets :func:`made_np.sampling.balanced_labels`
    (``n`` of them, spread over the classes); a raw-context model needs one. The context is
    returned encoded, (n, C) on the host, or None for an unconditional model.

    Raises
    ------
    UserError
        A context for an unconditional model, none for a raw one, an unreadable file, a label
        outside the classes, or a number of rows that does not fit.
    """
    c = model.config
    if text is None:
        if c.context and c.context_encoding != "onehot":
            raise UserError(f"this model is conditioned on a context of {c.context} raw features: "
                            "pass --context PATH.npy with (n, C) rows")
        if not c.context:
            return None, n
        y = balanced_labels(n, c.context)
    elif (t := str(text).strip()).lstrip("-").isdecimal():  # digits int() reads (isdigit() took "³")
        if c.context and c.context_encoding != "onehot":
            raise UserError(f"--context {t}: a class label needs a class-conditional model; "
                            "this one takes raw features: pass a .npy of (n, C) rows")
        y = int(t)
    elif not t or not Path(t).exists():
        kind = "a class label (an integer) or " if c.context_encoding == "onehot" else ""
        raise UserError(f"--context {t!r}: expected {kind}an existing .npy file")
    else:
        y = read_array(t, "--context")
        if y.dtype.kind not in "biuf":
            raise UserError(f"--context {t}: has dtype {y.dtype}; expected class labels (integers) or rows of numbers")
        rows = 1 if y.ndim == 0 or (c.context_encoding == "raw" and y.ndim == 1) else y.shape[0]
        if rows == 0:  # it used to give 0 samples, or an error of the figure
            raise UserError(f"--context {t}: no rows; give one label or row, or one per sample")
        if rows != 1 and n_given and rows != n:
            raise UserError(f"--context {t}: {rows} rows for {n} {unit} (give one row, or one per {unit[:-1]})")
        n = n if rows == 1 else rows
    with user_values(prefix="" if text is None else f"--context {t}: "):  # the library's checks of the context
        return to_host(check_context(model, y, n)), n


def result_lines(res: dict, split: str) -> list:
    """The single-mask and ensemble figures, one above the other, aligned."""
    s, e = res["single"], res["ensemble"]
    labels = [f"{split} NLL, mask {s['mask_index']}"]
    if e is not None:
        labels.append(f"{split} NLL, ensemble of {e['masks']} mask{'s' if e['masks'] != 1 else ''}")
    width = max(len(label) for label in labels)
    missing = s.get("missing_rows", 0)  # results.json of older runs lack it
    return ([f"{label:<{width}} : {format_nats(r['nll'], r['stderr'], r['n'], (r['nll_per_dim'], r['stderr_per_dim']))}"
             for label, r in zip(labels, (s, e))]
            + ([f"({missing} of {s['n']} rows have missing entries: scored on their observed entries, -log p(x_o); "
                 "nats/dim per observed entry)"]
               if missing else []))

