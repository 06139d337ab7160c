"""``stream``: training data into the network from a file or standard input -- CSV, NPZ or JSON lines.

The process version of :class:`~neurox.ext.Stream` (what ``neurox run --data`` does in-process): the
same :class:`~neurox.ext.Feed` keeps at most ``window`` packets in flight and scores every answer
prequentially (``accuracy``, ``rolling_accuracy``, ``mean_loss`` in its ``metrics``).

- A CSV or NPZ **file** is read whole with :func:`~neurox.ext.load_dataset` (the checks of ``neurox run
  --data``; a CSV's text columns are encoded in place by the topology's ``[text]`` encoder, each
  ``column_width`` wide), and fed ``epochs`` times, shuffled each time. Its values go as they are: the network
  scales every origin's inputs alike, at MessengerIn (``[input] scale``); ``scale = "minmax"`` also
  scales each column to [0, 1] over the whole file first.
- **Standard input** (``path = "-"``), a named pipe, and JSON lines are read as they come, one record
  at a time (and so is a CSV file with ``scale = "none"``), their values taken as they are.
  A CSV line is ``feature,...,target``; a JSON line is a sample ``{"vector": [...], "target": ...}`` as
  the webhook takes it. An NPZ on standard input is read to its end first.

A file's place (the next line's byte offset, or the position in the epoch's order) is kept in
``DATA_DIR/extensions/NAME.offset`` (``resume``, :mod:`~neurox.ext._offsets`): a stream restarted after
a crash goes on from there, not from the file's start.

Targets are class indices or names from the topology's ``[output] labels`` (or vectors for a
regression network). A line that cannot be used is counted by kind (``bad_row``, ``bad_json``,
``wrong_shape``, ``unknown_label``, ...) and skipped. See docs/extensions.md, "stream".

    [[extension]]
    name = "train"
    module = "stream"
    path = "/srv/train.csv"
    target = "label"
    epochs = 0                      # forever
"""
from __future__ import annotations

import csv
import io
import json
import os
import time
from collections import deque

import numpy as np

from ..neuron import Topology
from ._sample_input import SampleInput
from ._datasets import DatasetError, _is_number, load_dataset
from ._offsets import SavedOffset
from ._pipes import Pipe, is_pipe
from ._samples import InputError, Sample, parse_sample
from ._text import text_encoder
from ._settings import ExtensionError, Setting

READ_CHUNK = 65536
LINES_PER_TURN = 2000
"""Lines parsed per turn of the loop, so that answers and control requests are not kept waiting."""


