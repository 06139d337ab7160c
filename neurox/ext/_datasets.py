"""Datasets to learn from: the bundled 8x8 digits, or any CSV (also gzipped) or NPZ file with a target.

Features come as they are in the file: the network scales them itself, online, where every origin
passes (``_scaling``). Whether the target is a class or a number is decided by :func:`detect_task`
(text, or a few distinct whole numbers: classes; anything else: regression), or said (``task``).

A file that cannot be learnt from raises :class:`DatasetError` with one line that names the file, the
row (the file's line, the header being row 1; ``X[i, j]`` in an NPZ) and the column: a cell that is
empty, NaN or infinite (``missing = "drop"`` skips such rows instead), a feature that is not a number
(in a column of numbers; a column mostly of words is text, encoded in place by the network's text
encoder, ``[text]``, when ``load_dataset`` is given it, as ``neurox run`` does), a text cell with no word,
a target index past the end, a file that is not UTF-8 text, a header without rows, a target of one
class, no feature column. CSV is read with the standard ``csv`` module (quoting, the delimiter
the first row holds most of, of ``,;\\t|``), which needs no dependency and keeps row numbers exact.
"""
from __future__ import annotations

import csv
import gzip
import io
import os
import zipfile
from dataclasses import dataclass, replace

import numpy as np

from ._text import TextEncoder

DIGITS = os.path.join(os.path.dirname(__file__), "data", "digits.npz")
"""The 1,797 8x8 handwritten digits of the UCI set (as shipped by scikit-learn, BSD licence)."""
TASKS = ("auto", "classification", "regression")
MISSING = ("error", "drop")
MISSING_CELLS = {"", "nan", "+nan", "-nan", "inf", "+inf", "-inf", "infinity", "+infinity", "-infinity", "na",
                 "n/a", "null", "none"}
DELIMITERS = ",;\t|"
"""The first row's most frequent of these separates the cells (a comma if it has none)."""
NEWLINE = b"\n"
FLOAT32_MAX = float(np.finfo(np.float32).max)
MAX_CLASSES = 30
"""Auto-detection: whole numbers with at most this many distinct values are classes; more are a
quantity to regress (e.g. diabetes progression: 214 distinct whole numbers in 442 rows)."""


class DatasetError(ValueError):
    """A data file that cannot be used: one line naming the file, the row and the column."""


@dataclass(frozen=True)
class Dataset:
    features: np.ndarray
    targets: np.ndarray
    classes: list[str] | None
    """Class names for a classification set (targets are indices into it); None for regression."""
    reason: str = ""
    """Why it is classification or regression (said on ``neurox run``'s start line)."""
    dropped: int = 0
    """Rows skipped for a missing value (``missing = "drop"``)."""
    target: str = "target"
    """The target's column (or array) name."""
    text_columns: tuple[str, ...] = ()
    """The CSV columns that hold text, each encoded into ``column_width`` positions of the row, in place."""

    @property
    def width(self) -> int:
        return self.features.shape[1]

    @property
    def outputs(self) -> int:
        return len(self.classes) if self.classes is not None else (self.targets.shape[1] if self.targets.ndim > 1 else 1)

    @property
    def task(self) -> str:
        return "regression" if self.classes is None else "classification"


def digits() -> Dataset:
    data = np.load(DIGITS)
    return Dataset(data["X"].astype(np.float32) / 16.0, data["y"].astype(np.int64), [str(d) for d in range(10)],
                   "the bundled digits: 10 classes")


def load_dataset(path: str | None, target: str | None = None, task: str = "auto", missing: str = "error",
                 text: TextEncoder | None = None) -> Dataset:
    """Read ``path`` (``.csv``, ``.csv.gz``, ``.tsv`` or ``.npz``); None gives the bundled digits. With
    ``text`` (the network's encoder, its ``[text]`` table), a CSV's text columns are encoded by it in
    place; without, a text cell is an error."""
    if path is None:
        return digits()
    if task not in TASKS or missing not in MISSING:
        raise DatasetError(f"task is one of {TASKS} and missing one of {MISSING}; got {task!r}, {missing!r}")
    if not os.path.exists(path):
        raise DatasetError(f"{path}: no such file")
    if os.path.isdir(path):
        raise DatasetError(f"{path}: a directory, not a data file")
    if path.endswith(".npz"):
        return _from_npz(path, target, task, missing)
    if path.endswith((".csv", ".csv.gz", ".tsv", ".txt")):
        return _from_csv(path, target, task, missing, text)
    raise DatasetError(f"{path}: expected a .csv, .csv.gz, .tsv or .npz file")


