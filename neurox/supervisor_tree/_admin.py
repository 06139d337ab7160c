"""The client side of the administration API: one method, one request to a supervisor's control socket."""
from __future__ import annotations

import zmq

from ..runtime import ControlClient
from ._child_spec import ChildSpec, normalize_child_spec
from ._supervisor import SUPERVISOR_TARGET


class SupervisorClient:
    """Talks to one supervisor. Errors arrive as ``ControlError`` with OTP's atoms in ``.error``."""

    def __init__(self, endpoint: str, ctx: zmq.Context | None = None, timeout: float = 30.0):
        self.client = ControlClient(ctx or zmq.Context.instance(), endpoint, timeout)

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
    """The child spec of a supervisor with these flags and children (OTP's supervisor child)."""
    args = {"strategy": strategy, "intensity": intensity, "period": period,
            "children": [normalize_child_spec(c).to_wire() for c in children], **extra}
    if template is not None:
        args["template"] = normalize_child_spec(template).to_wire()
    return normalize_child_spec({"id": child_id, "start": [SUPERVISOR_TARGET, args],
                                 "restart": restart, "type": "supervisor"})


def root_args(children: list, strategy: str = "one_for_one", intensity: int = 3, period: float = 5.0,
              template=None, **extra) -> dict:
    """The arguments of a root supervisor, for ``Tree(root_args(...))``."""
    return supervisor_spec("root", children, strategy, intensity, period, template=template, **extra).args
