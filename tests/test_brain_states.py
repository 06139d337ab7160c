"""Awake / meditative / maintenance: the state sets a neuron's LevelDB flush interval, by hand per neuron
or for a whole region through its modulator, and is visible in status and as events."""
import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest

from _brainutil import modulator_call, running_modulated_network, wait_until
from _netutil import learn, neuron_call, running_network
from neurox.cli._discovery import write_run_file
from neurox.ext import Dataset
from neurox.neuron import parse_topology
from neurox.neuron._states import STATES, check_state, flush_interval



def test_each_state_scales_the_configured_interval():
    assert [flush_interval(s, 2.0) for s in STATES] == [2.0, 20.0, 0.4]
    assert check_state("meditative") == "meditative"
    with pytest.raises(ValueError, match=r"state must be one of \['awake', 'meditative', 'maintenance'\]"):
        check_state("asleep")


def small_topology(neurotransmitters=None):
    doc = {"name": "cortex", "input_width": 2, "seed": 0,
           "defaults": {"units": 4, "flush_interval_s": 0.1, "learning_rate": 0.1},
           "layer": [{"name": "L0", "neurons": 1}, {"name": "L1", "neurons": 2},
                     {"name": "L2", "neurons": 1, "units": 2, "activation": "softmax"}],
           "output": {"decode": "label", "labels": ["0", "1"]}}
    if neurotransmitters is not None:
        doc["neurotransmitters"] = neurotransmitters
    return parse_topology(doc)


def samples(n: int = 600) -> Dataset:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 2)).astype(np.float32)
    return Dataset(x, (x[:, 0] > 0).astype(np.int64), ["0", "1"])


def flushes_while_learning(network, neuron: str) -> tuple[int, float]:
    """LevelDB flushes of ``neuron`` while it learns for about a second (it stays dirty throughout),
    and how many seconds that took (more on a busy machine)."""
    before = neuron_call(network, neuron, "status")["flushes"]
    progress = learn(network, samples(), window=1, rate=600)
    return neuron_call(network, neuron, "status")["flushes"] - before, progress.elapsed_s


@pytest.mark.timeout(60)
def test_set_state_by_hand_changes_how_often_the_neuron_writes_its_db(tmp_path, watch, no_stray_processes):
    with running_network(small_topology(), tmp_path) as network:
        events = watch(network.tree)
        status = neuron_call(network, "L1.n0", "status")
        assert (status["state"], status["state_source"], status["effective_flush_interval_s"]) == ("awake", "default", 0.1)
        reply = neuron_call(network, "L1.n0", "set_state", state="maintenance")
        assert reply == {"state": "maintenance", "state_source": "manual", "effective_flush_interval_s": pytest.approx(0.02)}
        (event,) = events.wait_for("neuron_state", id="L1.n0")
        assert event["state"] == "maintenance" and event["source"] == "manual"
        often, often_s = flushes_while_learning(network, "L1.n0")
        neuron_call(network, "L1.n0", "set_state", state="meditative")
        assert neuron_call(network, "L1.n0", "status")["effective_flush_interval_s"] == pytest.approx(1.0)
        rarely, rarely_s = flushes_while_learning(network, "L1.n0")
        # every 0.02 s against every 1 s (a loaded machine flushes later, never more often)
        assert often / often_s >= 10 and rarely <= rarely_s / 1.0 + 2, (often, often_s, rarely, rarely_s)
        assert often / often_s > 5 * rarely / rarely_s
        assert neuron_call(network, "L1.n1", "status")["state"] == "awake"  # only that neuron


@pytest.mark.timeout(30)
def test_a_bad_state_is_refused_and_harms_nothing(tmp_path, no_stray_processes):
    with running_network(small_topology(), tmp_path) as network:
        for bad in ("asleep", None, 3):
            with pytest.raises(Exception, match="bad_request"):
                neuron_call(network, "L1.n0", "set_state", state=bad)
        assert neuron_call(network, "L1.n0", "status")["state"] == "awake"
        assert neuron_call(network, "L1.n0", "ping") == "pong"


