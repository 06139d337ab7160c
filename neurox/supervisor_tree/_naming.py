"""Where each process of a tree lives: its path in the tree and its control endpoint.

A path is the chain of child ids from the root, joined by ``/`` (``root/hidden2/n1``). Every
process's control socket is ``ipc://RUN_DIR/<path with / as .>.ctl``, so any process (or a probe)
can find any other from the run directory and the path alone.
"""
from __future__ import annotations

from ..runtime import ipc_endpoint


def control_endpoint(run_dir: str, path: str) -> str:
    return ipc_endpoint(run_dir, path.replace("/", ".") + ".ctl")


def child_env(parent_env: dict, child_id: str) -> dict:
    """The environment a supervisor hands to its child ``child_id``."""
    path = f"{parent_env['path']}/{child_id}"
    return {"name": f"nx:{child_id}", "path": path, "run_dir": parent_env["run_dir"],
            "launcher": parent_env["launcher"], "events": parent_env.get("events"),
            "control": control_endpoint(parent_env["run_dir"], path)}
