"""An extension's settings: what its ``[[extension]]`` line may say, checked before anything starts.

Each extension class declares ``settings_schema``, a map from setting name to :class:`Setting`.
:func:`configure` checks a line against it -- unknown names, wrong types, values out of range, a
required setting missing -- and returns the complete settings with the defaults filled in. It runs
twice: when the network's children are built (so ``neurox run --topology`` refuses a bad line before
any process starts) and again in the extension's own process.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass

from ..neuron import TopologyError

REQUIRED = object()
"""The default of a setting that must be given."""
PASSED_THROUGH = ("module", "data_dir")
"""Keys every extension gets without declaring them: its module, and the network's data directory."""
KINDS = ("int", "float", "bool", "str", "path", "strings", "ints")


class ExtensionError(TopologyError):
    """An ``[[extension]]`` line that cannot be started; the message names the extension and the setting."""


@dataclass(frozen=True)
class Setting:
    """One setting: what it is for (``doc``, shown in docs/extensions.md), its default, and its kind.

    ``kind`` is one of ``int``, ``float``, ``bool``, ``str``, ``path`` (a str made absolute against the
    working directory of whoever builds the network; ``-`` stays as it is and means standard input or
    output), ``strings`` (a list of str), ``ints`` (a list of integers). ``choices`` limits a str;
    ``minimum`` a number. A default of None means "not set" (the extension decides what that means).
    """
    doc: str
    default: object = REQUIRED
    kind: str = "str"
    choices: tuple = ()
    minimum: float | None = None

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"unknown setting kind {self.kind!r}; known: {KINDS}")

    def parse(self, value):
        """The value checked and normalised; ValueError says what was expected. Parsing a parsed value
        gives it back (settings are checked where the network is built and again in the extension)."""
        if value is None and self.default is None:
            return None
        kind = self.kind
        if kind == "bool":
            if not isinstance(value, bool):
                raise ValueError(f"expected true or false, got {value!r}")
            return value
        if kind in ("int", "float"):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or \
                    (kind == "int" and not float(value).is_integer()) or not math.isfinite(value):
                raise ValueError(f"expected {'an integer' if kind == 'int' else 'a number'}, got {value!r}")
            value = int(value) if kind == "int" else float(value)
            if self.minimum is not None and value < self.minimum:
                raise ValueError(f"expected at least {self.minimum}, got {value!r}")
            return value
        if kind == "strings":
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise ValueError(f"expected a list of strings, got {value!r}")
            return list(value)
        if kind == "ints":
            if not isinstance(value, list) or not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
                raise ValueError(f"expected a list of integers, got {value!r}")
            return list(value)
        if not isinstance(value, str) or not value:
            raise ValueError(f"expected a non-empty string, got {value!r}")
        if self.choices and value not in self.choices:
            raise ValueError(f"expected one of {', '.join(map(repr, self.choices))}, got {value!r}")
        return value if kind == "str" or value == "-" else os.path.abspath(value)


def configure(schema: dict[str, Setting], raw: dict, name: str = "extension") -> dict:
    """The complete settings of one extension, or ExtensionError naming everything that is wrong."""
    problems = []
    unknown = sorted(set(raw) - set(schema) - set(PASSED_THROUGH) - {"name"})
    if unknown:
        problems.append(f"unknown settings {unknown}; known: {sorted(schema)}")
    settings = {k: raw[k] for k in PASSED_THROUGH if k in raw}
    for key, setting in schema.items():
        if key not in raw:
            if setting.default is REQUIRED:
                problems.append(f"'{key}' is required ({setting.doc})")
            else:
                settings[key] = setting.default
            continue
        try:
            settings[key] = setting.parse(raw[key])
        except ValueError as exc:
            problems.append(f"'{key}': {exc}")
    if problems:
        raise ExtensionError(f"extension {name!r}: " + "; ".join(problems))
    return settings
