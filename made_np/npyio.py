"""The one safe reader of array files: ``.npy``, ``.npz`` and text matrices (``.amat``).

Data sets (:mod:`made_np.data`, :mod:`made_np.download`) and checkpoints
(:mod:`made_np.checkpoint`) read their files here, and nowhere else:

* only regular files are opened (a FIFO blocks ``open``, a device can be endless);
* ``.npy`` headers, alone or inside an ``.npz``, are read and checked before any data:
  Python objects (pickles) are refused, and so is a declared size other than what the
  file (or the zip member) holds, or larger than the memory limit (:func:`made_np.limits.memory_limit`);
* a zip member names its compression (stored or deflate, as NumPy writes) and a size that
  deflate can reach; an ``.npz`` naming an entry twice is refused (which one would be read?);
* a text matrix is refused when parsing it would need more than the memory limit.

Every failure is one line naming the file (and the entry), raised as the caller's error
class (:class:`DataError` by default).
"""
from __future__ import annotations

import contextlib
import csv
import io
import math
import os
import re
import stat
import struct
import tokenize
import warnings
import zipfile
import zlib
from pathlib import Path

import numpy as np

from .limits import LimitError, Part, check_api, fmt_bytes

#: Deflate cannot expand data by more than 1032:1; a zip member that claims more is lying.
MAX_DEFLATE_RATIO = 1032
#: Bytes of memory that parsing one byte of a text matrix takes at its peak (the byte masks,
#: a running count of the lines in int64, the selected digits; NumPy's loadtxt holds less).
TEXT_BYTES_PER_BYTE = 20
#: What reading a corrupt ``.npy`` header, a zip archive or its member can raise.
READ_ERRORS = (ValueError, EOFError, OSError, SyntaxError, MemoryError, RecursionError, RuntimeError,
               NotImplementedError, KeyError, OverflowError, struct.error, zipfile.BadZipFile,
               zipfile.LargeZipFile, zlib.error, tokenize.TokenError)  # NumPy tokenizes old headers
