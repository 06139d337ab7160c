"""Brain-region templates: expansion (pure), wiring along the anatomical loop, mixing with plain layers,
each region a supervisor subtree (root/REGION/LAYER/NEURON) with its own strategy, also when spread
over hosts and while reshaped, and a live network whose prefrontal cortex holds context."""
import os
import signal
import time
import tomllib

import numpy as np
import pytest
import tomli_w

from _netutil import learn, neuron_call, running_network
from neurox.ext import Client, digits
from neurox.neuron import Reshaping, TopologyError, layers_on, parse_topology
from neurox.neuron._tree_specs import layer_children
from neurox.runtime import ControlError
from neurox.supervisor_tree import SupervisorClient, control_endpoint


def brain(**extra) -> dict:
    """Input -> prefrontal cortex -> hippocampus -> basal ganglia -> output, with plain layers around."""
    return {"name": "brain", "input_width": 64, "defaults": {"units": 8},
            "layer": [{"name": "L0", "neurons": 1}, {"name": "pfc", "template": "prefrontal_cortex"},
                      {"name": "hc", "template": "hippocampus"}, {"name": "bg", "template": "basal_ganglia"},
                      {"name": "out", "neurons": 1, "units": 10, "activation": "softmax"}], **extra}


def with_association(**extra) -> dict:
    """The brain with a hand-made region before the output: two plain layers sharing ``region``."""
    doc = brain(**extra)
    doc["layer"][4:4] = [{"name": "assoc_a", "neurons": 2, "region": "assoc"},
                         {"name": "assoc_b", "neurons": 2, "region": "assoc"}]
    return doc


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
    (lambda d: d["layer"].insert(1, {"name": "x", "region": "L0"}), "name of a layer outside it"),
    (lambda d: d["layer"].__setitem__(2, {"name": "reshaper", "template": "hippocampus"}), "taken by a process"),
    (lambda d: d["layer"].__setitem__(2, {"name": "messenger_in", "template": "hippocampus"}), "taken by a process"),
    (lambda d: d.__setitem__("region", {"cerebellum": {"strategy": "one_for_all"}}), "names no region"),
    (lambda d: d.__setitem__("region", {"bg": {"strategy": "simple_one_for_one"}}), r"\[region.bg\]: strategy"),
    (lambda d: d.__setitem__("region", {"bg": {"colour": "grey"}}), r"region.bg: unknown key 'colour'; accepted: intensity, period_s, strategy"),
    (lambda d: d.__setitem__("region", {"bg": {"intensity": -1}}), "intensity must be"),
    (lambda d: d.__setitem__("region", {"bg": {"period_s": 0}}), "period_s must be"),
    (lambda d: d.__setitem__("extension", [{"name": "bg", "module": "jsonl", "path": "x"}]), "extension name 'bg'"),
])
def test_bad_regions_are_refused_with_the_reason(change, message):
    doc = brain()
    change(doc)
    with pytest.raises(TopologyError, match=message):
        parse_topology(doc)


def test_each_region_is_one_subtree_with_its_templates_strategy_or_the_topologys():
    topology = parse_topology(with_association(region={"assoc": {"strategy": "one_for_all", "intensity": 7},
                                                       "hc": {"period_s": 2.5}}))
    assert list(map(topology.supervisor_path, ["L0", "pfc", "bg_pallidum", "assoc_b", "out"])) == \
        ["root/L0", "root/pfc/pfc", "root/bg/bg_pallidum", "root/assoc/assoc_b", "root/out"]
    roots = layer_children(topology, [l.name for l in topology.layers], "/data")
    assert [(c.id, c.type) for c in roots] == [("L0", "supervisor"), ("pfc", "supervisor"), ("hc", "supervisor"),
                                               ("bg", "supervisor"), ("assoc", "supervisor"), ("out", "supervisor")]
    flags = {c.id: (c.args["strategy"], c.args["intensity"], c.args["period"], [g["id"] for g in c.args["children"]])
             for c in roots}
    assert flags["pfc"] == ("one_for_all", 50, 5.0, ["pfc"])  # the template's strategy, [supervision]'s intensity
    assert flags["hc"] == ("one_for_one", 50, 2.5, ["hc"])
    assert flags["bg"] == ("rest_for_one", 50, 5.0, ["bg_striatum_go", "bg_striatum_nogo", "bg_pallidum", "bg_thalamus"])
    assert flags["assoc"] == ("one_for_all", 7, 5.0, ["assoc_a", "assoc_b"])
    assert flags["L0"][3] == ["L0.n0"]  # a plain layer stays a layer supervisor under the root
    exported = parse_topology(tomllib.loads(tomli_w.dumps(topology.to_toml_dict())))
    assert exported.region_flags == topology.region_flags  # `neurox topology export` keeps them


