"""Text as an input row: the hashing trick over word and character n-grams, or the old UTF-8 bytes.

A network says how it reads text in its topology's ``[text]`` table, so that what it learnt from and
what it is asked are encoded the same way (MessengerIn, the webhook, JSON-lines streams, the
Telegram messenger and ``neurox ask --text`` all use :func:`text_encoder` of the live topology)::

    [text]
    encoder = "hashing"      # default; "utf8": UTF-8 bytes / 255, cut or zero-padded (meaning is lost)
    words = [1, 2]           # word n-grams, shortest and longest ([0, 0]: none)
    chars = [2, 4]           # character n-grams inside each word padded with a space ([0, 0]: none)
    lowercase = true
    column_width = 64        # positions each text column of a CSV takes in the input row (``neurox run``)

``hashing`` is scikit-learn's HashingVectorizer (``alternate_sign``, ``norm = "l2"``) written with
numpy: every n-gram is hashed with BLAKE2b -- stable across processes, machines and Python versions,
unlike the salted ``hash()`` -- to one of the row's positions with a sign, its count added there.
Word n-grams and character n-grams are two families: each is l2-normalised on its own (a short text
has far fewer words than character n-grams), the two are added and the sum l2-normalised, so texts
that share words or pieces of words point the same way. The encoding of a text depends only on the
text, the settings and the row's width.
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from ..neuron import Topology
from ._settings import ExtensionError

ENCODERS = ("hashing", "utf8")
DEFAULTS = {"encoder": "hashing", "words": [1, 2], "chars": [2, 4], "lowercase": True, "column_width": 64}
MAX_N = 8
MAX_COLUMN_WIDTH = 4096
"""The longest n-gram a range may ask for."""
WORD = re.compile(r"\w+")
HASH_KEY = b"neurox-text-v1"
"""Part of every hash: changing it (or the algorithm) changes every encoding, so it is versioned."""


@lru_cache(maxsize=1 << 16)
def _hash(feature: str) -> int:
    return int.from_bytes(hashlib.blake2b(feature.encode("utf-8"), digest_size=8, key=HASH_KEY).digest(), "little")


def word_ngrams(words: list[str], low: int, high: int) -> list[str]:
    return [" ".join(words[i:i + n]) for n in range(max(low, 1), high + 1) for i in range(len(words) - n + 1)]


def char_ngrams(words: list[str], low: int, high: int) -> list[str]:
    """Character n-grams of each word padded with one space each side (scikit-learn's ``char_wb``)."""
    grams = []
    for word in words:
        padded = f" {word} "
        for n in range(max(low, 1), high + 1):
            grams.extend(padded[i:i + n] for i in range(len(padded) - n + 1))
    return grams


def hashed(features: list[str], width: int) -> np.ndarray:
    """Signed counts of hashed features, l2-normalised (zeros when there are none)."""
    row = np.zeros(width, dtype=np.float64)
    if features:
        codes = np.fromiter((_hash(f) for f in features), dtype=np.uint64, count=len(features))
        signs = np.where(codes & np.uint64(1), 1.0, -1.0)
        np.add.at(row, ((codes >> np.uint64(1)) % np.uint64(width)).astype(np.int64), signs)
        norm = np.linalg.norm(row)
        if norm > 0:
            row /= norm
    return row


@dataclass(frozen=True)
class TextEncoder:
    """How this network turns text into rows (see the module's docstring); ``encode(text, width)``."""
    encoder: str = "hashing"
    words: tuple[int, int] = (1, 2)
    chars: tuple[int, int] = (2, 4)
    lowercase: bool = True
    column_width: int = 64

    @classmethod
    def from_table(cls, table: dict | None) -> "TextEncoder":
        """The encoder a ``[text]`` table describes (None: the defaults); ExtensionError naming the key."""
        table = dict(table or {})
        unknown = sorted(set(table) - set(DEFAULTS))
        if unknown:
            raise ExtensionError(f"[text]: unknown keys {unknown}; known: {list(DEFAULTS)}")
        settings = {**DEFAULTS, **table}
        if settings["encoder"] not in ENCODERS:
            raise ExtensionError(f"[text]: encoder must be one of {list(ENCODERS)}, got {settings['encoder']!r}")
        if not isinstance(settings["lowercase"], bool):
            raise ExtensionError(f"[text]: lowercase is true or false, got {settings['lowercase']!r}")
        width = settings["column_width"]
        if not (isinstance(width, int) and not isinstance(width, bool) and 1 <= width <= MAX_COLUMN_WIDTH):
            raise ExtensionError(f"[text]: column_width is a whole number of positions, 1..{MAX_COLUMN_WIDTH}; "
                                 f"got {width!r}")
        for key in ("words", "chars"):
            value = settings[key]
            if not (isinstance(value, (list, tuple)) and len(value) == 2
                    and all(isinstance(v, int) and not isinstance(v, bool) for v in value)
                    and (tuple(value) == (0, 0) or 1 <= value[0] <= value[1] <= MAX_N)):
                raise ExtensionError(f"[text]: {key} is [shortest, longest] n-gram with 1 <= shortest <= longest "
                                     f"<= {MAX_N}, or [0, 0] for none; got {value!r}")
        if settings["encoder"] == "hashing" and tuple(settings["words"]) == tuple(settings["chars"]) == (0, 0):
            raise ExtensionError("[text]: the hashing encoder needs words or chars (both are [0, 0])")
        return cls(settings["encoder"], tuple(settings["words"]), tuple(settings["chars"]), settings["lowercase"],
                   width)

    def table(self) -> dict:
        """The ``[text]`` table that describes this encoder."""
        return {"encoder": self.encoder, "words": list(self.words), "chars": list(self.chars),
                "lowercase": self.lowercase, "column_width": self.column_width}

    def refusal(self, encoding) -> str | None:
        """Why a request that names ``encoding`` cannot be encoded here (None: it can). A request may say
        which encoding it expects; it must be this network's, or asking would not match the learning."""
        if encoding is None or encoding == self.encoder:
            return None
        if encoding not in ENCODERS:
            return f"unknown text encoding {encoding!r}; known: {', '.join(ENCODERS)}"
        return (f"this network encodes text with {self.encoder!r} (its [text] encoder), so a request may not "
                f"ask for {encoding!r}; leave 'encoding' out")

    def encode(self, text: str, width: int) -> np.ndarray:
        """``text`` as ``width`` float32 values."""
        if self.encoder == "utf8":
            raw = np.frombuffer(text.encode("utf-8")[:width], dtype=np.uint8).astype(np.float32) / 255.0
            return np.pad(raw, (0, width - raw.size))
        words = WORD.findall(text.lower() if self.lowercase else text)
        row = np.zeros(width, dtype=np.float64)
        if self.words != (0, 0):
            row += hashed(["w" + g for g in word_ngrams(words, *self.words)], width)
        if self.chars != (0, 0):
            row += hashed(["c" + g for g in char_ngrams(words, *self.chars)], width)
        norm = np.linalg.norm(row)
        return (row / norm if norm > 0 else row).astype(np.float32)

    def encode_many(self, texts: list[str], width: int) -> np.ndarray:
        return np.stack([self.encode(t, width) for t in texts]) if texts else np.zeros((0, width), np.float32)


def text_encoder(topology: Topology) -> TextEncoder:
    """The encoder of a topology's ``[text]`` table (the defaults when it has none)."""
    return TextEncoder.from_table(getattr(topology, "text", None))