# -- CSV -------------------------------------------------------------------------------------------
def _read_text(path: str) -> str:
    try:
        with (gzip.open(path, "rb") if path.endswith(".gz") else open(path, "rb")) as f:
            raw = f.read()
    except (OSError, EOFError) as exc:
        raise DatasetError(f"{path}: cannot be read ({exc})") from None
    nul = raw.find(b"\0", 0, 65536)
    if nul >= 0:
        raise DatasetError(f"{path}: a binary file (row {raw.count(NEWLINE, 0, nul) + 1} holds a NUL byte), "
                           f"not CSV text")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        row = raw.count(NEWLINE, 0, exc.start) + 1
        raise DatasetError(f"{path}: row {row}: not UTF-8 text (byte 0x{raw[exc.start]:02x}); save the file as "
                           f"UTF-8") from None


def _rows(path: str, text: str) -> list[tuple[int, list[str]]]:
    """(row number, stripped cells) of every non-blank row."""
    first = text[:text.find("\n")] if "\n" in text else text
    delimiter = max(DELIMITERS, key=first.count) if any(d in first for d in DELIMITERS) else ","
    reader = csv.reader(io.StringIO(text), delimiter=delimiter)
    try:
        return [(reader.line_num, [c.strip() for c in row]) for row in reader if any(c.strip() for c in row)]
    except csv.Error as exc:
        raise DatasetError(f"{path}: row {reader.line_num}: {exc}") from None


def _is_header(first: list[str], second: list[str] | None) -> bool:
    """A first row is a header if a cell of it is text where the next row has a number (or all is text)."""
    if all(not _is_number(c) for c in first):
        return True
    return second is not None and any(not _is_number(a) and _is_number(b) for a, b in zip(first, second))


def _target_column(path: str, names: list[str], target: str | None) -> int:
    if target is None:
        return len(names) - 1
    if target in names:
        return names.index(target)
    if target.lstrip("-").isdigit():
        index = int(target)
        if -len(names) <= index < len(names):
            return index % len(names)
        raise DatasetError(f"{path}: --target {target}: no such column; the file has {len(names)} columns, "
                           f"0..{len(names) - 1} ({_list(names)})")
    raise DatasetError(f"{path}: no target column {target!r}; the columns are {_list(names)}")


def _from_csv(path: str, target: str | None, task: str, missing: str, text: TextEncoder | None) -> Dataset:
    rows = _rows(path, _read_text(path))
    if not rows:
        raise DatasetError(f"{path}: an empty file, no rows")
    header = _is_header(rows[0][1], rows[1][1] if len(rows) > 1 else None)
    names = rows[0][1] if header else [str(i) for i in range(len(rows[0][1]))]
    body = rows[1:] if header else rows
    if not body:
        raise DatasetError(f"{path}: only a header row ({_list(names)}), no data rows")
    column = _target_column(path, names, target)
    if len(names) < 2:
        raise DatasetError(f"{path}: no feature columns: {names[column]!r} is the only column (the target)")
    where = lambda row, j: f"{path}: row {row}, column {j} ({names[j]!r})"  # noqa: E731
    for row, cells in body:
        if len(cells) != len(names):
            raise DatasetError(f"{path}: row {row}: {len(cells)} cells; the {'header' if header else 'first row'} "
                               f"has {len(names)}")
    texts = text_columns(body, column) if text is not None else set()
    features, raw, dropped = [], [], 0
    for row, cells in body:
        values, gap = [], None
        for j, cell in enumerate(cells):
            if j in texts:
                encoded = text.encode(cell, text.column_width) if cell.lower() not in MISSING_CELLS else None
                problem = _missing_text(cell, encoded)
                gap = gap or (problem and (j, problem))
                values.extend(encoded if encoded is not None else ())
                continue
            value = _number(cell)
            if j != column and value is None:
                raise DatasetError(f"{where(row, j)}: {cell!r} is not a number"
                                   + (" (the column holds numbers; a column is text when most of its cells are words)"
                                      if text is not None else ""))
            problem = _missing(cell, value, target=j == column)
            gap = gap or (problem and (j, problem))
            if j != column:
                values.append(value)
        if gap is not None:
            if missing == "drop":
                dropped += 1
                continue
            raise DatasetError(f"{where(row, gap[0])}: {gap[1]}; --missing drop skips rows with missing values")
        features.append(values)
        raw.append((row, cells[column]))
    if not features:
        raise DatasetError(f"{path}: every one of {len(body)} rows has a missing value; nothing is left")
    dataset = _finish(path, names[column], np.array(features, dtype=np.float32), raw, task, dropped)
    return replace(dataset, text_columns=tuple(names[j] for j in sorted(texts)))


