"""Names checked (issue 21): two paths of a tree that map to one control socket are refused, at load and at
live reshape, with both paths in the message."""
import tomllib

import pytest

from _netutil import running_network
from neurox.neuron import Reshaping, TopologyError, parse_topology
from neurox.neuron._topology import DIAMOND_TOML
from neurox.runtime import ControlError
from neurox.supervisor_tree import NameClash, check_names, name_clashes

pytestmark = pytest.mark.timeout(120)


def test_paths_that_differ_only_by_dot_and_slash_clash():
    assert name_clashes(["root", "root/a.b", "root/a", "root/a/b"]) == [("root/a.b", "root/a/b")]
    assert name_clashes(["root/a/b", "root/a.c", "root/a/b"]) == [], "the same path twice is one process"
    with pytest.raises(NameClash) as clash:
        check_names(["root/x", "root/a/b", "root/a.b"])
    assert "'root/a/b' and 'root/a.b'" in str(clash.value) and "root.a.b.ctl" in str(clash.value)
    check_names(["root", "root/L1", "root/L1/L1.n0"])


def diamond_with_extension(name: str) -> dict:
    with open(DIAMOND_TOML, "rb") as f:
        doc = tomllib.load(f)
    doc["extension"] = [{"name": name, "module": "jsonl", "path": "/dev/null"}]
    return doc


def test_a_topology_whose_names_clash_is_refused_at_load():
    parse_topology(diamond_with_extension("answers.jsonl"))  # a '.' in a name is fine on its own
    with pytest.raises(TopologyError) as clash:
        parse_topology(diamond_with_extension("L1.L1.n0"))  # root/L1.L1.n0 beside the neuron root/L1/L1.n0
    assert "'root/L1/L1.n0' and 'root/L1.L1.n0'" in str(clash.value)


def test_a_live_reshape_whose_names_would_clash_is_refused(tmp_path):
    topology = parse_topology(diamond_with_extension("L9.L9.n0"))
    with running_network(topology, tmp_path) as network:
        reshaping = Reshaping(network.reshaper)
        try:
            with pytest.raises(ControlError) as clash:
                reshaping.add_layer("L9", after="L1", neurons=1)  # its neuron would be root/L9/L9.n0
            assert clash.value.error == "bad_topology"
            assert "'root/L9/L9.n0' and 'root/L9.L9.n0'" in clash.value.detail
            assert [l["name"] for l in reshaping.topology()["layers"]] == ["L0", "L1", "L2", "L3", "L4"]
            assert reshaping.add_layer("L5", after="L1", neurons=1)["neurons"] == ["L5.n0"], "others still go"
        finally:
            reshaping.close()
