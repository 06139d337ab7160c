"""Which ipc endpoints of a network are also served or reached over TCP: the run directory's ``tcp.json``.

A network spanning hosts keeps its processes host-blind: every process binds and connects the ipc
endpoints of its run directory by name, as on one host. The node agent writes ``tcp.json`` into the
run directory before its tree starts::

    {"host": "h1", "keys_dir": "/etc/neurox/diamond/keys",
     "exports": {"L0.n0.in": "tcp://10.0.0.1:7700", "root.ctl": "tcp://10.0.0.1:7600"},
     "routes": {"L1.n0.in": {"endpoint": "tcp://10.0.0.2:7800", "host": "h2"}}}

and :func:`~neurox.runtime.make_socket` follows it: binding an exported name also binds its TCP
endpoint, as a CURVE server (:mod:`._curve`); connecting to a routed name connects its TCP endpoint
instead, as a CURVE client that checks the server by its host's public key. Links within a host stay
ipc. Without the file nothing changes.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass

from ._curve import CurveKeys

TCP_FILE = "tcp.json"


@dataclass(frozen=True)
class Route:
    endpoint: str
    host: str


@dataclass(frozen=True)
class TcpPlan:
    exports: dict[str, str]
    routes: dict[str, Route]
    keys: CurveKeys


def write_tcp_plan(run_dir: str, host: str, keys_dir: str, exports: dict[str, str],
                   routes: dict[str, Route]) -> str:
    """Write ``tcp.json`` atomically (the keys are named by directory, never copied); its path."""
    path = os.path.join(run_dir, TCP_FILE)
    doc = {"host": host, "keys_dir": os.path.abspath(keys_dir), "exports": exports,
           "routes": {name: {"endpoint": r.endpoint, "host": r.host} for name, r in routes.items()}}
    with open(f"{path}.tmp", "w") as f:
        json.dump(doc, f, indent=1)
    os.replace(f"{path}.tmp", path)
    return path


_cache: dict[str, tuple[int, TcpPlan]] = {}


def tcp_plan(run_dir: str) -> TcpPlan | None:
    """The plan of ``run_dir`` (read once per change of the file), or None without one."""
    path = os.path.join(run_dir, TCP_FILE)
    try:
        stamp = os.stat(path).st_mtime_ns
    except FileNotFoundError:
        return None
    cached = _cache.get(path)
    if cached is None or cached[0] != stamp:
        with open(path) as f:
            doc = json.load(f)
        plan = TcpPlan(dict(doc["exports"]), {name: Route(r["endpoint"], r["host"]) for name, r in doc["routes"].items()},
                       CurveKeys.load(doc["keys_dir"], doc["host"]))
        cached = _cache[path] = (stamp, plan)
    return cached[1]
