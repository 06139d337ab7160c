"""A region's neuromodulator lives as long as the region: it ends when the region's last layer is removed
live, and starts when a layer opens a region in a network that runs modulators (neurox/neuron/_reshaper.py)."""
import pytest

from _brainutil import modulator_call, running_modulated_network
from neurox.neuron import Reshaping, parse_topology
from neurox.brain._modulator import modulator_changes
from neurox.supervisor_tree import SupervisorClient, control_endpoint


def topology(*inner: dict):
    return parse_topology({"name": "cortex", "input_width": 2, "seed": 0, "neurotransmitters": {},
                           "defaults": {"units": 4, "flush_interval_s": 0.5},
                           "layer": [{"name": "L0", "neurons": 1}, {"name": "L1", "neurons": 2}, *inner,
                                     {"name": "L2", "neurons": 1, "units": 2}]})


def test_which_modulators_a_reshape_starts_and_stops():
    old, new = topology(), topology({"name": "A", "neurons": 1, "region": "assoc"})
    assert modulator_changes(old, new) == (["assoc"], [])
    assert modulator_changes(new, old) == ([], ["assoc"])
    assert modulator_changes(old, old) == ([], [])


def root_children(network) -> list[str]:
    client = SupervisorClient(control_endpoint(network.run_dir, "root"))
    try:
        return [child["id"] for child in client.which_children()]
    finally:
        client.client.close()


@pytest.mark.timeout(120)
def test_a_regions_modulator_ends_with_its_last_layer_and_starts_with_its_first(tmp_path, no_stray_processes):
    with running_modulated_network(topology(), tmp_path) as network:
        reshaping = Reshaping(network.reshaper)
        try:
            assert [c for c in root_children(network) if c.startswith("modulator.")] == ["modulator.cortex"]
            reshaping.add_layer("A0", after="L1", settings={"region": "assoc"})
            assert "modulator.assoc" in root_children(network)
            assert modulator_call(network, "assoc", "ping") == "pong"
            reshaping.add_layer("A1", after="A0", settings={"region": "assoc"})
            reshaping.remove_layer("A0")
            assert "modulator.assoc" in root_children(network), "the region still has a layer"
            reshaping.remove_layer("A1")
            children = root_children(network)
            assert "modulator.assoc" not in children and "assoc" not in children
            assert "modulator.cortex" in children and modulator_call(network, "cortex", "ping") == "pong"
        finally:
            reshaping.close()
