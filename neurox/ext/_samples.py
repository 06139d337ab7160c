"""Samples going in and records coming out: the checks every input extension shares.

An input extension turns outside data into :class:`Sample`-s -- a row of ``input_width`` float32
values, a target to learn from (or None) and a tag that travels with it to the output extensions.
Whatever cannot become one raises :class:`InputError` with an atom (``error``) to count it by and a
``detail`` for people. The two bodies a sample arrives in -- a JSON sample (:class:`SampleBody`) and a
MessengerIn request (``_requests``) -- are msgspec Structs, as the configuration's tables and the
control frames are: the types are checked in one place (:func:`decode_body`), the values (width,
range, finiteness) after.
Answers come out of MessengerOut one packet at a time; :func:`sample_records`
splits one into a record per sample, the shape every built-in output writes.
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from typing import Any

import msgspec
import numpy as np
from msgspec import UNSET, UnsetType

from ..neuron import Topology
from ._text import TextEncoder



class InputError(ValueError):
    """Outside data that cannot become a sample. ``error`` is the atom: ``bad_input``, ``non_finite``,
    ``wrong_shape``, ``unknown_label``, ``bad_json``, ``bad_image``, ``too_large``, ``bad_row``, ..."""

    def __init__(self, error: str, detail: str):
        super().__init__(f"{error}: {detail}")
        self.error = error
        self.detail = detail


class SampleBody(msgspec.Struct, forbid_unknown_fields=True):
    """One JSON sample (docs/extensions.md): ``vector`` or ``text``, and optionally the rest."""

    vector: list[float] | UnsetType = UNSET
    text: str | UnsetType = UNSET
    encoding: Any = None
    """Checked by the text encoder, which names the one it accepts."""
    target: Any = None
    """A class index or label name, or a vector: :class:`TargetSpace` says which it may be."""
    message_hash_id: str | int | None = None


SAMPLE_REFUSALS = {"vector": "'vector' must be a list of numbers", "text": "'text' must be a string",
                   "message_hash_id": "'message_hash_id' must be a string or an integer"}
"""What a sample's key of the wrong type is refused with, in the order they are checked."""


_BINARY = (bytes, bytearray, memoryview)
"""Taken as bytes only when they are bytes: a str is never read as base64."""


def decode_body(schema: type, body: dict, refusals: dict[str, str]):
    """``body`` decoded into ``schema``; InputError (``bad_input``) with the refusal of the first key, in
    ``refusals``' order, whose value does not have its type (or is missing when required)."""
    try:
        return msgspec.convert(body, schema, builtin_types=_BINARY)
    except msgspec.ValidationError as exc:
        fields = {f.encode_name: f for f in msgspec.structs.fields(schema)}
        if not all(isinstance(key, str) for key in body):
            raise InputError("bad_input", "the keys of a request are strings") from None
        unknown = sorted(set(body) - set(fields))
        if unknown and schema.__struct_config__.forbid_unknown_fields:
            raise InputError("bad_input", f"unknown keys {unknown}; a sample may have {list(fields)}") from None
        for key, refusal in refusals.items():
            if key not in body:
                if fields[key].required:
                    raise InputError("bad_input", refusal) from None
                continue
            try:
                msgspec.convert(body[key], fields[key].type, builtin_types=_BINARY)
            except msgspec.ValidationError:
                raise InputError("bad_input", refusal) from None
        raise InputError("bad_input", str(exc)) from None


@dataclass
class Sample:
    row: np.ndarray
    """``input_width`` float32 values."""
    target: int | list | None = None
    """A class index or a vector of the end node's width; None: nothing to learn from."""
    tag: object = None
    """Travels with the sample to the output extensions as ``message_hash_id`` (a str or int)."""


def encode_text(text: str, encoding: str | None, width: int, encoder: TextEncoder | None = None) -> np.ndarray:
    """Text as ``width`` values, as the network's ``[text]`` encoder says (``encoder``, default: hashing;
    see ``_text``); ``encoding``, if a request names one, must be that encoder's name."""
    encoder = encoder or TextEncoder()
    refusal = encoder.refusal(encoding)
    if refusal:
        raise InputError("bad_input", refusal)
    return encoder.encode(text, width)


def parse_vector(value, width: int) -> np.ndarray:
    """A list of exactly ``width`` finite numbers as a float32 row."""
    if not isinstance(value, list) or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
        raise InputError("bad_input", "'vector' must be a list of numbers")
    if len(value) != width:
        raise InputError("wrong_shape", f"wrong vector length: expected {width} values, got {len(value)}")
    try:
        row = np.asarray(value, dtype=np.float32)
    except OverflowError:
        row = np.full(width, np.inf, dtype=np.float32)
    if not np.all(np.isfinite(row)):
        raise InputError("non_finite", "the vector holds NaN or infinity (or a number too large for float32)")
    return row


