"""The console of `neurox run` follows the live shape: reshapes are named as they happen, the progress line
counts the neurons there are now (neurox/cli/_console.py)."""
import json
import queue
import signal
import subprocess
import sys
import threading
import time

import pytest

from neurox.cli._console import LiveShape
from neurox.neuron import Reshaping, load_topology
from neurox.tui._words import describe_reshape, describe_self_reshape, learning_state


def test_the_live_shape_follows_reshapes_deaths_and_replacements():
    live = LiveShape.of(load_topology())
    assert (live.shape, live.alive, live.neurons) == ("1-2-3-2-1", 9, 9)
    assert live.apply("child_exited", {"id": "L2.n1"}) is None
    assert (live.alive, live.neurons) == (8, 9)
    live.apply("child_restarted", {"id": "L2.n1"})
    assert (live.alive, live.restarts) == (9, 1)
    line = live.apply("reshaped", {"op": "add_neuron", "request": {"layer": "L2"},
                                   "result": {"id": "L2.n3", "pid": 4, "layer": "L2"}})
    assert line == "reshaped: added neuron L2.n3 to layer L2 (now 1-2-4-2-1)"
    live.apply("child_exited", {"id": "L2.n3"})
    live.apply("reshaped", {"op": "remove_neuron", "request": {"id": "L2.n3"}, "result": {"id": "L2.n3", "layer": "L2"}})
    assert (live.shape, live.alive, live.neurons) == ("1-2-3-2-1", 9, 9), "a removed neuron is neither alive nor down"
    line = live.apply("reshaped", {"op": "add_layer", "request": {"name": "X", "after": "L1"},
                                   "result": {"layer": "X", "neurons": ["X.n0", "X.n1"]}})
    assert line == "reshaped: added layer X (2 neurons: X.n0, X.n1) (now 1-2-2-3-2-1)"
    live.apply("child_exited", {"id": "X"})  # a layer supervisor's death takes its neurons down with it
    assert live.alive == 9
    live.apply("child_restarted", {"id": "X"})
    assert live.alive == 11
    live.apply("reshaped", {"op": "remove_layer", "request": {"name": "X"}, "result": {"layer": "X"}})
    assert (live.shape, live.alive) == ("1-2-3-2-1", 9)
    assert live.apply("child_exited", {"id": "messenger_in"}) is None and live.alive == 9, "not a neuron"


def test_reshapes_and_states_read_as_plain_words():
    assert describe_reshape("add_link", {"from": "L1.n0", "to": "L3.n1"}) == "linked L1.n0 → L3.n1"
    assert describe_reshape("set_settings", {"neurons": ["L2.n0", "L2.n1"], "settings": {"learning_rate": 0.02}}) \
        == "set learning_rate=0.02 on 2 neurons (L2.n0, L2.n1)"
    assert describe_reshape("set_learning", {"learning": False}).startswith("learning paused")
    assert describe_reshape("remove_layer", {"layer": "L2"}) == "removed layer L2"
    assert "{" not in describe_reshape("add_neuron", {"id": "L2.n4", "pid": 1, "layer": "L2"})
    assert describe_self_reshape({"op": "add_link", "target": ["a", "b"], "reason": "weak", "ok": False,
                                  "error": "would_orphan"}) == "self-reshaper could not link a → b (weak): would_orphan"
    assert describe_reshape("widen_layer", {"layer": "L0", "units": 8, "was": 4, "neurons": ["L0.n0"]}) \
        == "widened layer L0 from 4 to 8 units a neuron (L0.n0), the answers unchanged"
    assert describe_self_reshape({"op": "widen_layer", "target": ["L0", "8"], "reason": "narrow", "ok": True}) \
        .startswith("self-reshaper: widen layer L0 to 8 units a neuron")
    assert [learning_state(s) for s in ({}, {"learning": False}, {"learning": False, "frozen": True})] == \
        ["learning", "paused", "frozen"]


def _lines(proc: subprocess.Popen) -> tuple["queue.Queue[str]", threading.Thread]:
    lines: queue.Queue[str] = queue.Queue()
    reader = threading.Thread(target=lambda: [lines.put(line.rstrip("\n")) for line in proc.stdout], daemon=True)
    reader.start()
    return lines, reader


def _until(lines: "queue.Queue[str]", predicate, seen: list[str], timeout: float = 60.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=max(0.01, deadline - time.monotonic()))
        except queue.Empty:
            break
        seen.append(line)
        if predicate(line):
            return line
    raise AssertionError("the console never printed it; it printed:\n" + "\n".join(seen[-30:]))


@pytest.mark.timeout(150)
def test_the_console_of_neurox_run_names_a_reshape_and_counts_the_new_neuron(tmp_path):
    with subprocess.Popen([sys.executable, "-m", "neurox.cli", "run", "--data-dir", str(tmp_path), "--duration", "120",
                           "--no-service"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as proc:
        lines, reader = _lines(proc)
        try:
            _follow_a_reshape(lines, tmp_path)
        finally:
            proc.send_signal(signal.SIGINT)
            proc.wait(60)
            reader.join(10)
    assert proc.returncode == 0


def _follow_a_reshape(lines: "queue.Queue[str]", tmp_path) -> None:
    seen: list[str] = []
    _until(lines, lambda line: "neurons 9/9 alive (1-2-3-2-1)" in line, seen)
    with open(tmp_path / "run.json") as f:
        reshaper = Reshaping(json.load(f)["reshaper"])
    try:
        added = reshaper.add_neuron("L2")
    finally:
        reshaper.close()
    _until(lines, lambda line: line == f"reshaped: added neuron {added['id']} to layer L2 (now 1-2-4-2-1)", seen)
    _until(lines, lambda line: "neurons 10/10 alive (1-2-4-2-1)" in line, seen)