def text_columns(body: list[tuple[int, list[str]]], target: int) -> set[int]:
    """The feature columns that hold text: more than half of their filled cells are words (hold a letter
    and are not numbers). So a stray word in a column of numbers is an error naming it, a number among
    words is a word, and numbers written another way ("1,5", "12:30") are errors, not text."""
    texts = set()
    for j in range(len(body[0][1])):
        filled = [c for _, cells in body if (c := cells[j]) and c.lower() not in MISSING_CELLS]
        words = sum(not _is_number(c) and any(ch.isalpha() for ch in c) for c in filled)
        if j != target and 2 * words > len(filled):
            texts.add(j)
    return texts


def _missing_text(cell: str, encoded: np.ndarray | None) -> str | None:
    """What is missing in a text cell (None: nothing): empty, a NaN/NA marker, or nothing to encode."""
    if not cell:
        return "empty cell"
    if encoded is None:
        return f"{cell!r} marks a missing value"
    if not encoded.any():
        return f"{cell!r} holds no word to encode"
    return None


def _missing(cell: str, value: float | None, target: bool) -> str | None:
    """What is missing in a cell (None: nothing): empty, a NaN/NA marker, infinite, beyond float32."""
    if not cell:
        return "empty target cell" if target else "empty cell"
    if value is None:
        return None  # a text target: a class name
    if not np.isfinite(value):
        return f"{cell!r} is not a finite number"
    if abs(value) > FLOAT32_MAX and not target:
        return f"{cell} is too large for float32"
    return None


def _number(cell: str) -> float | None:
    """The cell's number (NaN for a missing-value marker), or None if it is text."""
    if cell.lower() in MISSING_CELLS:
        return float("nan")
    try:
        return float(cell)
    except ValueError:
        return None


# -- NPZ -------------------------------------------------------------------------------------------
def _from_npz(path: str, target: str | None, task: str, missing: str) -> Dataset:
    if not zipfile.is_zipfile(path):
        raise DatasetError(f"{path}: not an NPZ file (an NPZ is a zip of .npy arrays, as numpy.savez writes)")
    try:
        with np.load(path, allow_pickle=False) as data:
            target_key = target or "y"
            if "X" not in data or target_key not in data:
                raise DatasetError(f"{path}: an NPZ needs arrays 'X' and {target_key!r} (has {sorted(data.files)})")
            features, targets = data["X"], data[target_key]
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise DatasetError(f"{path}: not a readable NPZ of numbers ({exc})") from None
    if features.dtype.kind not in "biuf" or features.ndim < 2 or features[0].size == 0:
        raise DatasetError(f"{path}: X must be numbers, one row per sample with at least one feature "
                           f"(dtype {features.dtype}, shape {features.shape})")
    features = features.reshape(len(features), -1).astype(np.float64)
    if len(features) != len(targets):
        raise DatasetError(f"{path}: {len(features)} rows of X for {len(targets)} targets")
    if not len(features):
        raise DatasetError(f"{path}: X has no rows")
    bad = ~np.isfinite(features.astype(np.float32)).all(axis=1)
    if targets.dtype.kind == "f":
        bad |= ~np.isfinite(targets.reshape(len(targets), -1)).all(axis=1)
    if bad.any() and missing == "error":
        i = int(np.flatnonzero(bad)[0])
        j = np.flatnonzero(~np.isfinite(features[i].astype(np.float32)))
        cell = f"X[{i}, {j[0]}] is {features[i, j[0]]}" if j.size else f"{target_key}[{i}] is not finite"
        raise DatasetError(f"{path}: {cell}; --missing drop skips rows with missing values")
    keep = ~bad
    if not keep.any():
        raise DatasetError(f"{path}: every one of {len(features)} rows has a missing value; nothing is left")
    raw = [(f"{target_key}[{i}]", v) for i, v in zip(np.flatnonzero(keep), targets[keep].tolist())]
    return _finish(path, target_key, features[keep].astype(np.float32), raw, task, int(bad.sum()))


