"""Links: whatever dies -- a mid-level supervisor, the root, the program holding the tree, even by
SIGKILL -- takes everything under it along, and nothing is left holding a socket or a lock."""
import os
import signal
import subprocess
import sys

import psutil
import pytest
from workers import spec

from neurox.supervisor_tree import SupervisorClient, Tree, root_args, supervisor_spec

pytestmark = [pytest.mark.timeout(30), pytest.mark.usefixtures("no_stray_processes")]


def subtree(endpoint: str) -> dict[str, int]:
    """``{path: pid}`` of every process under the supervisor at ``endpoint``, walked through which_children."""
    found = {}
    client = SupervisorClient(endpoint)
    for row in client.which_children():
        found[row["id"]] = row["pid"]
        if row["type"] == "supervisor" and isinstance(row["pid"], int):
            found.update({f"{row['id']}/{k}": v for k, v in subtree(row["control"]).items()})
    client.close()
    return found


def gone(pids, timeout: float = 5.0) -> bool:
    procs = []
    for pid in pids:
        try:
            procs.append(psutil.Process(pid))
        except psutil.NoSuchProcess:
            continue
    _, alive = psutil.wait_procs(procs, timeout=timeout)
    return not [p for p in alive if p.status() != psutil.STATUS_ZOMBIE]


def test_sigkill_a_mid_level_supervisor_takes_its_subtree_and_its_parent_restarts_it(watch):
    middle = supervisor_spec("middle", [spec("x"), supervisor_spec("deeper", [spec("y"), spec("z")])])
    with Tree(root_args([middle, spec("sibling")])) as tree:
        events = watch(tree)
        before = subtree(tree.control)
        assert set(before) == {"middle", "middle/x", "middle/deeper", "middle/deeper/y", "middle/deeper/z", "sibling"}
        os.kill(before["middle"], signal.SIGKILL)
        assert gone([pid for path, pid in before.items() if path.startswith("middle/")]), "no orphan left"
        events.wait_for("child_restarted", id="middle", source="root")
        after = subtree(tree.control)
        assert set(after) == set(before) and after["sibling"] == before["sibling"]
        assert all(after[path] != before[path] for path in before if path.startswith("middle"))


def test_sigkill_the_root_takes_the_whole_tree():
    with Tree(root_args([spec("a"), supervisor_spec("mid", [spec("b")])])) as tree:
        everything = subtree(tree.control)
        os.kill(tree.root_pid, signal.SIGKILL)
        reason = tree.wait(10)
        assert reason is not None and (reason.kind, reason.signal) == ("crash", signal.SIGKILL)
        assert gone(everything.values())


HOLDER = """
import sys, time
from workers import spec
from neurox.supervisor_tree import Tree, root_args, supervisor_spec
tree = Tree(root_args([spec("a"), supervisor_spec("mid", [spec("b")])]), run_dir=sys.argv[1]).start()
print(tree.launcher_proc.pid, flush=True)
time.sleep(60)
"""


def test_sigkill_the_program_holding_the_tree_takes_every_process_of_it(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(tmp_path / "run")], stdout=subprocess.PIPE, text=True)
    try:
        launcher = psutil.Process(int(holder.stdout.readline()))
        processes = [launcher, *launcher.children(recursive=True)]
        assert {"nx:a", "nx:b", "nx:mid", "nx:root", "nx:events"} <= {p.name() for p in processes}
        holder.kill()
        _, alive = psutil.wait_procs(processes, timeout=5)
        assert not alive
    finally:
        holder.kill()
        holder.wait()
        holder.stdout.close()
