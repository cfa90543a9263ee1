"""Fuzz the command line with bad input: data files, option values and corrupted checkpoints.

The promise of ``made-np`` (docs/cli.md): bad input gets one line ``Error: ...`` naming the
option or file and the fix, exit status 2, no traceback, and sizes are checked before
anything large is allocated. Every case here runs the CLI in-process (Click's CliRunner)
and must end in

* exit 0 with a correct result (checked per command: the file written under the name
  printed, with the right shape and values; a finite NLL), or
* exit 2 with exactly one line ``Error: ...``, no traceback, ``result.exception`` a
  ``SystemExit`` (an uncaught exception would be exit 1 with the exception kept).

A small valid checkpoint is trained once per module (D = 4, 40 rows, 1 epoch) and
mutated: JSON config fields replaced or removed, entries replaced (NaN, inf, complex,
integers, other shapes, pickled objects, headers that lie about their size), removed or
added, files truncated or overwritten with random bytes. The memory limit is set to
256 MiB for every run, so that an accepted huge size fails fast instead of allocating.
"""
from __future__ import annotations

import io
import itertools
import json
import math
import tracemalloc
import zipfile
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import examples
from hypothesis import given
from hypothesis import strategies as st

from made_np.checkpoint import CheckpointError, load_checkpoint
from made_np.cli import cli

LIMIT_ENV = {"MADE_NP_MAX_MEMORY": "256M"}
D, N_TRAIN = 4, 40
_counter = itertools.count()


def invoke(*args):
    return CliRunner(env=LIMIT_ENV).invoke(cli, [str(a) for a in args])


def outcome(result) -> str:
    """``"ok"`` (exit 0) or ``"error"`` (exit 2, one line ``Error: ...``); anything else fails the test."""
    if result.exit_code == 0:
        assert result.exception is None or isinstance(result.exception, SystemExit), result.output
        return "ok"
    detail = f"exit {result.exit_code}, exception {result.exception!r}, output:\n{result.output}"
    assert result.exit_code == 2, detail
    assert isinstance(result.exception, SystemExit), detail
    assert "Traceback" not in result.output, detail
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), detail
    assert len(lines[0]) < 600, lines[0]  # one readable line, not a dump
    return "error"


def fresh(folder: Path, name: str) -> Path:
    """A path that no other example used."""
    return folder / f"{next(_counter)}-{name}"


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz")


@pytest.fixture(scope="module")
def tiny_data(work):
    rng = np.random.default_rng(0)
    path = work / "tiny.npz"
    np.savez(path, train_data=rng.integers(0, 2, (N_TRAIN, D)).astype(np.uint8),
             valid_data=rng.integers(0, 2, (10, D)).astype(np.uint8),
             test_data=rng.integers(0, 2, (10, D)).astype(np.uint8))
    return path


@pytest.fixture(scope="module")
def run_dir(work, tiny_data):
    """A finished run: bank of 2 masks, hidden 6, 1 epoch on the tiny data."""
    out = work / "run"
    result = invoke("train", "--dataset", tiny_data, "--hidden", 6, "--num-masks", 2, "--epochs", 1,
                    "--out", out, "-q")
    assert result.exit_code == 0, result.output
    return out


def npz_members(path: Path) -> dict:
    """``{entry name: raw .npy bytes}`` of an .npz."""
    with zipfile.ZipFile(path) as zf:
        return {n[:-4]: zf.read(n) for n in zf.namelist()}


def write_npz(path: Path, members: dict) -> Path:
    path.write_bytes(npz_bytes(members))
    return path


def npy_bytes(a, allow_pickle: bool = True) -> bytes:
    buf = io.BytesIO()
    np.save(buf, a, allow_pickle=allow_pickle)
    return buf.getvalue()