# -- targets ---------------------------------------------------------------------------------------
def detect_task(values: list) -> tuple[str, str]:
    """(``classification`` or ``regression``, why) from a target's values, as read."""
    numbers = [_number(v) if isinstance(v, str) else v for v in values]
    if any(n is None or isinstance(n, (list, tuple)) for n in numbers):
        if any(isinstance(n, (list, tuple)) for n in numbers):
            return "regression", "a vector target"
        return "classification", "the target holds text"
    distinct = set(numbers)
    whole = all(float(n).is_integer() for n in distinct)
    if whole and len(distinct) <= MAX_CLASSES:
        return "classification", f"the target holds {len(distinct)} distinct whole numbers"
    what = "whole numbers" if whole else "numbers"
    return "regression", f"the target holds {len(distinct):,} distinct {what} in {len(numbers):,} rows"


def _finish(path: str, name: str, features: np.ndarray, raw: list[tuple], task: str, dropped: int) -> Dataset:
    """Targets as class indices or float vectors; the checks that need the whole target column."""
    values = [v for _, v in raw]
    detected, why = detect_task(values)
    reason = why if task == "auto" else f"said with --task ({why})"
    task = detected if task == "auto" else task
    if task == "regression":
        try:
            targets = np.asarray(values, dtype=np.float64)
        except (TypeError, ValueError):
            row, cell = next((r, v) for r, v in raw if _number(str(v)) is None)
            raise DatasetError(f"{path}: row {row}, target {name!r}: {cell!r} is not a number; a regression target "
                               f"is numeric (--task classification?)") from None
        targets = targets.reshape(len(values), -1)
        return Dataset(features, targets.astype(np.float32), None, reason, dropped, name)
    labels = [_class_name(v) for v in values]
    classes = sorted(set(labels), key=lambda c: (0, float(c), c) if _is_number(c) else (1, 0.0, c))
    index = {c: i for i, c in enumerate(classes)}
    return Dataset(features, np.array([index[c] for c in labels], dtype=np.int64), classes,
                   f"{reason}: {len(classes)} classes", dropped, name)


def check_learnable(dataset: Dataset, path: str) -> None:
    """DatasetError if a network fitted to this data (``neurox run``) would have nothing to learn: one
    class only, or a regression target that never changes. (A stream into a given network may hold one.)"""
    if dataset.classes is not None and len(dataset.classes) < 2:
        raise DatasetError(f"{path}: the target {dataset.target!r} has one class only ({dataset.classes[0]!r} in "
                           f"{len(dataset.targets)} rows): nothing to tell apart")
    if dataset.classes is None and np.ptp(dataset.targets, axis=0).max() == 0:
        raise DatasetError(f"{path}: the target {dataset.target!r} is {dataset.targets[0].tolist()} in every row: "
                           f"nothing to learn")


def _class_name(value) -> str:
    """A class as people name it: ``3`` for 3, 3.0 and "3.0"; text as it is."""
    number = _number(value) if isinstance(value, str) else value
    if isinstance(number, (int, float)) and not isinstance(number, bool) and float(number).is_integer():
        return str(int(number))
    return str(value)


def _list(names: list[str]) -> str:
    return ", ".join(names[:12]) + (f", ... ({len(names)} in all)" if len(names) > 12 else "")


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False