_KINDS = ((stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"), (stat.S_ISDIR, "a directory"))


class DataError(ValueError):
    """Unusable data; the message is one user-facing line naming file, key and problem."""


def one_line(exc, limit: int | None = 300) -> str:
    """An exception's (or a message's) text on one line of at most ``limit`` characters (``None``:
    all of it); an exception without text is named by its type."""
    text = " ".join(str(exc).split()) or (type(exc).__name__ if isinstance(exc, BaseException) else "")
    return text if limit is None or len(text) <= limit else text[: limit - 3] + "..."


def expand_path(path) -> Path:
    """``Path(path).expanduser()``, leaving a ``~user`` whose user does not exist as it is
    (pathlib raises RuntimeError there: a path to report as missing, not a crash)."""
    p = Path(path)
    try:
        return p.expanduser()
    except RuntimeError:
        return p


def require_regular(file, error=DataError, fix: str = "pass a .npz / .npy file or a folder of .amat files"):
    """``os.stat`` ``file`` (following links) and refuse anything but a regular file: called
    before every ``open`` (opening a FIFO for reading blocks until a writer appears)."""
    try:
        st = os.stat(file)
    except FileNotFoundError:
        raise error(f"{file}: no such file or directory") from None
    except OSError as exc:
        raise error(f"{file}: cannot stat ({one_line(exc)})") from None
    if not stat.S_ISREG(st.st_mode):
        kind = next((k for test, k in _KINDS if test(st.st_mode)), "not a regular file")
        raise error(f"{file}: is {kind}, not a regular file; {fix}")
    return st


@contextlib.contextmanager
def reading(file, label=None, error=DataError, **fix):
    """``open(file, "rb")`` of a regular ``file`` (:func:`require_regular`); an ``OSError`` while it
    is open or read is one line naming ``label`` (default: the file)."""
    require_regular(file, error, **fix)
    try:
        with open(file, "rb") as f:
            yield f
    except OSError as exc:
        raise error(f"{label or file}: cannot read ({one_line(exc)})") from None


def magic(file, label=None, error=DataError, **fix) -> bytes:
    """The first 6 bytes of a regular ``file`` (``.npy``: ``\\x93NUMPY``; zip: ``PK``); errors name ``label``."""
    with reading(file, label, error, **fix) as f:
        return f.read(6)


def check_memory(nbytes: int, where: str, what: str, error=DataError) -> None:
    """Refuse ``nbytes`` beyond the memory limit (``--max-memory``): one line naming ``where``."""
    try:
        check_api([Part(where, what, nbytes)])
    except LimitError as exc:
        raise error(str(exc)) from None


def read_npy_header(fp):
    """Read the magic and header of an ``.npy`` stream positioned at its start.

    Returns
    -------
    shape : tuple of int
    fortran_order : bool
    dtype : numpy.dtype
        Nothing of the array is read: the caller checks the declared size first.

    Raises
    ------
    ValueError, EOFError, SyntaxError, OSError, ...
        See :data:`READ_ERRORS`: not an ``.npy`` stream, a truncated or malformed header.
    """
    fmt = np.lib.format
    version = fmt.read_magic(fp)
    with warnings.catch_warnings():  # the MADE authors' Python 2 files: NumPy reads them, but warns
        warnings.simplefilter("ignore")
        if version == (1, 0):
            return fmt.read_array_header_1_0(fp)
        if version == (2, 0):
            return fmt.read_array_header_2_0(fp)
        if version == (3, 0):  # 2.0 with a utf-8 header (no public reader): read as 2.0 reads latin-1
            length = int.from_bytes(fp.read(4), "little")
            text = fp.read(length if length <= 10000 else 0)  # NumPy's bound on a header read safely
            if len(text) != length:
                raise EOFError(f"array header of {length} bytes: truncated, or too large to read safely")
            text = text.decode("utf-8").encode("latin-1")
            return fmt.read_array_header_2_0(io.BytesIO(len(text).to_bytes(4, "little") + text))
    raise ValueError(f"unknown .npy format version {version}")


def _npy_header(open_, size: int, where: str, error, fix: str):
    """``(shape, dtype)`` of the ``.npy`` stream that ``open_()`` opens (``size`` bytes, named ``where``),
    checked: no Python objects, exactly the bytes the stream holds (a shape that reads less would
    silently drop the rest), no more than the memory limit allows. Nothing else is read."""
    try:
        with open_() as fp:
            shape, _, dtype = read_npy_header(fp)
            left = size - fp.tell()
    except READ_ERRORS as exc:
        raise error(f"{where}: not a valid .npy array ({one_line(exc)}); {fix}") from None
    if dtype.hasobject:
        raise error(f"{where}: cannot read: it holds Python objects (dtype {dtype}); pickled "
                    f"data is refused for safety, save numeric arrays instead")
    declared = math.prod(shape) * dtype.itemsize
    if declared != left:  # fewer bytes: truncated; more: a shape that reads only part of the data
        raise error(f"{where}: header declares shape {tuple(shape)} of {dtype} ({fmt_bytes(declared)}) but "
                    f"{'only ' if declared > left else ''}{fmt_bytes(max(left, 0))} follow: truncated or corrupt; {fix}")
    check_memory(declared, where, f"its array of shape {tuple(shape)}", error)
    return tuple(shape), dtype


def _npy_array(open_, where: str, error, fix: str) -> np.ndarray:
    """The array of the ``.npy`` stream that ``open_()`` opens, once :func:`_npy_header` accepted it."""
    try:
        with open_() as fp, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return np.lib.format.read_array(fp, allow_pickle=False)
    except READ_ERRORS as exc:
        raise error(f"{where}: cannot read the array data ({one_line(exc)}); {fix}") from None


def read_npy(file, error=DataError, fix: str = "re-create or re-download it") -> np.ndarray:
    """Read a standalone ``.npy`` file with the checks of this module."""
    _npy_header(lambda: open(file, "rb"), require_regular(file, error).st_size, str(file), error, fix)
    return _npy_array(lambda: open(file, "rb"), str(file), error, fix)


class Npz(contextlib.AbstractContextManager):
    """An ``.npz`` opened lazily: its members' headers are read and checked first, an array only
    when asked for (:meth:`header`, :meth:`read`); usable as a context manager.

    Parameters
    ----------
    file : path of a regular file
    error : exception class
        Raised with one line naming the file and the member (``<file>: <entry> 'name'``).
    entry : str
        What a member is called in messages ("key" for data, "entry" for checkpoints).
    fix : str
        What to do, ending the messages of a corrupt archive.
    """

    def __init__(self, file, error=DataError, entry: str = "key", fix: str = "re-create or re-download it"):
        self.file, self.error, self.entry, self.fix = file, error, entry, fix
        self.size = require_regular(file, error).st_size
        try:
            self.zf = zipfile.ZipFile(file)
        except READ_ERRORS as exc:
            raise error(f"{file}: not a valid .npz archive ({one_line(exc)}); {fix}") from None
        self.members, self._headers = {}, {}
        for info in self.zf.infolist():
            name = info.filename[:-4] if info.filename.endswith(".npy") else info.filename
            if name in self.members:
                self.zf.close()
                raise error(f"{file}: {entry} '{name}' appears twice (which one to read?); {fix}")
            self.members[name] = info

    def __exit__(self, *exc):
        self.zf.close()

    def header(self, name: str):
        """``(shape, dtype)`` of member ``name`` from its ``.npy`` header, checked (nothing else is read).
        The zip entry is checked first: plain, stored or deflated, and of a size deflate can reach."""
        if name not in self._headers:
            info, where = self.members[name], f"{self.file}: {self.entry} '{name}'"
            if info.flag_bits & 0x1:
                raise self.error(f"{where}: encrypted (NumPy writes plain .npz files); {self.fix}")
            if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
                raise self.error(f"{where}: zip compression method {info.compress_type}, which NumPy does not "
                                 f"write; {self.fix}")
            stored = info.compress_type == zipfile.ZIP_STORED
            bound = info.compress_size if stored else info.compress_size * MAX_DEFLATE_RATIO + 1024
            if info.compress_size > self.size or info.file_size > bound:
                raise self.error(f"{where}: not a valid .npz archive (member declares {fmt_bytes(info.file_size)} "
                                 f"from {fmt_bytes(info.compress_size)} of a {fmt_bytes(self.size)} file); "
                                 f"{self.fix}")
            self._headers[name] = _npy_header(lambda: self.zf.open(info), info.file_size, where, self.error, self.fix)
        return self._headers[name]

    def read(self, name: str) -> np.ndarray:
        """Member ``name`` as an array, its header checked first."""
        self.header(name)
        return _npy_array(lambda: self.zf.open(self.members[name]), f"{self.file}: {self.entry} '{name}'", self.error,
                          self.fix)


def read_npz(file, keys, error=DataError) -> dict:
    """``{key: array}`` of ``keys`` from an ``.npz``; a missing key is one line listing those found."""
    with Npz(file, error) as z:
        missing = [k for k in keys if k not in z.members]
        if missing:
            raise error(f"{file}: missing key '{missing[0]}' (keys found: {', '.join(z.members) or 'none'}); "
                        f"expected keys {', '.join(keys)}")
        return {k: z.read(k) for k in keys}


def read_text_matrix(file: Path, error=DataError) -> np.ndarray:
    """Read a text matrix, one row a line (Larochelle's ``.amat``); fast path for single-character
    0/1 tokens. Refused before reading when parsing it would need more than the memory limit
    (:data:`TEXT_BYTES_PER_BYTE` bytes per byte of text)."""
    with reading(file, error=error) as f:
        check_memory(os.fstat(f.fileno()).st_size * TEXT_BYTES_PER_BYTE, str(file), "parsing its text", error)
        b = np.frombuffer(f.read(), dtype=np.uint8)
    digit = (b == ord("0")) | (b == ord("1"))
    newline = b == ord("\n")
    blank = newline | (b == ord(" ")) | (b == ord("\t")) | (b == ord("\r"))
    if digit.any() and (digit | blank).all() and not (digit[1:] & digit[:-1]).any():
        per_line = np.bincount(np.cumsum(newline)[digit])
        per_line = per_line[per_line > 0]
        if (per_line == per_line[0]).all():
            return (b[digit] - ord("0")).reshape(per_line.size, per_line[0])
    if not (~blank).any():  # empty or only whitespace: loadtxt would warn, then return no rows
        raise error(f"{file}: holds no numbers (an empty text matrix); every split needs examples")
    try:
        return np.loadtxt(file, dtype=np.float64, ndmin=2)
    except (ValueError, OSError) as exc:  # NumPy's advice to pass usecols is not ours to give
        reason = one_line(exc).split("; use `usecols`")[0]
        raise error(f"{file}: cannot read as a text matrix ({reason}); every row needs the same number "
                    "of values") from None


def _is_number(cell: str) -> bool:
    """Whether ``np.loadtxt`` reads ``cell`` as a number (Python's float also takes ``1_000`` and
    other scripts' digits, which it does not), an empty cell included."""
    text = cell.strip().strip('"')
    try:
        float(text or "nan")
    except ValueError:
        return False
    return text.isascii() and "_" not in text


def read_csv(file, error=DataError):
    """Read a comma-separated table of numbers, one row a line, with an optional header.

    The first non-blank line is a header when one of its cells is not a number; its cells
    name the columns. Blank lines are skipped; an empty cell is a missing value (NaN), as is
    ``nan``; ``inf`` is read as infinity (the caller decides what to accept). Cells may be
    quoted (``"1.5"``); ``#`` is not a comment. Refused before reading when parsing it would
    need more than the memory limit (:data:`TEXT_BYTES_PER_BYTE` bytes per byte of text).

    Returns
    -------
    values : numpy.ndarray, shape (N, D), float64
    lines : numpy.ndarray, shape (N,), int64
        The line of the file (counted from 1) that each row was read from.
    names : tuple of str
        The header's column names, ``()`` without a header.

    Raises
    ------
    error
        One line naming the file: not UTF-8 text, empty, a header without rows, a cell that is
        not a number (its line and column, counted from 0, and name), rows of different lengths
        (the line), a header of another width than the rows.
    """
    with reading(file, error=error) as f:
        check_memory(os.fstat(f.fileno()).st_size * TEXT_BYTES_PER_BYTE, str(file), "parsing its text", error)
        raw = f.read()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise error(f"{file}: not a UTF-8 text file ({one_line(exc)}); give numbers separated by commas") from None
    text = re.sub(r"^[ \t]+$", "", text.replace("\r\n", "\n").replace("\r", "\n"), flags=re.M)  # blank lines: empty
    b = np.frombuffer(text.encode(), dtype=np.uint8)
    content = np.unique(np.cumsum(b == ord("\n"))[~np.isin(b, np.frombuffer(b" \t\r\n", np.uint8))]) + 1
    if content.size == 0:
        raise error(f"{file}: empty (no rows of numbers); give one row per example, values separated by commas")
    head = int(content[0])  # the first line with content
    before = text.split("\n", head)
    first = before[head - 1].split(",")
    names = tuple(c.strip().strip('"').strip() for c in first) if not all(map(_is_number, first)) else ()
    body = (before[head] if len(before) > head else "") if names else text
    lines = content[1:] if names else content
    if lines.size == 0:
        raise error(f"{file}: a header line but no rows of numbers; give one row per example after it")
    body = re.sub(r'(^|,)[ \t]*""[ \t]*(?=,|$)', r"\1", body, flags=re.M)  # a quoted empty cell: empty
    body = re.sub(r"^[ \t]*(?=,)|(?<=,)[ \t]*(?=,|$)", "nan", body, flags=re.M)  # empty cells: missing
    try:
        values = np.loadtxt(io.StringIO(body), dtype=np.float64, delimiter=",", ndmin=2, comments=None, quotechar='"')
    except ValueError as exc:
        raise error(_csv_problem(file, body, lines, names, head) or f"{file}: cannot read ({one_line(exc)})") from None
    if names and values.shape[1] != len(names):
        raise error(f"{file}: the header (line {head}) names {len(names)} columns but the rows have "
                    f"{values.shape[1]} values; give one name per column")
    return values, lines, names


#: How other tools spell a missing value in a text cell (made-np reads an empty cell or ``nan``).
MISSING_SPELLINGS = ("na", "n/a", "null", "none", "?", "-", "missing", "#n/a")


def _csv_problem(file, body: str, lines, names, head: int) -> str | None:
    """Why ``np.loadtxt`` refused ``body``: the first row of another width, or the first cell that
    is not a number (a loop over the rows, run only once reading has failed)."""
    rows = [r for r in body.split("\n") if r]
    width = len(names) or len(next(csv.reader(rows[:1])))
    for line, row in zip(lines, rows):
        if row.count('"') % 2:
            return f"{file}: line {line} has an unmatched quote (\"); close it or remove it"
        cells = next(csv.reader([row]))  # a quoted cell may hold commas
        if len(cells) != width:
            ref = f"the header (line {head})" if names else f"line {head}"
            n = len(cells)
            other = " (separate them by commas, not ';' or tabs, with '.' as the decimal point)"
            return (f"{file}: line {line} has {n} value{'s' if n != 1 else ''} but {ref} has {width}; every row "
                    "needs the same number of comma-separated values" + (other if ";" in row or "\t" in row else ""))
        bad = next((c for c, cell in enumerate(cells) if not _is_number(cell)), None)
        if bad is not None:
            name, cell = f" ('{names[bad]}')" if names else "", cells[bad].strip()
            fix = ("separate the values by commas" if ";" in cell or "\t" in cell
                   else "write numbers without thousands separators" if "," in cell or "_" in cell
                   else "leave a missing value's cell empty (or write nan)" if cell.lower() in MISSING_SPELLINGS
                   else "give numbers separated by commas (a header on the first line only; categories coded "
                        "0..K-1)")
            return f"{file}: line {line}, column {bad}{name}: {cell!r} is not a number; {fix}"
    return None