def test_a_region_whose_layers_were_removed_keeps_its_flags_but_is_not_exported():
    topology = parse_topology(with_association(region={"assoc": {"strategy": "one_for_all"}}))
    gone = {n for l in topology.layers if l.name.startswith("assoc") for n in l.neurons}
    topology.layers = [l for l in topology.layers if not l.name.startswith("assoc")]
    topology.links = [link for link in topology.links if not set(link) & gone] + \
        [(a, "out.n0") for a in topology.layer_named("bg_thalamus").neurons]
    assert topology.validate().region_flags["assoc"] == {"strategy": "one_for_all"}  # for a layer added back
    assert "assoc" not in parse_topology(tomllib.loads(tomli_w.dumps(topology.to_toml_dict()))).region_flags


def test_a_host_runs_only_its_layers_of_a_region_under_its_own_region_supervisor():
    topology = parse_topology(with_association())
    topology.hosts = {"h1": "10.0.0.1", "h2": "10.0.0.2"}
    placed = {"assoc_a": "h2", "hc": "h2", "bg_striatum_nogo": "h2"}
    for layer in topology.layers:
        layer.settings["host"] = placed.get(layer.name, "h1")
    topology.validate()
    on = {host: {c.id: [g["id"] for g in c.args["children"]]
                 for c in layer_children(topology, layers_on(topology, host), "/data")} for host in ("h1", "h2")}
    assert list(on["h1"]) == ["L0", "pfc", "bg", "assoc", "out"] and list(on["h2"]) == ["hc", "bg", "assoc"]
    assert on["h1"]["bg"] == ["bg_striatum_go", "bg_pallidum", "bg_thalamus"] and on["h2"]["bg"] == ["bg_striatum_nogo"]
    assert on["h1"]["assoc"] == ["assoc_b"] and on["h2"]["assoc"] == ["assoc_a"]


def supervisors(network, path: str = "root") -> dict[str, tuple[str, list[str]]]:
    """Every supervisor of the running tree, asked over its control socket: path -> (strategy, child ids)."""
    client = SupervisorClient(control_endpoint(network.run_dir, path), timeout=10.0)
    try:
        status = client.status()
    finally:
        client.close()
    found = {path: (status["strategy"], [c["id"] for c in status["children"]])}
    for child in status["children"]:
        if child["type"] == "supervisor":
            found.update(supervisors(network, f"{path}/{child['id']}"))
    return found


def child_pid(network, path: str) -> int:
    parent, child = path.rsplit("/", 1)
    client = SupervisorClient(control_endpoint(network.run_dir, parent), timeout=10.0)
    try:
        return next(c["pid"] for c in client.which_children() if c["id"] == child)
    finally:
        client.close()


def answer(client: Client, vector) -> np.ndarray:
    reply = client.ask(vector=list(map(float, vector)), timeout=30)
    assert reply["ok"], reply
    return np.asarray(reply["output"])


@pytest.mark.timeout(120)
def test_a_brain_of_regions_runs_supervised_by_their_strategies_and_holds_context(tmp_path, no_stray_processes):
    # 16 units a neuron (the default): with 8 the narrow pallidum and thalamus make learning a gamble
    topology = parse_topology({**brain(maintenance={"awake_s": 3600}), "defaults": {"units": 16}})
    data = digits()
    with running_network(topology, tmp_path) as network:
        tree = supervisors(network)
        assert tree["root"][1][:5] == ["L0", "pfc", "hc", "bg", "out"]  # a region at its first layer's place
        assert tree["root/pfc"] == ("one_for_all", ["pfc"]) and tree["root/hc"] == ("one_for_one", ["hc"])
        assert tree["root/bg"] == ("rest_for_one", ["bg_striatum_go", "bg_striatum_nogo", "bg_pallidum", "bg_thalamus"])
        assert tree["root/pfc/pfc"] == ("one_for_all", ["pfc.n0", "pfc.n1"])  # the layers' own strategies
        assert tree["root/bg/bg_pallidum"] == ("one_for_one", ["bg_pallidum.n0"])
        assert tree["root/L0"] == ("one_for_one", ["L0.n0"]) and "root/L0/L0.n0" not in tree
        assert len([p for p in tree if p.count("/") == 2]) == 6  # the regions' six layers, no more
        progress = learn(network, data, epochs=3)
        # a deep, narrow brain on shuffled digits (its cortex mixes each sample with the last): it learns, slowly
        assert progress.lost == 0 and progress.accuracy > 0.18, progress  # chance is 0.1
        # one_for_all: a prefrontal neuron's death restarts the region's neurons; the others keep theirs
        before = {n: neuron_call(network, n, "status")["pid"] for n in ("pfc.n0", "pfc.n1", "hc.n0", "L0.n0", "out.n0")}
        os.kill(before["pfc.n0"], signal.SIGKILL)
        after = wait_for_new_pids(network, before, ("pfc.n0", "pfc.n1"))
        assert [after[n] for n in ("hc.n0", "L0.n0", "out.n0")] == [before[n] for n in ("hc.n0", "L0.n0", "out.n0")]
        # context: the same input answers differently after different inputs (the cortex remembers)
        client = Client(network.messenger_in)
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


