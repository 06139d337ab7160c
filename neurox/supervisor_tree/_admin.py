"""The client side of the administration API: one method, one request to a supervisor's control socket."""
from __future__ import annotations

import zmq

from ..runtime import ControlClient
from ._child_spec import ChildSpec, ChildSpecError, normalize_child_spec
from ._strategy import validate_flags
from ._supervisor import SUPERVISOR_TARGET


class SupervisorClient:
    """Talks to one supervisor. Errors arrive as ``ControlError`` with OTP's atoms in ``.error``."""

    def __init__(self, endpoint: str | None, ctx: zmq.Context | None = None, timeout: float = 30.0, client=None):
        """``client``: any object with ``ControlClient``'s ``call`` and ``close`` instead of an endpoint (a
        supervisor of another host, through its control gateway)."""
        self.client = client or ControlClient(ctx or zmq.Context.instance(), endpoint, timeout)

    def start_child(self, spec: ChildSpec | dict | None = None, args: dict | None = None) -> dict:
        """Start a child from ``spec``; for simple_one_for_one, from the template with ``args``."""
        if spec is None:
            return self.client.call("start_child", args=args or {})
        return self.client.call("start_child", spec=normalize_child_spec(spec).to_wire())

    def terminate_child(self, child_id: str) -> str:
        return self.client.call("terminate_child", id=child_id)

    def restart_child(self, child_id: str) -> dict:
        return self.client.call("restart_child", id=child_id)

    def delete_child(self, child_id: str) -> str:
        return self.client.call("delete_child", id=child_id)

    def which_children(self) -> list[dict]:
        return self.client.call("which_children")

    def count_children(self) -> dict:
        return self.client.call("count_children")

    def status(self) -> dict:
        return self.client.call("status")

    def ping(self, timeout: float | None = None) -> str:
        return self.client.call("ping", timeout=timeout)

    def close(self) -> None:
        self.client.close()


def supervisor_spec(child_id: str, children: list, strategy: str = "one_for_one", intensity: int = 3,
                    period: float = 5.0, restart: str = "permanent", template=None, **extra) -> ChildSpec:
    """The child spec of a supervisor with these flags and children (OTP's supervisor child).

    The flags and specs are checked here, so a mistake is reported where it was made rather than
    as a supervisor process that fails to start.
    """
    validate_flags(strategy, intensity, period)
    if (template is None) == (strategy == "simple_one_for_one"):
        raise ChildSpecError(f"a template is given exactly when the strategy is simple_one_for_one "
                             f"(strategy {strategy!r}, template {template!r})")
    if template is not None and children:
        raise ChildSpecError("a simple_one_for_one supervisor starts with no children, only a template")
    specs = [normalize_child_spec(c) for c in children]
    ids = [c.id for c in specs]
    if len(set(ids)) != len(ids):
        raise ChildSpecError(f"child ids must be unique within a supervisor, got {ids}")
    args = {"strategy": strategy, "intensity": intensity, "period": period,
            "children": [c.to_wire() for c in specs], **extra}
    if template is not None:
        args["template"] = normalize_child_spec(template).to_wire()
    return normalize_child_spec({"id": child_id, "start": [SUPERVISOR_TARGET, args],
                                 "restart": restart, "type": "supervisor"})


def root_args(children: list, strategy: str = "one_for_one", intensity: int = 3, period: float = 5.0,
              template=None, **extra) -> dict:
    """The arguments of a root supervisor, for ``Tree(root_args(...))``."""
    return supervisor_spec("root", children, strategy, intensity, period, template=template, **extra).args
