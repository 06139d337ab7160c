"""Configuration files: the one TOML reader, and typed decoding of a table against its schema.

Every configuration section of NeuroX (a topology's tables, a node's config, the bot's, the service's)
is declared once as a ``msgspec.Struct``; :func:`typed` decodes a parsed table into it with type checks
(``"no"`` is not a bool, ``True`` is not a number) and turns msgspec's error into one line naming the
file, the key path (``layer[2].units``), what is accepted and what it got -- as Elixir's child-spec
errors do. msgspec decodes msgpack into the same structs, so frames can share the schemas.
"""
from __future__ import annotations

import re
import tomllib
import types
import typing

import msgspec
import msgspec.inspect

_ERROR = re.compile(r"(?P<what>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.S)
_SEGMENT = re.compile(r"\.([A-Za-z0-9_-]+)|\[(\d+|\.\.\.)\]")
_UNSET = object()


class ConfigError(ValueError):
    """A configuration that cannot be used; the message names the file, the key path, what is accepted
    and what was given."""


def read_toml(path: str) -> dict:
    """A TOML file as a dict; ConfigError (``path: why``) if it cannot be read or parsed."""
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: {exc}") from None


def typed(schema, value, where: str | None = None, at: str = ""):
    """``value`` (a parsed table) decoded into ``schema``; ConfigError naming ``where`` (a file, or a
    table such as ``[service]``), the key path under ``at`` and what is accepted if it does not fit."""
    try:
        return msgspec.convert(value, schema)
    except msgspec.ValidationError as exc:
        raise ConfigError(explain(str(exc), schema, value, where, at)) from None


def explain(error: str, schema, value, where: str | None = None, at: str = "", wire: bool = False) -> str:
    """msgspec's validation ``error`` for ``value`` (decoded into ``schema``) as one line; ``wire``: in the
    words of a msgpack frame (a map, an array) rather than TOML's, a missing key with its type."""
    match = _ERROR.match(error.replace(" | null`", "`"))  # None stands for "not given": TOML has no null
    what, raw = match["what"], match["path"] or ""
    segments, got, kind = _walk(schema, value, raw)
    path = ".".join(filter(None, [at, _join(segments)]))
    prefix = "".join(f"{part}: " for part in (where, path) if part)
    if m := re.fullmatch(r"Expected `(.+?)`, got `(.+?)`", what):
        nouns = {"object": "a map", "array": "an array"} if wire else {"object": "a table", "array": "a list"}
        accepted = nouns.get(m[1], m[1])
        return f"{where + ': ' if where else ''}{path or 'the table'} has the wrong type: accepted {accepted}, " \
               f"got {got!r} ({m[2]})"
    if m := re.fullmatch(r"Expected `(.+?)` (.+)", what):
        return f"{prefix}accepted {m[1]} {m[2]}, got {got!r}"
    if m := re.fullmatch(r"Object contains unknown field `(.+?)`", what):
        accepted = ", ".join(f.encode_name for f in msgspec.structs.fields(kind)) if _is_struct(kind) else "?"
        return f"{prefix}unknown key {m[1]!r}; accepted: {accepted}"
    if m := re.fullmatch(r"Object missing required field `(.+?)`", what):
        fields = {f.encode_name: f.type for f in msgspec.structs.fields(kind)} if wire and _is_struct(kind) else {}
        return f"{prefix}{m[1]} is required" + (f" (accepted {describe(fields[m[1]])})" if m[1] in fields else "")
    if m := re.fullmatch(r"Invalid enum value (.+)", what):
        return f"{prefix}accepted {describe(kind)}, got {got!r}"
    return f"{prefix}{what[0].lower()}{what[1:]}, got {got!r}"


def describe(kind) -> str:
    """A type as a person reads it: ``str``, ``int >= 1``, ``"in" | "out"``, ``[number]``, ``map``, ..."""
    return _describe(msgspec.inspect.type_info(kind))


def _describe(info) -> str:
    inspect = msgspec.inspect
    if isinstance(info, inspect.Metadata):  # Annotated[..., Meta(description=...)]: in the schema's own words
        return (info.extra_json_schema or {}).get("description") or _describe(info.type)
    bounds = [f"{sign} {getattr(info, name)}" for name, sign in (("gt", ">"), ("ge", ">="), ("lt", "<"), ("le", "<="))
              if getattr(info, name, None) is not None]
    if getattr(info, "min_length", None):
        bounds.append(f"of length >= {info.min_length}")
    if isinstance(info, inspect.LiteralType):
        return " | ".join(repr(v).replace("'", '"') for v in info.values)
    if isinstance(info, inspect.UnionType):
        return " | ".join(_describe(t) for t in info.types)
    if isinstance(info, (inspect.ListType, inspect.TupleType, inspect.VarTupleType)):
        items = getattr(info, "item_type", None)
        return f"[{_describe(items)}]" if items is not None else "array"
    if isinstance(info, inspect.StructType):
        return "{" + ", ".join(f.encode_name for f in info.fields) + "}"
    names = {inspect.StrType: "str", inspect.IntType: "int", inspect.FloatType: "number", inspect.BoolType: "bool",
             inspect.BytesType: "bin", inspect.DictType: "map", inspect.NoneType: "null", inspect.AnyType: "any"}
    return " ".join([names.get(type(info), type(info).__name__), *bounds])


def _join(segments: list) -> str:
    text = ""
    for s in segments:
        text += f"[{s}]" if isinstance(s, int) else f".{s}"
    return text.lstrip(".")


def _walk(schema, value, raw: str) -> tuple[list, object, object]:
    """The key path msgspec reported (a dict key it wrote as ``[...]`` found again), the value there
    (``_UNSET`` if absent) and the type expected there."""
    segments, kind = [], schema
    for name, index in _SEGMENT.findall(raw):
        kind = _concrete(kind, value)
        if name:
            fields = {f.encode_name: f.type for f in msgspec.structs.fields(kind)} if _is_struct(kind) else {}
            kind = fields.get(name, typing.Any)
            value = value.get(name, _UNSET) if isinstance(value, dict) else _UNSET
            segments.append(name)
        elif index == "...":
            args = typing.get_args(kind)
            kind = args[1] if len(args) == 2 else typing.Any
            key = _failing_key(kind, value) if isinstance(value, dict) else None
            value = value.get(key, _UNSET) if key is not None else _UNSET
            segments.append(key if key is not None else "*")
        else:
            args = typing.get_args(kind)
            kind = args[0] if args else typing.Any
            value = value[int(index)] if isinstance(value, list) and int(index) < len(value) else _UNSET
            segments.append(int(index))
    return segments, value, _concrete(kind, value)


def _failing_key(kind, table: dict):
    for key, item in table.items():
        try:
            msgspec.convert(item, kind)
        except msgspec.ValidationError:
            return key
    return None


def _concrete(kind, value):
    """``kind`` without ``Annotated`` and, of a union, the member that fits ``value``'s shape."""
    while typing.get_origin(kind) is typing.Annotated:
        kind = typing.get_args(kind)[0]
    args = typing.get_args(kind)
    if typing.get_origin(kind) in (typing.Union, types.UnionType):
        table = [a for a in args if _is_struct(a) or typing.get_origin(a) is dict]
        array = [a for a in args if typing.get_origin(a) in (list, tuple)]
        pick = table if isinstance(value, dict) else array if isinstance(value, list) else []
        return _concrete(pick[0], value) if pick else kind
    return kind


def _is_struct(kind) -> bool:
    return isinstance(kind, type) and issubclass(kind, msgspec.Struct)