@pytest.mark.timeout(120)
def test_a_region_restarts_its_layers_by_its_own_strategy(tmp_path, no_stray_processes):
    """A layer supervisor killed: one_for_all restarts the whole region, rest_for_one the layers after
    it; the region's supervisor is asked, not the root, and the plain layers keep their neurons."""
    topology = parse_topology(with_association(region={"assoc": {"strategy": "one_for_all"}}))
    with running_network(topology, tmp_path) as network:
        assert supervisors(network)["root/assoc"] == ("one_for_all", ["assoc_a", "assoc_b"])
        watched = ("assoc_a.n0", "assoc_b.n1", "bg_striatum_go.n0", "bg_striatum_nogo.n0", "bg_pallidum.n0",
                   "bg_thalamus.n0", "L0.n0", "out.n0")
        before = {n: neuron_call(network, n, "status")["pid"] for n in watched}
        os.kill(child_pid(network, "root/assoc/assoc_a"), signal.SIGKILL)
        after = wait_for_new_pids(network, before, ("assoc_a.n0", "assoc_b.n1"))
        assert all(after[n] == before[n] for n in watched if not n.startswith("assoc"))
        before = after
        os.kill(child_pid(network, "root/bg/bg_pallidum"), signal.SIGKILL)
        after = wait_for_new_pids(network, before, ("bg_pallidum.n0", "bg_thalamus.n0"))
        assert all(after[n] == before[n] for n in watched if n not in ("bg_pallidum.n0", "bg_thalamus.n0"))


@pytest.mark.timeout(120)
def test_reshaping_a_region_goes_through_its_supervisors(tmp_path, no_stray_processes):
    with running_network(parse_topology(brain()), tmp_path) as network:
        reshaping = Reshaping(network.reshaper)
        client = Client(network.messenger_in)
        try:
            added = reshaping.add_neuron("bg_striatum_go")["id"]
            assert supervisors(network)["root/bg/bg_striatum_go"][1] == ["bg_striatum_go.n0", "bg_striatum_go.n1", added]
            links = reshaping.topology()["links"]  # wired as its pathway is: from the hippocampus, to the pallidum
            assert {s for s, d in links if d == added} == {"hc.n0", "hc.n1"} and \
                {d for s, d in links if s == added} == {"bg_pallidum.n0"}
            reshaping.remove_neuron(added)
            assert supervisors(network)["root/bg/bg_striatum_go"][1] == ["bg_striatum_go.n0", "bg_striatum_go.n1"]
            reshaping.add_layer("bg_extra", after="bg_pallidum", neurons=2, settings={"region": "bg"})
            assert supervisors(network)["root/bg"] == (  # started by the running region supervisor, last
                "rest_for_one", ["bg_striatum_go", "bg_striatum_nogo", "bg_pallidum", "bg_thalamus", "bg_extra"])
            reshaping.add_layer("assoc0", after="hc", settings={"region": "assoc"})  # opens a region
            tree = supervisors(network)
            assert tree["root/assoc"] == ("one_for_one", ["assoc0"]) and tree["root/assoc/assoc0"][1] == ["assoc0.n0"]
            assert answer(client, digits().features[0]).shape == (10,)  # the new layers answer in the chain
            reshaping.remove_layer("bg_extra")
            reshaping.remove_layer("assoc0")  # the region's last layer: its supervisor goes with it
            tree = supervisors(network)
            assert "root/assoc" not in tree and "assoc" not in tree["root"][1]
            assert tree["root/bg"][1] == ["bg_striatum_go", "bg_striatum_nogo", "bg_pallidum", "bg_thalamus"]
            with pytest.raises(ControlError) as refused:
                reshaping.add_layer("x", after="hc", settings={"region": "L0"})
            assert refused.value.error == "bad_topology" and "outside it" in str(refused.value)
            assert answer(client, digits().features[0]).shape == (10,)
        finally:
            client.close()
            reshaping.close()
