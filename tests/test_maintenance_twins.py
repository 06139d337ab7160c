"""A twin restarted in the maintenance pool during its turn is set up again by the worker: it learns again
(its supervisor restarts it frozen, with the arguments it first had), and what it gives back is measured
from the weights it came back with when it is a fresh copy of the working neuron -- else the working
neuron's own learning since the twin's first copy would be given back to it a second time."""
import os
import signal

import numpy as np
import pytest
import zmq

from _brainutil import network_that_sleeps, wait_until
from neurox.brain._sleep import kept_its_learning, own_learning, restarted_twins, twin_baseline
from neurox.neuron import array_from_wire, array_to_wire, load_topology, neuron_control
from neurox.runtime import call
from neurox.supervisor_tree import control_endpoint

COPIED = {"seeding": {"method": "twin", "of": "ipc:///run/root.L3.L3.n1.ctl"}}
RESTORED = {"restored": {"flushes": 3, "after": "crash"}}


# -- pure ------------------------------------------------------------------------------------------
def test_a_twin_under_another_pid_is_restarted_one_not_running_is_not_yet():
    known = {"a": 11, "b": 12, "c": 13, "d": 14}
    children = [{"id": "a", "pid": 11}, {"id": "b", "pid": 22}, {"id": "c", "pid": "restarting"},
                {"id": "d", "pid": "undefined"}, {"id": "stranger", "pid": 99}]
    assert restarted_twins(known, children) == {"b": 22}
    assert restarted_twins(known, [{"id": "c", "pid": 23}]) == {"c": 23}  # running again: now it is
    assert restarted_twins({}, children) == {}


def test_a_fresh_copy_is_measured_from_what_it_came_back_with_a_restored_twin_from_its_first_copy():
    first, came_back = ("w0", "b0"), ("w1", "b1")
    assert kept_its_learning(RESTORED) and not kept_its_learning(COPIED)
    assert twin_baseline(first, came_back, COPIED) == came_back
    assert twin_baseline(first, came_back, RESTORED) == first
    # read after its weights at the end of a turn: the twin the worker knows, or a restart it has not set up
    assert own_learning(7, {"pid": 7, "started": COPIED})
    assert own_learning(7, {"pid": 8, "started": RESTORED})
    assert not own_learning(7, {"pid": 8, "started": COPIED})


def test_what_a_restarted_copy_gives_back_is_its_own_learning_only():
    """The arithmetic of the bug: the working neuron learns ``online`` after the pool's copy; its twin dies,
    comes back a copy of it as it is then, and learns ``dreamt``. Measured from the first copy, the working
    neuron would take ``online`` a second time."""
    start, online, dreamt = np.zeros(4), np.full(4, 0.5), np.full(4, 0.01)
    came_back = start + online
    twin_end = came_back + dreamt
    working_end = start + online + (twin_end - twin_baseline(start, came_back, COPIED))
    np.testing.assert_allclose(working_end, start + online + dreamt)


# -- live ------------------------------------------------------------------------------------------
def _bias(params: dict) -> np.ndarray:
    return array_from_wire(params["bias"])


@pytest.mark.timeout(60)
def test_a_twin_killed_in_its_turn_learns_again_and_gives_back_only_what_it_learnt(
        tmp_path, watch, no_stray_processes):
    """Two twins of the turn are SIGKILLed: L3.n1 (policy ``replace``) comes back a copy of its working
    neuron as it is then -- which the test moved by a known ``online`` change after the pool's copy, and
    which nothing else changes (no traffic) -- and L2.n0 (policy ``restore``, flushed) from its own DB."""
    topology = load_topology()  # the diamond 1-2-3-2-1, every layer's twins in one turn
    next(layer for layer in topology.layers if layer.name == "L2").settings["policy"] = "restore"
    with network_that_sleeps(topology, tmp_path) as network:
        events = watch(network.tree)
        paths = {"sleeper": "root/maintenance", "copied": "root/maintenance_pool/L3.n1",
                 "restored": "root/maintenance_pool/L2.n0", "pool": "root/maintenance_pool"}
        working = neuron_control(network.run_dir, topology, "L3.n1")

        def ask(name: str, op: str, **args):  # a socket of its own each time: a killed twin's never answers
            return call(zmq.Context.instance(), paths.get(name) and control_endpoint(network.run_dir, paths[name])
                        or working, op, 5.0, **args)

        start = _bias(ask("working", "get_params"))
        ask("sleeper", "sleep_now")
        events.wait_for("maintenance_turn", timeout=30)
        online = np.full_like(start, 5.0)
        weights = array_from_wire(ask("working", "get_params")["weights"])
        ask("working", "set_params", add=True, bias=array_to_wire(online), weights=array_to_wire(np.zeros_like(weights)))
        wait_until(lambda: ask("restored", "status"), lambda s: s["flushes"] >= 1 and not s["frozen"])
        pids = {c["id"]: c["pid"] for c in ask("pool", "which_children")}
        for twin in ("L3.n1", "L2.n0"):
            os.kill(pids[twin], signal.SIGKILL)
        # each comes back frozen (its start arguments) and the worker unfreezes it within a second or so
        for name in ("copied", "restored"):
            status = wait_until(lambda: ask(name, "status"), lambda s: s["pid"] != pids[s["id"]] and not s["frozen"])
            assert ("restored" in status["started"]) == (name == "restored"), status
        came_back = _bias(ask("copied", "get_params"))  # the working neuron as it was when the twin restarted
        assert float((came_back - start) @ online / (online @ online)) == pytest.approx(1.0, abs=0.05)
        reported = wait_until(lambda: events.named("maintenance_twins_restarted"),
                              lambda found: sum(len(e["twins"]) for e in found) >= 2)
        records = {r["id"]: r for e in reported for r in e["twins"]}
        assert {n: (r["restored"], r["frozen"]) for n, r in records.items()} == {
            "L3.n1": (False, False), "L2.n0": (True, False)}, records
        assert reported[-1]["restarted"] == 2 and records["L3.n1"]["pid"] != pids["L3.n1"], reported
        # it learns again: its updates count up from its restart (from 0: nothing of its DB restored)
        wait_until(lambda: ask("copied", "metrics"), lambda m: m["updates"] >= 20)
        status = ask("sleeper", "status")
        assert (status["twins_restarted"], status["twin_learning_lost"]) == (2, 1), status
        assert ask("sleeper", "wake") == {"phase": "awake"}
        returned = {r["id"]: r for r in events.wait_for("maintenance_returned")[0]["neurons"]}
        assert returned["L3.n1"]["moved"] > 0 and returned["L2.n0"]["moved"] > 0, returned
        # what L3.n1 took back is what its twin learnt since it came back: not ``online`` a second time
        given = _bias(ask("working", "get_params")) - (start + online)
        assert abs(float(given @ online / (online @ online))) < 0.05, given
        assert float(np.linalg.norm(given)) <= returned["L3.n1"]["moved"] + 1e-4
