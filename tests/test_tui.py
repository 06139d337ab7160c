"""The TUI driven through App.run_test() and its Pilot against a real running network."""
import asyncio
import json
import subprocess
import sys
import time

import pytest
from textual.widgets import Input

from _netutil import running_network
from neurox.cli._discovery import write_run_file
from neurox.neuron import load_topology
from neurox.tui import Endpoints
from neurox.tui._observer import ProcessRow, layer_of
from neurox.tui.app import NeuroxApp
from neurox.tui.widgets import EventLog, SupervisionTree


async def until(pilot, predicate, timeout: float = 20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        await pilot.pause(0.1)
    raise AssertionError("the UI did not get there in time")


def tree_paths(app) -> set[str]:
    tree = app.screen.query_one(SupervisionTree)
    return {node.data for node in tree._tree_nodes.values() if node.data}


async def select(pilot, app, path: str) -> None:
    tree = app.screen.query_one(SupervisionTree)
    node = next(n for n in tree._tree_nodes.values() if n.data == path)
    tree.move_cursor(node)
    await pilot.pause()


@pytest.mark.timeout(120)
async def test_the_tui_shows_kills_and_grows_a_live_network(tmp_path):
    with running_network(load_topology(), tmp_path) as network:
        write_run_file(network)
        app = NeuroxApp(Endpoints.from_data_dir(str(tmp_path)), str(tmp_path))
        async with app.run_test(size=(160, 50)) as pilot:
            neurons = {f"root/{network.topology.layer_of(n).name}/{n}" for n in network.topology.neurons()}
            await until(pilot, lambda: neurons <= tree_paths(app))
            # kill a neuron from the UI: a confirmation, then its death and replacement show
            await select(pilot, app, "root/L2/L2.n1")
            await pilot.press("k")
            await until(pilot, lambda: app.screen.__class__.__name__ == "ConfirmScreen")
            await pilot.press("y")
            log = app.screen.query_one(EventLog)
            await until(pilot, lambda: {"child_exited", "child_restarted"} <= {
                e["event"] for e in log.kept if e.get("id") == "L2.n1"})
            # add a neuron from the UI: it appears in the tree and in `neurox probe status`
            await select(pilot, app, "root/L2/L2.n0")
            await pilot.press("a")
            await until(pilot, lambda: "root/L2/L2.n3" in tree_paths(app))
            # change a layer's settings and add a link, through prompts
            await pilot.press("s")
            await until(pilot, lambda: app.screen.__class__.__name__ == "PromptScreen")
            app.screen.query_one(Input).value = "learning_rate=0.02"
            await pilot.press("enter")
            await until(pilot, lambda: app.rows["root/L2/L2.n1"].status.get("learning_rate") == 0.02)
            await pilot.press("l")
            await until(pilot, lambda: app.screen.__class__.__name__ == "PromptScreen")
            app.screen.query_one(Input).value = "L1.n0 L3.n1"
            await pilot.press("enter")
            await until(pilot, lambda: "L1.n0" in app.rows["root/L3/L3.n1"].status.get("inputs", []))
        done = subprocess.run([sys.executable, "-m", "neurox.cli", "probe", "status", "--json", "--data-dir",
                               str(tmp_path)], capture_output=True, text=True, timeout=30)
        assert "root/L2/L2.n3" in {row["path"] for row in json.loads(done.stdout)}


@pytest.mark.timeout(180)
async def test_the_tui_stays_responsive_with_200_neurons(tmp_path):
    from neurox.bench._scale import sparse_topology
    with running_network(sparse_topology(200, 4, 3, 2), tmp_path) as network:
        write_run_file(network)
        app = NeuroxApp(Endpoints.from_data_dir(str(tmp_path)), str(tmp_path))
        async with app.run_test(size=(160, 50)) as pilot:
            await until(pilot, lambda: len([p for p in tree_paths(app) if "." in p]) >= 200, timeout=120)
            worst = 0.0
            for _ in range(10):  # key presses are handled promptly while snapshots keep coming
                started = time.monotonic()
                await pilot.press("down")
                worst = max(worst, time.monotonic() - started)
                await asyncio.sleep(0.3)
            assert worst < 5.0, f"a key press took {worst:.2f} s"


def test_the_observer_core_does_not_import_textual():
    done = subprocess.run([sys.executable, "-c", "import sys, neurox.tui._observer, neurox.tui; "
                           "sys.exit('textual' in sys.modules)"], timeout=60)
    assert done.returncode == 0


def test_a_rows_layer_is_found_under_the_root_and_under_a_region():
    """Add-neuron and settings act on the selected row's layer: a neuron's, or a layer supervisor's own;
    a region's supervisor, the root and its workers stand for no layer."""
    rows = [ProcessRow("root", 0, "supervisor", 1, {}), ProcessRow("root/L0", 1, "supervisor", 2, {}),
            ProcessRow("root/L0/L0.n0", 2, "worker", 3, {"layer": "L0"}),
            ProcessRow("root/pfc", 1, "supervisor", 4, {}), ProcessRow("root/pfc/pfc", 2, "supervisor", 5, {}),
            ProcessRow("root/pfc/pfc/pfc.n0", 3, "worker", "restarting", {}),
            ProcessRow("root/reshaper", 1, "worker", 6, {}), ProcessRow("root/modulator.pfc", 1, "worker", 7, {})]
    layers = {row.path: layer_of(row, rows) for row in rows}
    assert layers == {"root": None, "root/L0": "L0", "root/L0/L0.n0": "L0", "root/pfc": None, "root/pfc/pfc": "pfc",
                      "root/pfc/pfc/pfc.n0": "pfc", "root/reshaper": None, "root/modulator.pfc": None}
