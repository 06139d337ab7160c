"""What a supervisor's administration ops take (docs/protocol.md, "Supervisor administration API")."""
from __future__ import annotations

from typing import Annotated, Any

import msgspec

from ..runtime import Args, op_arguments


class StartChild(Args):
    """A child spec (checked by ``normalize_child_spec``: ``bad_child_spec``), or for a simple_one_for_one
    supervisor the args merged over its template's."""

    spec: Annotated[Any, msgspec.Meta(description="a child spec (above)")] = None
    args: dict[str, Any] = {}


class ChildId(Args):
    """The child an op acts on."""

    id: str


SUPERVISOR_ARGS = op_arguments("supervisor", {"start_child": StartChild, "terminate_child": ChildId,
                                              "restart_child": ChildId, "delete_child": ChildId})
