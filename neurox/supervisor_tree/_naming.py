"""Where each process of a tree lives: its path in the tree and its control endpoint.

A path is the chain of child ids from the root, joined by ``/`` (``root/hidden2/n1``). Every
process's control socket is ``ipc://RUN_DIR/<path with / as .>.ctl``, so any process (or a probe)
can find any other from the run directory and the path alone. Two paths that differ only by ``.`` and
``/`` (``root/a.b``, ``root/a/b``) would share one socket, and the wrong process would answer:
:func:`check_names` refuses them, naming both.
"""
from __future__ import annotations

from collections.abc import Iterable

from ..runtime import ipc_endpoint


class NameClash(ValueError):
    """Two paths of one tree that map to the same socket name."""


def socket_name(path: str) -> str:
    """The name a path's control socket has in the run directory (without ``.ctl``)."""
    return path.replace("/", ".")


def control_endpoint(run_dir: str, path: str) -> str:
    return ipc_endpoint(run_dir, socket_name(path) + ".ctl")


def name_clashes(paths: Iterable[str]) -> list[tuple[str, str]]:
    """Every pair of different paths with the same socket name: (the path seen first, the later one)."""
    first: dict[str, str] = {}
    clashes = []
    for path in paths:
        seen = first.setdefault(socket_name(path), path)
        if seen != path:
            clashes.append((seen, path))
    return clashes


def check_names(paths: Iterable[str]) -> None:
    """NameClash naming both paths of the first clash, if two paths would share a control socket."""
    clashes = name_clashes(paths)
    if clashes:
        a, b = clashes[0]
        raise NameClash(f"{a!r} and {b!r} would share the control socket {socket_name(a)}.ctl "
                        f"('/' and '.' both become '.'); rename one of them")


def child_env(parent_env: dict, child_id: str) -> dict:
    """The environment a supervisor hands to its child ``child_id``."""
    path = f"{parent_env['path']}/{child_id}"
    return {"name": f"nx:{child_id}", "path": path, "run_dir": parent_env["run_dir"],
            "launcher": parent_env["launcher"], "events": parent_env.get("events"),
            "control": control_endpoint(parent_env["run_dir"], path)}