class Extension(SampleInput):
    settings_schema = {
        **SampleInput.settings_schema,
        "path": Setting("a CSV, NPZ or JSON-lines file, '-' for standard input, or a named pipe", kind="path"),
        "format": Setting("'csv', 'npz' or 'jsonl'; 'auto': from the file's extension (.csv, .npz, .jsonl, "
                          ".ndjson); standard input needs it said", "auto", choices=("auto", "csv", "npz", "jsonl")),
        "target": Setting("the target: a CSV column (name or index; default the last), an NPZ array (default "
                          "'y'); '-': none, every column is a feature. JSON lines carry their own", None),
        "scale": Setting("'auto': a CSV or NPZ file read whole (as neurox run --data), values as they are (the "
                         "network scales them at MessengerIn); 'minmax': each feature column of such a file "
                         "first scaled to [0, 1] over the whole file; 'none': a CSV file read a line at a time",
                         "auto", choices=("auto", "minmax", "none")),
        "epochs": Setting("passes over a file, 0: forever (standard input and pipes: one)", 1, "int", minimum=0),
        "shuffle": Setting("a file's samples in a new random order each epoch (a file read whole)", True, "bool"),
        "seed": Setting("of the shuffling", 0, "int"),
        "max_line_bytes": Setting("longer lines are refused (too_large)", 1024 * 1024, "int", minimum=16),
        "resume": Setting("after a restart, go on from the place in the file saved in the data directory "
                          "(a file only; standard input and pipes start where they are)", True, "bool"),
    }

    @classmethod
    def configure(cls, raw: dict, name: str, topology: Topology) -> dict:
        settings = super().configure(raw, name, topology)
        path, fmt = settings["path"], settings["format"]
        if fmt == "auto":
            ext = os.path.splitext(path)[1].lower()
            fmt = {".csv": "csv", ".npz": "npz", ".jsonl": "jsonl", ".ndjson": "jsonl"}.get(ext)
            if fmt is None:
                raise ExtensionError(f"extension {name!r}: 'format': cannot tell the format of {path!r}; "
                                     f"say format = \"csv\", \"npz\" or \"jsonl\"")
        settings["format"] = fmt
        piped = is_pipe(path)
        scale = settings["scale"]
        if scale == "auto" and (piped or fmt == "jsonl"):
            scale = "none"
        if scale == "minmax" and (piped or fmt == "jsonl"):
            raise ExtensionError(f"extension {name!r}: 'scale': minmax needs the whole of a CSV or NPZ file; "
                                 f"standard input, pipes and JSON lines are taken as they are (scale = \"none\")")
        settings["scale"] = scale
        return settings

    def __init__(self, settings: dict, env: dict):
        super().__init__(settings, env)
        self.path, self.format = settings["path"], settings["format"]
        self.target = settings["target"]
        self.epochs, self.shuffle = settings["epochs"], settings["shuffle"]
        self.max_line = settings["max_line_bytes"]
        self.text = text_encoder(self.topology)
        self.rng = np.random.default_rng(settings["seed"])
        self.epoch = 0
        self.state = "reading"
        self.arrays = None  # (rows, per-row targets, order, next position) of a file read whole
        self.buffer = bytearray()
        self.line_number = 0
        self.header: list[str] | None = None
        self.target_column: int | None = None
        self.pipe = self.file = None
        self.ended = False
        """The file (this pass) or the pipe has no more bytes; what is buffered is still to be parsed."""
        self.counters.update(records=0)
        self.saved = None
        self.read_at: deque[tuple[Sample, dict]] = deque()
        if is_pipe(self.path):
            self.pipe = Pipe(self.path)
            self.watch_source(self.pipe, self._on_readable)
            return
        if settings["scale"] in ("auto", "minmax") or self.format == "npz":
            self._load_whole(settings["scale"])
        else:
            self._open_file()
        if settings["resume"]:
            self.saved = SavedOffset(os.path.join(self.data_dir, "extensions", f"{self.name}.offset"), self.path)
            if self.state == "reading":
                self._resume(self.saved.load())

    # -- the place in a file, kept across restarts ---------------------------------------------------
    def _read_place(self) -> dict:
        """Where the next sample will be read from."""
        if self.file is None:  # read whole: the position in this epoch's order
            return {"epoch": self.epoch, "position": self.position if self.arrays is not None else 0}
        return {"epoch": self.epoch, "offset": self.file.tell() - len(self.buffer), "line_number": self.line_number,
                "header": self.header}

    def _offered(self, sample: Sample, place: dict) -> None:
        """Remember where a queued sample was read, so the place saved is that of the first sample not sent."""
        if self.saved is not None:
            self.read_at.append((sample, place))

    def _place(self) -> dict:
        """The place of the first sample still waiting in the queue, else where the next will be read: what was
        queued but not sent when the process died is read again after the restart."""
        first = self.pending[0] if self.pending else None
        while self.read_at and self.read_at[0][0] is not first:
            self.read_at.popleft()
        return self.read_at[0][1] if self.read_at else self._read_place()

    def _resume(self, place: dict | None) -> None:
        if place is None:
            return
        self.epoch = int(place.get("epoch", 0))
        if self.epochs and self.epoch >= self.epochs:
            self.state, self.arrays = "done", None
        elif self.arrays is not None:
            for _ in range(self.epoch):  # the same seeded orders as before the restart
                self._new_epoch_order()
            self.position = min(int(place.get("position", 0)), len(self.order))
        else:
            self.file.seek(int(place.get("offset", 0)))
            self.line_number = int(place.get("line_number", 0))
            self.header = place.get("header")
            if self.header is not None:
                self.target_column = self._column(self.header)

    def _keep_place(self, force: bool = False) -> float | None:
        """Save the place if it is time to; seconds until the next save is due (None: nothing to save)."""
        if self.saved is None or self.state not in ("reading", "done"):
            return None
        now = time.monotonic()
        if force or now >= self.saved.next_save:
            self.saved.save(self._place(), now, force)
            return None
        if self._place() == self.saved.last:
            return None  # nothing new to save: an idle stream does not wake for it
        return self.saved.next_save - now

    def ready_info(self) -> dict:
        return {"kind": self.kind, "path": self.path, "format": self.format}

    def status(self) -> dict:
        return {**super().status(), "state": self.state, "epoch": self.epoch, "path": self.path,
                "format": self.format}

    # -- a file read whole (CSV or NPZ, checked like neurox run --data) ----------------------------
    def _load_whole(self, scale: str, data: bytes | None = None) -> None:
        try:
            if scale in ("auto", "minmax"):
                dataset = load_dataset(self.path, None if self.target in (None, "-") else self.target,
                                       "classification" if self.targets.classification else "regression",
                                       text=self.text)
                features, classes = dataset.features, dataset.classes
                if scale == "minmax":
                    low, span = features.min(axis=0), np.ptp(features, axis=0)
                    features = np.where(span > 0, (features - low) / np.where(span > 0, span, 1), 0.0)
                raw = [classes[i] for i in dataset.targets] if classes is not None else dataset.targets.tolist()
            else:
                features, raw = self._npz_arrays(data)
        except DatasetError as exc:  # it names the file
            self._fail("bad_file", str(exc))
            return
        except (OSError, ValueError, KeyError) as exc:
            self._fail("bad_file", f"{self.path}: {exc}")
            return
        if features.ndim != 2 or features.shape[1] != self.width:
            self._fail("wrong_shape", f"{self.path}: {features.shape[1] if features.ndim == 2 else features.shape} "
                                      f"features a row; the network takes {self.width}")
            return
        targets, bad = [], {}
        for value in raw if raw is not None else [None] * len(features):
            try:
                targets.append(None if value is None else self.targets.parse(_plain(value, self.targets)))
            except InputError as exc:
                targets.append(exc)
                bad.setdefault(exc.detail, 0)
                bad[exc.detail] += 1
        for detail, rows in bad.items():  # one line per distinct problem, not one per row
            self.reject("unknown_label", f"{self.path}: {rows} rows: {detail}")
        self.arrays = (np.asarray(features, dtype=np.float32), targets)
        self._new_epoch_order()

    def _npz_arrays(self, data: bytes | None):
        with np.load(io.BytesIO(data) if data is not None else self.path, allow_pickle=False) as npz:
            if "X" not in npz:
                raise ValueError(f"an NPZ needs an array 'X' (has {sorted(npz.files)})")
            features = np.asarray(npz["X"], dtype=np.float64)
            features = features.reshape(len(features), -1)
            name = "y" if self.target is None else self.target
            if name == "-" or (self.target is None and "y" not in npz):
                return features, None
            if name not in npz:
                raise ValueError(f"no target array {name!r} (has {sorted(npz.files)})")
            raw = np.asarray(npz[name])
            if len(raw) != len(features):
                raise ValueError(f"{len(features)} rows of X for {len(raw)} targets")
            return features, raw.tolist()

    def _new_epoch_order(self) -> None:
        count = len(self.arrays[0])
        self.order = self.rng.permutation(count) if self.shuffle else np.arange(count)
        self.position = 0

    def _refill_arrays(self) -> None:
        features, targets = self.arrays
        while self.room > 0:
            if self.position >= len(self.order):
                self.epoch += 1
                if self.pipe is not None or (self.epochs and self.epoch >= self.epochs):
                    self.state = "done"
                    self.arrays = None
                    return
                self._new_epoch_order()
            place = self._read_place() if self.saved is not None else None
            i = int(self.order[self.position])
            self.position += 1
            target = targets[i]
            if isinstance(target, InputError):
                continue  # counted once per distinct problem when the file was read
            sample = Sample(features[i], target, i)
            self.offer(sample)
            self._offered(sample, place)
            self.count("records")

    # -- lines (CSV or JSON) from a file, standard input or a pipe ---------------------------------
    def _open_file(self) -> None:
        try:
            self.file = open(self.path, "rb")
        except OSError as exc:
            self._fail("bad_file", f"{self.path}: {exc.strerror or exc}")

    def refill(self) -> float | None:
        due, wait = self._keep_place(), self._read_more()
        return wait if due is None else due if wait is None else min(due, wait)

    def _read_more(self) -> float | None:
        if self.state != "reading":
            return None
        if self.arrays is not None:
            self._refill_arrays()
            return None
        if self.format == "npz":
            return None  # an NPZ on a pipe is read whole first (see _on_readable)
        if self.pipe is None and not self.ended and len(self.buffer) < READ_CHUNK:
            chunk = self.file.read(READ_CHUNK)
            self.buffer += chunk
            self.ended = not chunk
        self._lines(final=self.ended)
        if self.ended and not self.buffer and self.state == "reading":
            self._end_of_pass()
        more = self.pipe is None or b"\n" in self.buffer or (self.ended and self.buffer)
        return 0.0 if more and self.state == "reading" and self.room > 0 else None

    def _end_of_pass(self) -> None:
        self.epoch += 1
        if self.pipe is not None or (self.epochs and self.epoch >= self.epochs):
            self.state = "done"
            return
        self.file.seek(0)
        self.ended = False
        self.line_number = 0
        self.header = None

    def _on_readable(self) -> None:
        data = self.read_source(self.pipe)
        if data is None:
            return
        self.buffer += data
        self.ended = not data
        if self.format != "npz":
            self.refill()
        elif self.ended:  # an NPZ is a zip: it can only be read whole
            self._load_whole("none", bytes(self.buffer))
            self.buffer.clear()

    def _lines(self, final: bool = False) -> None:
        """Parse the buffered complete lines (and at the end, the last one) while the queue has room."""
        parsed = 0
        while self.room > 0 and parsed < LINES_PER_TURN and self.state == "reading":
            end = self.buffer.find(b"\n")
            if end < 0:
                if len(self.buffer) > self.max_line:
                    self.line_number += 1
                    self.reject("too_large", f"line {self.line_number}: longer than max_line_bytes ({self.max_line})")
                    self._skip_long_line()
                    continue
                if not final or not self.buffer:
                    return
                end = len(self.buffer)
            place = self._read_place() if self.saved is not None and self.file is not None else None
            line = bytes(self.buffer[:end])
            del self.buffer[:end + 1]
            self.line_number += 1
            parsed += 1
            if len(line) > self.max_line:
                self.reject("too_large", f"line {self.line_number}: longer than max_line_bytes ({self.max_line})")
                continue
            self._line(line, place)

    def _skip_long_line(self) -> None:
        """Drop the rest of a line that is too long (up to its newline, or all that came so far)."""
        end = self.buffer.find(b"\n")
        del self.buffer[:len(self.buffer) if end < 0 else end + 1]

    def _line(self, line: bytes, place: dict | None = None) -> None:
        text = line.decode("utf-8", errors="replace").strip()
        if not text:
            return
        try:
            sample = self._json_line(text) if self.format == "jsonl" else self._csv_line(text)
        except InputError as exc:
            self.reject(exc.error, f"line {self.line_number}: {exc.detail}")
            return
        if sample is not None:
            self.offer(sample)
            self.count("records")
            if place is not None:
                self._offered(sample, place)

    def _json_line(self, text: str) -> Sample:
        try:
            obj = json.loads(text)
        except (ValueError, RecursionError) as exc:
            raise InputError("bad_json", f"not JSON ({exc})") from None
        sample = parse_sample(obj, self.width, self.targets, self.text)
        if sample.tag is None:
            sample.tag = self.line_number
        return sample

    def _csv_line(self, text: str) -> Sample | None:
        cells = [c.strip() for c in next(csv.reader([text]))]
        if self.header is None:
            self.header = cells if not all(_is_number(c) for c in cells) else [str(i) for i in range(len(cells))]
            self.target_column = self._column(self.header)
            if self.state != "reading":
                return None  # no such target column: the source has failed
            if self.header is cells:
                return None  # that was the header
        if len(cells) != len(self.header):
            raise InputError("wrong_shape", f"{len(cells)} columns; the first line has {len(self.header)}")
        target = None
        if self.target_column is not None:
            target = self.targets.parse(_plain(cells[self.target_column], self.targets))
            cells = cells[:self.target_column] + cells[self.target_column + 1:]
        if len(cells) != self.width:
            raise InputError("wrong_shape", f"{len(cells)} features; the network takes {self.width}")
        try:
            row = np.array([float(c) for c in cells], dtype=np.float32)
        except ValueError as exc:
            raise InputError("bad_row", f"a feature is not a number ({exc})") from None
        if not np.all(np.isfinite(row)):
            raise InputError("bad_row", "a feature is NaN or infinite")
        return Sample(row, target, self.line_number)

    def _column(self, header: list[str]) -> int | None:
        if self.target == "-":
            return None
        if self.target is None:
            return len(header) - 1
        if self.target in header:
            return header.index(self.target)
        if self.target.lstrip("-").isdigit() and -len(header) <= int(self.target) < len(header):
            return int(self.target) % len(header)
        self._fail("bad_file", f"{self.path}: no target column {self.target!r}; columns are {header}")
        return None

    def _fail(self, error: str, detail: str) -> None:
        """The source as a whole cannot be used: say so, and idle (a restart would only fail again)."""
        self.reject(error, detail)
        self.state = f"failed: {detail}"
        print(f"{self.name}: {detail}", flush=True)

    def close(self) -> None:
        self._keep_place(force=True)
        if self.pipe is not None:
            self.unwatch_source(self.pipe)
            self.pipe.close()
        elif self.file is not None:
            self.file.close()
        super().close()


def _plain(value, targets):
    """A target read from a file as the TargetSpace takes it (numbers of a regression network as such)."""
    if not targets.classification and isinstance(value, str) and _is_number(value):
        return float(value)
    if targets.classification and isinstance(value, float) and value.is_integer():
        return int(value)
    return value