class TargetSpace:
    """What a target may be for this network's end node: a class (index or label name) or a vector."""

    def __init__(self, topology: Topology):
        end = topology.settings_of(topology.layers[-1].neurons[0])
        self.outputs = int(end["units"])
        self.classification = end["activation"] == "softmax"
        labels = topology.output.get("labels") or []
        self.labels = {str(name): i for i, name in enumerate(labels) if i < self.outputs}

    def describe(self) -> str:
        if not self.classification:
            return f"a list of {self.outputs} numbers"
        named = f"a label name ({', '.join(list(self.labels)[:12])}{', ...' if len(self.labels) > 12 else ''}) or " \
            if self.labels else ""
        return f"{named}a class index 0..{self.outputs - 1}"

    def parse(self, value) -> int | list[float]:
        """A class index (from an index or a label name), or a regression vector; InputError if neither."""
        if self.classification:
            index = None
            if isinstance(value, str):
                index = self.labels.get(value)
                if index is None and value.strip().lstrip("-").isdigit():
                    index = int(value)
            elif isinstance(value, (int, float)) and not isinstance(value, bool) and float(value).is_integer():
                index = int(value)
            if index is None or not 0 <= index < self.outputs:
                raise InputError("unknown_label", f"unknown target {value!r}; expected {self.describe()}")
            return index
        values = value if isinstance(value, list) else [value]
        if len(values) != self.outputs or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            raise InputError("wrong_shape", f"target {value!r}: expected {self.describe()}")
        if not all(math.isfinite(v) for v in values):
            raise InputError("non_finite", f"target {value!r}: NaN or infinity")
        return [float(v) for v in values]


def parse_sample(obj, width: int, targets: TargetSpace, text: TextEncoder | None = None) -> Sample:
    """One JSON sample: ``{"vector": [...] | "text": str, "encoding"?, "target"?, "message_hash_id"?}``;
    ``text``: the network's text encoder (``text_encoder(topology)``)."""
    if not isinstance(obj, dict):
        raise InputError("bad_input", f"a sample is an object with 'vector' or 'text', got {type(obj).__name__}")
    body = decode_body(SampleBody, obj, SAMPLE_REFUSALS)
    if body.vector is not UNSET:
        row = parse_vector(body.vector, width)
    elif body.text is not UNSET:
        encoding = body.encoding
        row = encode_text(body.text, encoding if isinstance(encoding, (str, type(None))) else repr(encoding), width,
                          text)
    else:
        raise InputError("bad_input", "a sample needs 'vector' or 'text'")
    return Sample(row, None if body.target is None else targets.parse(body.target), body.message_hash_id)


def to_json(value) -> str:
    """One compact JSON text; what JSON has no form for (bytes a client put in a tag) becomes text."""
    return json.dumps(value, separators=(",", ":"), default=lambda v: v.hex() if isinstance(v, bytes) else str(v))


def sample_records(result: dict) -> list[dict]:
    """One record per sample of an answer published by MessengerOut (see docs/extensions.md, "Records").

    InputError (``bad_result``) if ``result`` is not such an answer.
    """
    try:
        rows, width = int(result["rows"]), int(result["width"])
        output = result["output"]
        if rows <= 0 or width <= 0 or not isinstance(output, list) or len(output) != rows * width:
            raise ValueError("the output does not hold rows x width values")
        per_row = {}
        for key in ("label", "text", "targets"):
            value = result.get(key)
            if value is not None:
                if not isinstance(value, list) or len(value) != rows:
                    raise ValueError(f"'{key}' is not a list of {rows}")
                per_row[key] = value
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError("bad_result", f"not an answer of MessengerOut ({exc})") from None
    tag = result.get("message_hash_id")
    tags = tag if isinstance(tag, list) and len(tag) == rows else [tag] * rows
    now = time.time()
    records = []
    for i in range(rows):
        record = {"t": now, "source": result.get("source"), "message_hash_id": tags[i], "packet": result.get("packet"),
                  "row": i}
        if "label" in per_row:
            record["label"] = per_row["label"][i]
        if "text" in per_row:
            record["text"] = per_row["text"][i]
        if "targets" in per_row:
            record["target"] = per_row["targets"][i]
        record["loss"] = result.get("loss")
        record["output"] = output[i * width:(i + 1) * width]
        records.append(record)
    return records