def npz_bytes(members: dict) -> bytes:
    """A zip archive of raw ``.npy`` members, ``{name: bytes}`` (stored as ``name.npy``)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for k, v in members.items():
            zf.writestr(k + ".npy", v)
    return buf.getvalue()


def lying_npy(shape=(2**50,), descr="<f8", body: bytes = b"\0" * 100) -> bytes:
    """An .npy whose header declares ``shape`` (8 PiB by default) over a few bytes of data."""
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": descr, "fortran_order": False, "shape": shape})
    return buf.getvalue() + body


# --------------------------------------------------------------------------- value strategies

NASTY_NUMBERS = ["-1", "0", "1", "2", "3", "1.5", "1e20", "nan", "inf", "-inf", "", " ", "abc", "0x10",
                 "9" * 30, "100000000000", "1000000", "-0"]
NASTY_TEXT = st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=8)


def option_values(pool):
    return st.one_of(st.sampled_from(pool), NASTY_TEXT)


JSON_VALUES = st.one_of(
    st.sampled_from([None, True, False, 0, 1, 2, 3, -1, 64, 2**31, 10**12, 2**70, 64.5, 1.0, 1e308,
                     float("nan"), float("inf"), "", "1", "digits", "relu", "float16", [], [3, 3], [50.7],
                     [1] * 150, [0], ["6"], {}, {"spec": "digits"}]),
    st.integers(-3, 10), st.text(max_size=6),
)
MODEL_KEYS = ["D", "hidden", "classes", "head", "input_encoding", "ordering", "given_ordering", "degrees",
              "num_masks", "order_agnostic", "connectivity_agnostic", "direct", "activation", "seed", "dtype"]
TRAIN_KEYS = ["epochs", "batch_size", "optimizer", "lr", "weight_decay", "patience", "resample_every",
              "valid_masks", "eval_masks", "lr_schedule", "lr_step", "seed", "log_every", "eval_batch_size",
              "engine"]
DATASET_KEYS = ["spec", "path", "seed", "name", "D", "classes", "image_shape", "sizes"]
TOP_KEYS = ["format", "format_version", "made_np_version", "model", "train", "dataset", "optimizer",
            "state", "history", "results"]


@st.composite
def config_mutations(draw):
    """A function that mutates the parsed JSON config: one field replaced or removed."""
    section = draw(st.sampled_from(["model", "model", "train", "dataset", "top"]))
    keys = {"model": MODEL_KEYS, "train": TRAIN_KEYS, "dataset": DATASET_KEYS, "top": TOP_KEYS}[section]
    key = draw(st.sampled_from(keys + ["unknown_key"]))
    delete = draw(st.booleans()) if key != "unknown_key" else False
    value = draw(JSON_VALUES)

    def mutate(meta):
        target = meta if section == "top" else meta[section]
        if delete:
            target.pop(key, None)
        else:
            target[key] = value
        return meta
    return section, key, delete, value, mutate


BAD_ARRAYS = {
    "nan": lambda a: np.full_like(a, np.nan) if a.dtype.kind == "f" else np.full(a.shape, np.nan),
    "inf": lambda a: np.where(np.arange(a.size).reshape(a.shape) == 0, np.inf, a).astype(a.dtype),
    "complex": lambda a: a.astype(np.complex64),
    "int": lambda a: a.astype(np.int64),
    "bool": lambda a: a > 0,
    "float64": lambda a: a.astype(np.float64),  # a valid float dtype: loads, cast to the model's
    "float16": lambda a: a.astype(np.float16),
    "transposed": lambda a: a.T.copy() if a.ndim == 2 else a[None],
    "extra_dim": lambda a: a[None],
    "empty": lambda a: np.zeros((0,), a.dtype),
    "scalar": lambda a: np.float32(1.0),
    "string": lambda a: np.array(["W"] * 3),
    "object": lambda a: np.array([{"x": 1}], dtype=object),
    "huge_value": lambda a: np.full(a.shape, 1e30, a.dtype if a.dtype.kind == "f" else np.float64),
}


# --------------------------------------------------------------------------- checks of a success


def check_evaluate_ok(result):
    res = json.loads(result.output)
    assert res["n"] == 10 and res["D"] == D
    assert math.isfinite(res["single"]["nll"]) and res["single"]["nll"] > 0


def check_sample_ok(result, out: Path, n: int, classes: int = 2):
    assert f"to {out}" in result.output.strip().splitlines()[-1]
    assert out.is_file()  # under exactly the name printed
    if out.suffix.lower() == ".npy":
        with open(out, "rb") as f:
            x = np.load(f, allow_pickle=False)
        assert x.shape == (n, D) and x.min() >= 0 and x.max() < classes
    else:
        assert out.read_bytes()[:4] == b"\x89PNG"


def check_masks_ok(result, out: Path):
    assert out.is_file() and f"to {out}" in result.output
    with np.load(out, allow_pickle=False) as z:
        assert sorted(z["ordering"].tolist()) == list(range(1, D + 1))


# --------------------------------------------------------------------------- data files


@st.composite
def bad_arrays(draw):
    kind = draw(st.sampled_from(["u1", "i8", "f4", "f8", "b1", "c8", "U3", "O", "V4"]))
    ndim = draw(st.integers(0, 3))
    shape = tuple(draw(st.lists(st.integers(0, 6), min_size=ndim, max_size=ndim)))
    value = draw(st.sampled_from([0, 1, 2, 255, 256, 300, -1, 0.5, np.nan, np.inf, 1e30]))
    if kind == "O":
        return np.array([{"a": 1}] * max(1, math.prod(shape)), dtype=object)
    if kind == "U3":
        return np.full(shape, "ab")
    if kind == "V4":
        return np.zeros(shape, dtype="V4")
    a = np.zeros(shape, dtype=np.float64)
    if a.size:
        a.flat[draw(st.integers(0, a.size - 1))] = value
    with np.errstate(invalid="ignore", over="ignore"):
        return a.astype(kind)


@st.composite
def bad_data_files(draw):
    """``(name, bytes)`` of a bad (or sometimes good) data file."""
    form = draw(st.sampled_from(["npz", "npz", "npy", "random", "truncated", "lying_npz", "lying_npy", "text"]))
    good = {k: np.random.default_rng(1).integers(0, 2, (12, 3)).astype(np.uint8)
            for k in ("train_data", "valid_data", "test_data")}
    if form == "npz":
        keys = draw(st.lists(st.sampled_from(list(good) + ["extra"]), unique=True, max_size=4))
        replace = draw(st.sampled_from(keys)) if keys else None
        members = {k: npy_bytes(draw(bad_arrays()) if k == replace else good.get(k, np.zeros(2))) for k in keys}
        return "d.npz", npz_bytes(members)
    if form == "npy":
        return "d.npy", npy_bytes(draw(bad_arrays()))
    if form == "random":
        prefix = draw(st.sampled_from([b"", b"PK", b"PK\x03\x04", b"\x93NUMPY", b"\x93NUMPY\x01\x00"]))
        return "d.npz", prefix + draw(st.binary(max_size=300))
    if form == "truncated":
        buf = io.BytesIO()
        np.savez(buf, **good)
        data = buf.getvalue()
        return "d.npz", data[: draw(st.integers(0, len(data) - 1))]
    if form == "lying_npz":
        members = {k: npy_bytes(v) for k, v in good.items()}
        members[draw(st.sampled_from(list(good)))] = lying_npy((2**40, 3), "|u1")
        return "d.npz", npz_bytes(members)
    if form == "lying_npy":
        return "d.npy", lying_npy((2**40, 3), draw(st.sampled_from(["|u1", "<f8", "<i8"])))
    return "d.npz", draw(st.binary(max_size=50)).replace(b"PK", b"pk")


@examples(30)
@given(bad_data_files())
def test_bad_data_files(work, case):
    name, data = case
    path = fresh(work, name)
    path.write_bytes(data)
    result = invoke("data", "info", path)
    if outcome(result) == "ok":
        assert "D = 3" in result.output and "(12, 3)" in result.output
    else:
        assert str(path) in result.output  # the file is named


def test_random_bytes_starting_with_pk_are_not_a_valid_npz(work, run_dir):
    path = fresh(work, "pk.npz")
    path.write_bytes(b"PK" + bytes(range(200)))
    for args in (("data", "info", path), ("evaluate", path)):
        result = invoke(*args)
        assert outcome(result) == "error"
        assert "not a valid .npz archive" in result.output and "pickle" not in result.output


# --------------------------------------------------------------------------- checkpoints


def mutate_config(run_dir: Path, mutate) -> bytes:
    members = npz_members(run_dir / "model.npz")
    meta = json.loads(str(np.load(io.BytesIO(members["config"]))))
    members["config"] = npy_bytes(np.array(json.dumps(mutate(meta), allow_nan=True)))
    return members


def run_checkpoint_commands(work, ckpt: Path, commands=("evaluate", "sample", "masks")):
    """Run the commands that read a checkpoint; return their outcomes."""
    outcomes = []
    for command in commands:
        if command == "evaluate":
            result = invoke("evaluate", ckpt, "--json")
            if outcome(result) == "ok":
                check_evaluate_ok(result)
        elif command == "sample":
            out = fresh(work, "s.npy")
            result = invoke("sample", ckpt, "-n", 5, "--out", out)
            if outcome(result) == "ok":
                check_sample_ok(result, out, 5)
        else:
            out = fresh(work, "m.npz")
            result = invoke("masks", ckpt, "--out", out)
            if outcome(result) == "ok":
                check_masks_ok(result, out)
        outcomes.append(outcome(result))
        if outcomes[-1] == "error":
            assert str(ckpt) in result.output or "--" in result.output, result.output
    return outcomes


@examples(40)
@given(config_mutations())
def test_checkpoints_with_mutated_config(work, run_dir, mutation):
    section, key, delete, value, mutate = mutation
    ckpt = write_npz(fresh(work, "model.npz"), mutate_config(run_dir, mutate))
    outcomes = run_checkpoint_commands(work, ckpt, ("evaluate", "sample"))
    # values of the wrong type are always refused, naming the field
    wrong_type = (not delete and section == "model" and key in ("D", "classes", "num_masks", "seed")
                  and not (isinstance(value, int) and not isinstance(value, bool)))
    if wrong_type:
        assert outcomes == ["error", "error"]


@pytest.mark.parametrize("key,value,fragment", [
    ("D", 64.5, "D must be an integer, got 64.5"),
    ("D", "4", "D must be an integer"),
    ("hidden", [50.7], "hidden must hold integers"),
    ("hidden", "6", "hidden must be a list"),
    ("num_masks", 10**12, "num_masks must be at most"),
    ("seed", "0", "seed must be an integer"),
    ("head", "laplace", "unknown head"),
    ("init", "zeros", "unknown init"),
    ("direct", 1, "direct must be true or false"),
    ("classes", 10**9, "classes must be at most"),
])
def test_model_config_fields_are_checked_like_user_input(work, run_dir, key, value, fragment):
    def mutate(meta):
        meta["model"][key] = value
        return meta
    ckpt = write_npz(fresh(work, "model.npz"), mutate_config(run_dir, mutate))
    result = invoke("evaluate", ckpt)
    assert outcome(result) == "error"
    assert str(ckpt) in result.output and "entry 'config'" in result.output and fragment in result.output


@pytest.mark.parametrize("where,value,fragment", [
    (("dataset",), "digits", "'dataset' must be an object"),
    (("format_version",), "1", "format_version must be a positive integer"),
    (("format_version",), 2, "newer than this made-np"),
    (("dataset", "image_shape"), [3, 3], "image_shape"),
    (("dataset", "seed"), "0", "dataset.seed must be int"),
    (("dataset", "D"), 5, "dataset.D = 5"),
    (("train", "eval_masks"), 10**9, "eval_masks must be at most"),
    (("train", "lr"), "fast", "lr must be a number"),
    (("train",), [], "'train' must be an object"),
])
def test_other_config_fields_are_checked(work, run_dir, where, value, fragment):
    def mutate(meta):
        target = meta
        for k in where[:-1]:
            target = target[k]
        target[where[-1]] = value
        return meta
    ckpt = write_npz(fresh(work, "model.npz"), mutate_config(run_dir, mutate))
    result = invoke("sample", ckpt, "--out", fresh(work, "s.npy"))
    assert outcome(result) == "error"
    assert str(ckpt) in result.output and fragment in result.output


@st.composite
def entry_mutations(draw):
    """``(description, function members -> members)``: one entry replaced, removed or added."""
    action = draw(st.sampled_from(["replace", "replace", "replace", "remove", "add", "lying", "best"]))
    name = draw(st.sampled_from(["W0", "b0", "W1", "b1", "opt_m0", "opt_v1", "opt_t", "opt_lr", "config"]))
    how = draw(st.sampled_from(sorted(BAD_ARRAYS)))
    extra = draw(st.sampled_from(["junk", "best_W0", "opt_m9", "W7", "A", "config.npy"]))
    lying_existing = draw(st.booleans())

    def mutate(members):
        members = dict(members)
        if action == "replace":
            original = np.load(io.BytesIO(members[name]), allow_pickle=False)
            if original.dtype.kind == "U":  # the JSON config: replaced by a numeric array
                original = np.linspace(-1, 1, 6, dtype=np.float32).reshape(2, 3)
            members[name] = npy_bytes(BAD_ARRAYS[how](original))
        elif action == "remove":
            members.pop(name)
        elif action == "add":
            members[extra] = npy_bytes(np.zeros(3, np.float32))
        elif action == "lying":
            members[name if lying_existing else extra] = lying_npy()
        else:  # best weights: all of them, one of them bad
            for n in ("W0", "b0", "W1", "b1"):
                members[f"best_{n}"] = members[n]
            original = np.load(io.BytesIO(members[name if name[0] in "Wb" else "W0"]), allow_pickle=False)
            members[f"best_{name if name[0] in 'Wb' else 'W0'}"] = npy_bytes(BAD_ARRAYS[how](original))
        return members

    return f"{action} {name} {how} {extra}", action, name, how, mutate


@examples(40)
@given(entry_mutations())
def test_checkpoints_with_mutated_entries(work, run_dir, mutation):
    description, action, name, how, mutate = mutation
    ckpt = write_npz(fresh(work, "model.npz"), mutate(npz_members(run_dir / "model.npz")))
    outcomes = run_checkpoint_commands(work, ckpt, ("evaluate", "sample"))
    if action == "replace" and name[0] in "Wb" and how not in ("float64", "float16", "huge_value"):
        assert outcomes == ["error", "error"], description  # NaN, inf, complex, ints, shapes: refused
    if action == "remove" and name[0] in "Wbc" or action == "lying" or action == "best" and how == "nan":
        assert outcomes == ["error", "error"], description
    if action == "add" and description.split()[-1] in ("junk", "W7", "A", "config.npy"):
        assert outcomes == ["error", "error"], description  # unknown entries are refused unread


@examples(25)
@given(st.data())
def test_truncated_and_corrupted_checkpoints(work, run_dir, data):
    original = (run_dir / "model.npz").read_bytes()
    form = data.draw(st.sampled_from(["truncate", "flip", "random"]))
    if form == "truncate":
        blob = original[: data.draw(st.integers(0, len(original) - 1))]
    elif form == "flip":
        blob = bytearray(original)
        for _ in range(data.draw(st.integers(1, 8))):
            i = data.draw(st.integers(0, len(blob) - 1))
            blob[i] = data.draw(st.integers(0, 255))
        blob = bytes(blob)
    else:
        blob = data.draw(st.sampled_from([b"PK", b"PK\x03\x04", b""])) + data.draw(st.binary(max_size=400))
    ckpt = fresh(work, "model.npz")
    ckpt.write_bytes(blob)
    outcomes = run_checkpoint_commands(work, ckpt, ("evaluate", "masks"))
    if form != "flip":
        assert outcomes == ["error", "error"]


def test_lying_headers_are_refused_without_allocating(work, run_dir):
    """A 228-byte entry that claims 8 PiB, as a weight or as an unknown entry: refused from its header."""
    members = npz_members(run_dir / "model.npz")
    for name in ("W0", "opt_m0", "huge_unknown", "config"):
        bad = dict(members)
        bad[name] = lying_npy()
        ckpt = write_npz(fresh(work, "model.npz"), bad)
        tracemalloc.start()
        with pytest.raises(CheckpointError) as exc:
            load_checkpoint(ckpt)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert peak < 50 * 2**20, (name, peak)
        assert f"'{name}'" in str(exc.value) and str(ckpt) in str(exc.value)


def test_bad_best_weights_are_named_as_such(work, run_dir):
    members = npz_members(run_dir / "model.npz")
    for n in ("W0", "b0", "W1", "b1", "A"):
        if n in members:
            members[f"best_{n}"] = members[n]
    members["best_W0"] = npy_bytes(np.zeros((3, 3), np.float32))
    ckpt = write_npz(fresh(work, "model.npz"), members)
    result = invoke("evaluate", ckpt)
    assert outcome(result) == "error" and "'best_W0'" in result.output and "'W0'" not in result.output


# --------------------------------------------------------------------------- options

TRAIN_OPTIONS = {
    "--hidden": ["0", "", "3,3", "500,", ",", "1e20", "100000000000000000000", "1000000,1000000", "-4", "4,0"],
    "--num-masks": ["inf", "0", "1", "3", "-2", "1e12", "1000001", "INF"],
    "--batch-size": NASTY_NUMBERS,
    "--resample-every": NASTY_NUMBERS,
    "--valid-masks": NASTY_NUMBERS,
    "--eval-masks": NASTY_NUMBERS,
    "--lr": ["0", "-1", "nan", "inf", "1e-3", "abc", "1e400"],
    "--weight-decay": ["-1", "nan", "inf", "0", "1e-4"],
    "--lr-step": NASTY_NUMBERS,
    "--seed": NASTY_NUMBERS + ["9223372036854775808"],
    "--data-seed": NASTY_NUMBERS,
    "--threads": ["auto", "0", "-1", "1", "1000000", "two"],
    "--max-memory": ["0", "-1", "abc", "1K", "100M", "nan", "1e3", "5M", "", "1.5M", "12Q"],
    "--dataset": ["mnist", "2d", "missing.npz", "digits"],
    "--input-encoding": ["binary", "onehot", "raw", "scaled", "bogus"],
    "--engine": ["fast", "reference", "turbo"],
    "--optimizer": ["adam", "sgd", "adagrad", "lbfgs"],
    "--device": ["cpu", "cuda", "tpu"],
    "--dtype": ["float32", "float64", "float16"],
}


@examples(20)
@given(st.dictionaries(st.sampled_from(sorted(TRAIN_OPTIONS)), st.just(None), min_size=1, max_size=3), st.data())
def test_train_options(work, tiny_data, chosen, data):
    args = ["train", "--dataset", tiny_data, "--hidden", 4, "--epochs", 1, "--patience", 1, "-q"]
    for option in chosen:
        value = data.draw(option_values(TRAIN_OPTIONS[option]), label=option)
        args += [option, value]
    out = fresh(work, "run")
    result = invoke(*args, "--out", out)
    if outcome(result) == "ok":
        assert (out / "model.npz").is_file() and (out / "results.json").is_file()
        assert math.isfinite(json.loads((out / "results.json").read_text())["single"]["nll"])


SAMPLE_OPTIONS = {
    "-n": NASTY_NUMBERS,
    "--seed": NASTY_NUMBERS,
    "--method": ["fast", "naive", "slow"],
    "--mask-index": NASTY_NUMBERS,
    "--mixture": NASTY_NUMBERS,
    "--max-memory": ["0", "1K", "100M", "abc", "5M"],
    "--device": ["cpu", "cuda"],
}
OUT_NAMES = ["s.npy", "s.NPY", "s.png", "s.Png", "s.jpg", "s", "s.npy.txt", "sub/dir/s.npy", "tiny.npz/s.npy", "."]


def out_path(work, tiny_data, name):
    if name == "tiny.npz/s.npy":
        return tiny_data / "s.npy"  # a path under a file
    if name == ".":
        return work  # a folder
    return fresh(work, "d") / name if "/" in name else fresh(work, name)


@examples(25)
@given(st.dictionaries(st.sampled_from(sorted(SAMPLE_OPTIONS)), st.just(None), max_size=3),
       st.sampled_from(OUT_NAMES), st.data())
def test_sample_options(work, tiny_data, run_dir, chosen, out_name, data):
    args = ["sample", run_dir]
    values = {}
    for option in chosen:
        values[option] = data.draw(option_values(SAMPLE_OPTIONS[option]), label=option)
        args += [option, values[option]]
    out = out_path(work, tiny_data, out_name)
    result = invoke(*args, "--out", out)
    if outcome(result) == "ok":
        check_sample_ok(result, out, int(values.get("-n", 100)))
    else:
        assert not out.is_file()  # every check comes before the file is written
        if out_name in ("s.jpg", "s", "s.npy.txt", "tiny.npz/s.npy", "."):
            assert "--out" in result.output or "Invalid value" in result.output


EVALUATE_OPTIONS = {
    "--split": ["test", "valid", "train", "all"],
    "--eval-masks": NASTY_NUMBERS,
    "--mask-index": NASTY_NUMBERS,
    "--max-memory": ["0", "1K", "100M", "abc"],
    "--dataset-path": ["missing", "."],
}


@examples(20)
@given(st.dictionaries(st.sampled_from(sorted(EVALUATE_OPTIONS)), st.just(None), max_size=3), st.data())
def test_evaluate_options(run_dir, chosen, data):
    args = ["evaluate", run_dir, "--json"]
    for option in chosen:
        args += [option, data.draw(option_values(EVALUATE_OPTIONS[option]), label=option)]
    result = invoke(*args)
    if outcome(result) == "ok":
        res = json.loads(result.output)
        assert res["D"] == D and math.isfinite(res["single"]["nll"])


@examples(15)
@given(st.sampled_from(NASTY_NUMBERS), st.sampled_from(["m.npz", "m.NPZ", "m.txt", "m", "tiny.npz/m.npz"]),
       st.sampled_from([None, "m.png", "m.xyz", "m.PNG", "tiny.npz/m.png"]))
def test_masks_options(work, tiny_data, run_dir, index, out_name, png_name):
    out = tiny_data / "m.npz" if out_name.startswith("tiny") else fresh(work, out_name)
    args = ["masks", run_dir, "--index", index, "--out", out]
    png = None
    if png_name:
        png = tiny_data / "m.png" if png_name.startswith("tiny") else fresh(work, png_name)
        args += ["--png", png]
    result = invoke(*args)
    if outcome(result) == "ok":
        check_masks_ok(result, out)
        assert png is None or png.read_bytes()[:4] == b"\x89PNG"
    else:
        assert not out.is_file()  # a bad --png is found before the .npz is written


@examples(15)
@given(st.sampled_from(["digits", "mnist", "2d", "missing", "tiny"]), option_values(NASTY_NUMBERS),
       st.sampled_from([None, "missing", "tiny"]))
def test_data_info_options(tiny_data, spec, seed, dataset_path):
    args = ["data", "info", tiny_data if spec == "tiny" else spec, "--seed", seed]
    if dataset_path:
        args += ["--dataset-path", tiny_data if dataset_path == "tiny" else dataset_path]
    result = invoke(*args)
    if outcome(result) == "ok":
        assert "D = " in result.output


def test_messages_name_the_option(work, run_dir, tiny_data):
    """A few fixed cases of the promise, with the words the fix needs."""
    cases = [
        (("train", "--dataset", tiny_data, "--hidden", "1000000,1000000"), ("--hidden 1000000,1000000", "TiB",
                                                                            "--max-memory")),
        (("train", "--dataset", tiny_data, "--hidden", "1" + "0" * 20), ("--hidden",)),
        (("train", "--dataset", tiny_data, "--seed", "-1"), ("--seed",)),
        (("train", "--dataset", tiny_data, "--eval-masks", "1000000000"), ("--eval-masks",)),
        (("sample", run_dir, "--seed", "-1"), ("--seed",)),
        (("sample", run_dir, "-n", "10000000000", "--out", fresh(work, "s.npy")), ("-n 10000000000", "--max-memory")),
        (("sample", run_dir, "-n", "300000", "--out", fresh(work, "s.png")), ("-n 300000", ".npy")),  # D = 4: no image
        (("sample", run_dir, "--mask-index", "5", "--out", fresh(work, "s.npy")), ("--mask-index 5",
                                                                                   "outside the bank of 2")),
        (("evaluate", run_dir, "--max-memory", "lots"), ("--max-memory",)),
        (("masks", run_dir, "--png", fresh(work, "m.xyz"), "--out", fresh(work, "m.npz")), ("--png", ".png")),
    ]
    for args, fragments in cases:
        result = invoke(*args)
        assert outcome(result) == "error", args
        for fragment in fragments:
            assert fragment in result.output, (args, result.output)


def test_outputs_are_checked_before_any_work(work, run_dir, tiny_data):
    """A bad output is reported before the checkpoint is even opened, and nothing is left behind."""
    missing = work / "no-such-run"
    for args, fragment in [
        (("sample", missing, "--out", fresh(work, "s.jpg")), "expected a .png or .npy file name"),
        (("sample", missing, "--out", tiny_data / "s.npy"), "is a file, not a folder"),
        (("masks", missing, "--out", fresh(work, "m.txt")), "expected a .npz file name"),
        (("masks", missing, "--out", fresh(work, "m.npz"), "--png", fresh(work, "m.xyz")), "--png"),
        (("density", missing, "--out", fresh(work, "d.npy")), "expected a .png file name"),
    ]:
        result = invoke(*args)
        assert outcome(result) == "error" and fragment in result.output and "no-such-run" not in result.output
    folder = fresh(work, "new") / "deeper"
    assert outcome(invoke("sample", missing, "--out", folder / "s.npy")) == "error"  # the checkpoint is missing
    assert not folder.parent.exists()  # checked, not created
    out = folder / "s.NPY"
    result = invoke("sample", run_dir, "-n", 3, "--out", out)
    assert outcome(result) == "ok" and [p.name for p in folder.iterdir()] == ["s.NPY"]  # exactly that name
    check_sample_ok(result, out, 3)


def test_a_read_only_folder_is_refused_before_any_work(work, run_dir, monkeypatch):
    """As root a chmod 555 folder is writable, so the refusal of the write probe is simulated."""
    from made_np.cli import common

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")
    monkeypatch.setattr(common.tempfile, "mkstemp", refuse)
    folder = fresh(work, "ro")
    folder.mkdir()
    result = invoke("sample", work / "no-such-run", "--out", folder / "s.npy")
    assert outcome(result) == "error"
    assert f"--out {folder / 's.npy'}: cannot write into {folder} (Permission denied)" in result.output


# --------------------------------------------------------------------------- real-valued data


@st.composite
def real_data_files(draw):
    """``(npz bytes, head)``: float splits with fractions, some entries NaN, inf, huge or tiny, some
    columns constant; and the head asked for (None: the default mog)."""
    D_ = draw(st.integers(1, 3))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    splits = {k: rng.normal(draw(st.sampled_from([0.0, 1e6, -3.0])), draw(st.sampled_from([1.0, 1e-6, 1e4])),
                            (n, D_)) + 0.25 for k, n in (("train_data", 30), ("valid_data", 8), ("test_data", 8))}
    for _ in range(draw(st.integers(0, 2))):
        key = draw(st.sampled_from(list(splits)))
        a = splits[key]
        how = draw(st.sampled_from(["entry", "column"]))
        value = draw(st.sampled_from([np.nan, np.inf, -np.inf, 1e300, 1e30, 0.5]))
        if how == "entry":
            a[draw(st.integers(0, a.shape[0] - 1)), draw(st.integers(0, D_ - 1))] = value
        else:
            a[:, draw(st.integers(0, D_ - 1))] = value
    head = draw(st.sampled_from([None, "mog", "gaussian", "bernoulli"]))
    buf = io.BytesIO()
    np.savez(buf, **splits)
    return buf.getvalue(), head


@examples(15)
@given(real_data_files(), st.sampled_from(["float32", "float64"]))
def test_real_valued_files_train_or_fail_in_one_line(work, case, dtype):
    """Float files holding fractions train with the real heads, or stop with one line naming the
    problem (a NaN/inf entry, a constant column, a discrete head); a finished run's numbers are finite."""
    data, head = case
    path = fresh(work, "real.npz")
    path.write_bytes(data)
    out = fresh(work, "real-run")
    args = ["train", "--dataset", path, "--hidden", 5, "--epochs", 1, "--out", out, "-q", "--dtype", dtype]
    result = invoke(*args, *(["--head", head] if head else []))
    if outcome(result) == "ok":
        assert head != "bernoulli"
        results = json.loads((out / "results.json").read_text())
        assert math.isfinite(results["single"]["nll"])
        assert outcome(invoke("sample", out, "-n", 3, "--out", fresh(work, "s.npy"))) == "ok"
    else:
        text = result.output
        assert any(why in text for why in ("mog or gaussian", "missing (NaN)", "infinite", "float32's range",
                                           "constant", "not finite", "standard deviations")), text
