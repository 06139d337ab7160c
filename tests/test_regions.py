"""Brain-region templates: expansion (pure), wiring along the anatomical loop, mixing with plain layers,
and a live network whose regions are supervised by their own strategies and whose prefrontal
cortex holds context."""
import os
import signal
import time

import numpy as np
import pytest

from _netutil import learn, neuron_call, running_network
from neurox.ext import MessengerClient, digits
from neurox.neuron import TopologyError, parse_topology
from neurox.supervisor_tree import SupervisorClient


def brain(**extra) -> dict:
    """Input -> prefrontal cortex -> hippocampus -> basal ganglia -> output, with plain layers around."""
    return {"name": "brain", "input_width": 64, "defaults": {"units": 8},
            "layer": [{"name": "L0", "neurons": 1}, {"name": "pfc", "template": "prefrontal_cortex"},
                      {"name": "hc", "template": "hippocampus"}, {"name": "bg", "template": "basal_ganglia"},
                      {"name": "out", "neurons": 1, "units": 10, "activation": "softmax"}], **extra}


def layer_links(topology) -> set[tuple[str, str]]:
    layer = {n: l.name for l in topology.layers for n in l.neurons}
    return {(layer[a], layer[b]) for a, b in topology.links}


def test_templates_expand_into_their_regions_layers_wired_along_the_loop():
    topology = parse_topology(brain())
    assert [l.name for l in topology.layers] == ["L0", "pfc", "hc", "bg_striatum_go", "bg_striatum_nogo",
                                                 "bg_pallidum", "bg_thalamus", "out"]
    regions = {l.name: topology.region_of_layer(l) for l in topology.layers}
    assert regions["pfc"] == "pfc" and regions["bg_pallidum"] == "bg" and regions["L0"] == "brain"
    assert layer_links(topology) == {
        ("L0", "pfc"), ("pfc", "hc"),                                   # cortex <-> hippocampus
        ("hc", "bg_striatum_go"), ("hc", "bg_striatum_nogo"),           # -> striatum, both pathways
        ("bg_striatum_go", "bg_pallidum"), ("bg_striatum_nogo", "bg_pallidum"),  # -> pallidum
        ("bg_pallidum", "bg_thalamus"), ("bg_thalamus", "out")}         # -> thalamus -> what follows
    settings = {l.name: {**topology.defaults, **l.settings} for l in topology.layers}
    assert settings["pfc"]["context"] > 0 and settings["pfc"]["strategy"] == "one_for_all"
    assert settings["bg_striatum_nogo"]["transmitter"] == "gaba" and settings["bg_thalamus"]["transmitter"] == "glutamate"
    assert settings["hc"]["learning_rate"] == pytest.approx(4 * topology.defaults["learning_rate"])
    assert settings["hc"]["units"] == 8  # the network's defaults and the [[layer]] keys reach every layer
    assert topology.maintenance == {}  # the hippocampus brings the episodic store (default schedule)
    assert parse_topology({**brain(), "layer": brain()["layer"][:2] + brain()["layer"][4:]}).maintenance is None


def test_keys_beside_a_template_apply_to_all_its_layers():
    doc = brain()
    doc["layer"][3] = {"name": "bg", "template": "basal_ganglia", "neurons": 3, "units": 4}
    topology = parse_topology(doc)
    bg = [l for l in topology.layers if l.name.startswith("bg_")]
    assert [len(l.neurons) for l in bg] == [3, 3, 3, 3] and all(l.settings["units"] == 4 for l in bg)


@pytest.mark.parametrize("change, message", [
    (lambda d: d["layer"].__setitem__(1, {"name": "pfc", "template": "cerebellum"}), "unknown region template"),
    (lambda d: d.__setitem__("link", [{"from": "L0.n0", "to": "pfc.n0"}]), "cannot be added"),
    (lambda d: d["layer"].__setitem__(1, {"name": "pfc", "template": "prefrontal_cortex", "context": 1.5}),
     "context must be in"),
    (lambda d: d["layer"].__setitem__(1, {"name": "pfc", "strategy": "simple_one_for_one"}), "strategy must be"),
])
def test_bad_regions_are_refused_with_the_reason(change, message):
    doc = brain()
    change(doc)
    with pytest.raises(TopologyError, match=message):
        parse_topology(doc)


def answer(client: MessengerClient, vector) -> np.ndarray:
    reply = client.ask(vector=list(map(float, vector)), timeout=30)
    assert reply["ok"], reply
    return np.asarray(reply["output"])


@pytest.mark.timeout(120)
def test_a_brain_of_regions_runs_supervised_by_their_strategies_and_holds_context(tmp_path, no_stray_processes):
    topology = parse_topology(brain(maintenance={"awake_s": 3600}))
    data = digits()
    with running_network(topology, tmp_path) as network:
        strategies = {}
        for layer in topology.layers:
            client = SupervisorClient(network.control.replace("root.ctl", f"root.{layer.name}.ctl"))
            try:
                strategies[layer.name] = client.status()["strategy"]
            finally:
                client.close()
        assert strategies["pfc"] == "one_for_all" and strategies["bg_striatum_go"] == "one_for_one"
        progress = learn(network, data, epochs=3)
        # a deep, narrow brain on shuffled digits (its cortex mixes each sample with the last): it learns, slowly
        assert progress.lost == 0 and progress.accuracy > 0.18, progress  # chance is 0.1
        # one_for_all: a prefrontal neuron's death restarts its sibling too
        before = {n: neuron_call(network, n, "status")["pid"] for n in ("pfc.n0", "pfc.n1", "hc.n0")}
        os.kill(before["pfc.n0"], signal.SIGKILL)
        after = wait_for_new_pids(network, before, ("pfc.n0", "pfc.n1"))
        assert after["hc.n0"] == before["hc.n0"]
        # context: the same input answers differently after different inputs (the cortex remembers)
        client = MessengerClient(network.messenger_in)
        try:
            x, y = data.features[0], data.features[1]
            answer(client, x)
            after_x = answer(client, x)
            answer(client, y)
            after_y = answer(client, x)
        finally:
            client.close()
        assert not np.allclose(after_x, after_y), (after_x, after_y)


def wait_for_new_pids(network, before: dict, restarted: tuple, timeout: float = 20.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            now = {n: neuron_call(network, n, "status", timeout=1.0)["pid"] for n in before}
        except Exception:  # noqa: BLE001 (a neuron between death and replacement does not answer)
            now = None
        if now and all(now[n] != before[n] for n in restarted):
            return now
        time.sleep(0.1)
    raise AssertionError(f"{restarted} were not all restarted")
