"""Typed arguments of control ops: each op that takes arguments declares them once, as a msgspec Struct.

A kind of process names its ops' Structs in a table (:func:`op_arguments`, ``op -> Struct``) and
registers its handlers through :func:`typed`: the handler of such an op is then called with the request
decoded into its Struct, never with the raw map. A missing argument, a wrong type or an unknown key is
a ``bad_request`` whose detail names the op, the key path, what is accepted and what was given, in the
words of the configuration's errors (``_config.explain``): ``add_link: width has the wrong type:
accepted int > 0, got True (bool)``. Unknown keys are refused (a misspelt argument is not ignored).
What each kind's ops take is in docs/protocol.md ("Arguments of the control ops"), one table per kind
as :func:`arguments_table` writes it; a test checks the page against the tables registered here.
"""
from __future__ import annotations

from collections.abc import Callable

import msgspec

from ._config import describe, explain
from ._control import Reply

ENVELOPE = ("op", "rid")
"""Request keys that are not an op's arguments (``_control.Request``)."""
KINDS: dict[str, dict[str, type]] = {}
"""Every registered kind of process -> its table of op -> arguments Struct."""


class Args(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """Base of an op's arguments: an unknown key is refused."""


def op_arguments(kind: str, table: dict[str, type[Args]]) -> dict[str, type[Args]]:
    """Register ``kind``'s table of op -> arguments Struct (for the protocol page's check); returns it."""
    KINDS[kind] = table
    return table


class Typed:
    """A handler called with its op's arguments as a Struct (``handler(args)``) instead of the request map."""

    __slots__ = ("op", "schema", "handler")

    def __init__(self, op: str, schema: type[Args], handler: Callable):
        self.op, self.schema, self.handler = op, schema, handler

    def __call__(self, request: dict):
        return self.handler(arguments(self.op, self.schema, request))


def typed(table: dict[str, type[Args]], handlers: dict[str, Callable]) -> dict[str, Callable]:
    """``handlers`` with the handler of each op in ``table`` taking its Struct; every op of the table
    must have a handler (a table that names an op nobody answers is a mistake)."""
    orphans = set(table) - set(handlers)
    if orphans:
        raise TypeError(f"arguments declared for ops with no handler: {sorted(orphans)}")
    return {op: Typed(op, table[op], handler) if op in table else handler for op, handler in handlers.items()}


def arguments(op: str, schema: type[Args], request: dict) -> Args:
    """The request's arguments decoded into ``schema``; Reply ``bad_request`` naming ``op`` otherwise."""
    body = {key: value for key, value in request.items() if key not in ENVELOPE}
    try:
        return msgspec.convert(body, schema)
    except msgspec.ValidationError as exc:
        raise Reply("bad_request", explain(str(exc), schema, body, where=op, wire=True)) from None


def given(args: Args) -> dict:
    """The arguments a request gave (by their wire names), leaving out those it did not (``UNSET``)."""
    return {f.encode_name: getattr(args, f.name) for f in msgspec.structs.fields(args)
            if getattr(args, f.name) is not msgspec.UNSET}


def arguments_table(table: dict[str, type[Args]]) -> str:
    """The Markdown table of a kind's op arguments, one row per argument, as docs/protocol.md shows it."""
    rows = ["| op | argument | accepted | default |", "|---|---|---|---|"]
    for op, schema in table.items():
        for field in msgspec.structs.fields(schema):
            if field.required:
                default = "required"
            elif field.default is msgspec.UNSET or field.default is msgspec.NODEFAULT and \
                    field.default_factory is msgspec.NODEFAULT:
                default = "optional"
            else:
                value = field.default if field.default is not msgspec.NODEFAULT else field.default_factory()
                default = f"`{msgspec.json.encode(value).decode()}`"
            accepted = describe(field.type).replace("|", "\\|")
            rows.append(f"| `{op}` | `{field.encode_name}` | {accepted} | {default} |")
    return "\n".join(rows)
