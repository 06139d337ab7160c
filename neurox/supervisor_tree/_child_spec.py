"""Child specifications, as OTP and Elixir define them, and the one function that normalises them.

A child spec is a map with ``id`` and ``start`` required, and ``restart``, ``shutdown`` and ``type``
defaulting as in OTP: ``permanent``; ``5000`` ms for a worker and ``infinity`` for a supervisor;
``worker``. ``start`` is ``[target, args]`` where ``target`` is ``"package.module:function"`` -- a
function ``f(args, env)`` run in a freshly forked process -- and ``args`` a msgpack-able map.
"""
from __future__ import annotations

from dataclasses import dataclass, field

RESTART_TYPES = ("permanent", "transient", "temporary")
CHILD_TYPES = ("worker", "supervisor")
BRUTAL_KILL = "brutal_kill"
INFINITY = "infinity"
DEFAULT_WORKER_SHUTDOWN_MS = 5000

ACCEPTED_FORMS = (
    "a child spec is a map: {'id': str, 'start': ['package.module:function', {args}], "
    "'restart': 'permanent'|'transient'|'temporary', "
    "'shutdown': 'brutal_kill'|'infinity'|<non-negative ms>, 'type': 'worker'|'supervisor', "
    "'modules': [str]} (only id and start are required)"
)


class ChildSpecError(ValueError):
    """A child spec that cannot be used; the message lists the accepted forms."""


@dataclass(frozen=True)
class ChildSpec:
    id: str
    target: str
    args: dict = field(default_factory=dict)
    restart: str = "permanent"
    shutdown: int | str = DEFAULT_WORKER_SHUTDOWN_MS
    type: str = "worker"
    modules: tuple[str, ...] = ()

    def to_wire(self) -> dict:
        return {"id": self.id, "start": [self.target, self.args], "restart": self.restart,
                "shutdown": self.shutdown, "type": self.type, "modules": list(self.modules)}


def normalize_child_spec(spec) -> ChildSpec:
    """Accept a ChildSpec or a map, fill OTP's defaults, and reject anything else clearly."""
    if isinstance(spec, ChildSpec):
        return spec
    if not isinstance(spec, dict):
        raise ChildSpecError(f"{ACCEPTED_FORMS}; got {spec!r}")
    unknown = set(spec) - {"id", "start", "restart", "shutdown", "type", "modules"}
    if unknown:
        raise ChildSpecError(f"unknown keys {sorted(unknown)}; {ACCEPTED_FORMS}; got {spec!r}")
    child_id = spec.get("id")
    if not isinstance(child_id, str) or not child_id or "/" in child_id:
        raise ChildSpecError(f"'id' must be a non-empty string without '/'; {ACCEPTED_FORMS}; got {spec!r}")
    start = spec.get("start")
    if (not isinstance(start, (list, tuple)) or len(start) != 2 or not isinstance(start[0], str)
            or ":" not in start[0] or not isinstance(start[1], dict)):
        raise ChildSpecError(f"'start' must be ['package.module:function', {{args}}]; "
                             f"{ACCEPTED_FORMS}; got {spec!r}")
    child_type = spec.get("type", "worker")
    if child_type not in CHILD_TYPES:
        raise ChildSpecError(f"'type' must be one of {CHILD_TYPES}; {ACCEPTED_FORMS}; got {spec!r}")
    restart = spec.get("restart", "permanent")
    if restart not in RESTART_TYPES:
        raise ChildSpecError(f"'restart' must be one of {RESTART_TYPES}; {ACCEPTED_FORMS}; got {spec!r}")
    default_shutdown = INFINITY if child_type == "supervisor" else DEFAULT_WORKER_SHUTDOWN_MS
    shutdown = spec.get("shutdown", default_shutdown)
    valid_timeout = isinstance(shutdown, int) and not isinstance(shutdown, bool) and shutdown >= 0
    if shutdown not in (BRUTAL_KILL, INFINITY) and not valid_timeout:
        raise ChildSpecError(f"'shutdown' must be 'brutal_kill', 'infinity' or a non-negative "
                             f"integer of ms; {ACCEPTED_FORMS}; got {spec!r}")
    modules = spec.get("modules", [start[0].split(":")[0]])
    if not isinstance(modules, (list, tuple)) or not all(isinstance(m, str) for m in modules):
        raise ChildSpecError(f"'modules' must be a list of strings; {ACCEPTED_FORMS}; got {spec!r}")
    return ChildSpec(child_id, start[0], dict(start[1]), restart, shutdown, child_type, tuple(modules))