@pytest.mark.timeout(60)
def test_the_regions_modulator_sets_the_state_of_all_its_neurons(tmp_path, watch, no_stray_processes):
    topology = small_topology({"publish_interval_s": 0.05})
    neurons = topology.neurons()
    with running_modulated_network(topology, tmp_path) as network:
        events = watch(network.tree)
        assert modulator_call(network, "cortex", "set_state", state="maintenance") == {
            "region": "cortex", "state": "maintenance", "previous": "awake"}
        events.wait_for("region_state", region="cortex", state="maintenance")
        for neuron in neurons:
            events.wait_for("neuron_state", id=neuron, state="maintenance", source="region")
            status = neuron_call(network, neuron, "status")
            assert status["state_source"] == "region" and status["effective_flush_interval_s"] == pytest.approx(0.02)
        # by hand on one neuron: it keeps its state while the region's stays the same ...
        neuron_call(network, "L1.n1", "set_state", state="awake")
        wait_until(lambda: modulator_call(network, "cortex", "status"), lambda s: s["publishes"] >= 10)
        publishes = modulator_call(network, "cortex", "status")["publishes"]
        wait_until(lambda: modulator_call(network, "cortex", "status"), lambda s: s["publishes"] >= publishes + 3)
        assert neuron_call(network, "L1.n1", "status")["state"] == "awake"
        assert modulator_call(network, "cortex", "status")["state"] == "maintenance"
        # ... until the region changes again
        modulator_call(network, "cortex", "set_state", state="meditative")
        for neuron in neurons:
            events.wait_for("neuron_state", id=neuron, state="meditative", source="region")
        # a replacement takes its region's state from the next publication
        os.kill(neuron_call(network, "L1.n0", "status")["pid"], signal.SIGKILL)
        events.wait_for("child_restarted", id="L1.n0")
        status = wait_until(lambda: neuron_call(network, "L1.n0", "status"), lambda s: s["state"] == "meditative")
        assert status["state_source"] == "region" and status["effective_flush_interval_s"] == pytest.approx(1.0)


@pytest.mark.timeout(60)
def test_a_regions_state_survives_its_modulators_death_and_a_polite_restart(tmp_path, watch, no_stray_processes):
    topology = small_topology({"publish_interval_s": 0.05})
    with running_modulated_network(topology, tmp_path) as network:
        events = watch(network.tree)
        modulator_call(network, "cortex", "set_state", state="maintenance")
        events.wait_for("neuron_state", id="L2.n0", state="maintenance")
        os.kill(modulator_call(network, "cortex", "status")["pid"], signal.SIGKILL)
        events.wait_for("child_restarted", id="modulator.cortex")
        assert modulator_call(network, "cortex", "status")["state"] == "maintenance"
        assert not events.named("neuron_state", state="awake")
    with running_modulated_network(topology, tmp_path, resume=True) as network:
        assert modulator_call(network, "cortex", "status")["state"] == "maintenance"
        status = wait_until(lambda: neuron_call(network, "L1.n0", "status"), lambda s: s["state"] == "maintenance")
        assert status["state_source"] == "region"


@pytest.mark.timeout(60)
def test_the_state_probe_shows_and_sets_states_from_the_shell(tmp_path, no_stray_processes):
    with running_modulated_network(small_topology({"publish_interval_s": 0.05}), tmp_path) as network:
        write_run_file(network)

        def probe(*args):
            done = subprocess.run([sys.executable, "-m", "neurox.cli", "probe", "state", *args, "--data-dir",
                                   str(tmp_path)], capture_output=True, text=True, timeout=30)
            return done.returncode, json.loads(done.stdout) if done.returncode == 0 else done.stdout

        assert probe("root/modulator.cortex", "meditative") == (0, {"target": "root/modulator.cortex",
                                                                     "state": "meditative", "region": "cortex"})
        wait_until(lambda: neuron_call(network, "L2.n0", "status"), lambda s: s["state"] == "meditative")
        code, shown = probe("L1.n0", "maintenance")
        assert code == 0 and shown["state"] == "maintenance" and shown["state_source"] == "manual"
        assert shown["effective_flush_interval_s"] == pytest.approx(0.02)
        code, said = probe("L1.n0", "asleep")
        assert code == 1 and "bad_request" in said
        assert probe("L1.n1")[1]["state"] == "meditative"
