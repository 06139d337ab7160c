"""How a feature plugs in (neurox/neuron/_parts.py, neurox/parts.py): start order derived from what each
part requires, the one list of parts assembling a network's root children, and the names they reserve."""
import pytest

from neurox.brain import CHEMISTRY, SLEEP
from neurox.ext import EXTENSIONS, MESSENGERS, network_children
from neurox.neuron import Part, TopologyError, assemble, child_id, parse_topology, root_ids, start_order
from neurox.parts import PARTS


def names(parts):
    return [part.name for part in parts]


@pytest.mark.timeout(10)
def test_a_part_starts_after_what_it_requires_and_otherwise_keeps_its_place():
    a, b, c = Part("a", requires=("c",)), Part("b"), Part("c", requires=("b",))
    assert names(start_order([a, b, c])) == ["b", "c", "a"]
    assert names(start_order([b, c, a])) == ["b", "c", "a"]
    assert names(start_order([Part("x"), Part("y")])) == ["x", "y"]


@pytest.mark.timeout(10)
def test_a_missing_requirement_or_a_circle_is_refused_by_name():
    with pytest.raises(ValueError, match="'a' requires \\['nope'\\]"):
        start_order([Part("a", requires=("nope",))])
    with pytest.raises(ValueError, match="circle"):
        start_order([Part("a", requires=("b",)), Part("b", requires=("a",))])


@pytest.mark.timeout(10)
def test_the_one_list_starts_messengers_first_and_sleep_after_them():
    order = names(start_order(PARTS))
    assert order.index("messengers") < order.index("extensions")
    assert order.index("messengers") < order.index("sleep")
    assert {MESSENGERS, EXTENSIONS, CHEMISTRY, SLEEP} <= set(PARTS)


@pytest.mark.timeout(10)
def test_network_children_are_assembled_from_the_parts_in_start_order(tmp_path):
    topology = parse_topology({"name": "cortex", "input_width": 2, "neurotransmitters": {},
                               "self_reshaping": {}, "maintenance": {},
                               "layer": [{"name": "L0", "neurons": 1}, {"name": "L1", "neurons": 1, "units": 2}]})
    ids = [child_id(spec) for spec in network_children(topology, str(tmp_path))]
    assert ids == ["messenger_out", "messenger_in", "modulator.cortex", "self_reshaper", "maintenance_pool",
                   "maintenance"]
    own = [Part("late", requires=("early",), children=lambda t, d, h, o: [{"id": "late"}]),
           Part("early", children=lambda t, d, h, o: [{"id": f"early.{o['tag']}"}])]
    assert [s["id"] for s in assemble(topology, str(tmp_path), parts=own, tag="x")] == ["early.x", "late"]


@pytest.mark.timeout(10)
def test_the_names_parts_reserve_cannot_be_taken_and_unowned_tables_are_refused():
    assert {"reshaper", "messenger_in", "maintenance", "maintenance_pool", "self_reshaper", "service"} <= set(root_ids())
    layers = [{"name": "L0", "neurons": 1, "region": "maintenance"}, {"name": "L1", "neurons": 1}]
    with pytest.raises(TopologyError, match="taken by a process under the root"):
        parse_topology({"name": "n", "input_width": 2, "layer": layers})
    with pytest.raises(TopologyError, match="unknown top-level keys \\['sleepiness'\\]"):
        parse_topology({"name": "n", "input_width": 2, "sleepiness": {}, "layer": [{"neurons": 1}]})
    with pytest.raises(TopologyError, match="extension name 'messenger_in'"):
        parse_topology({"name": "n", "input_width": 2, "layer": [{"neurons": 1}],
                        "extension": [{"name": "messenger_in", "module": "jsonl"}]})


@pytest.mark.timeout(10)
def test_a_new_part_s_table_is_checked_kept_and_exported(tmp_path, monkeypatch):
    import neurox.neuron._parts as parts_module

    def check(topology):
        if not 0 < topology.sections.get("clock", {}).get("day_s", 1):
            raise ValueError("[clock] day_s must be positive")
    clock = Part("clock", sections=("clock",), check=check,
                 children=lambda t, d, h, o: [{"id": "clock"}] if "clock" in t.sections else [])
    monkeypatch.setattr(parts_module, "_registered", (*PARTS, clock))
    doc = {"name": "n", "input_width": 2, "layer": [{"neurons": 1}], "clock": {"day_s": 60}}
    topology = parse_topology(doc)
    assert topology.sections == {"clock": {"day_s": 60}}
    assert topology.to_toml_dict()["clock"] == {"day_s": 60}
    path = str(tmp_path / "t.json")
    topology.save(path)
    assert type(topology).load(path).sections == {"clock": {"day_s": 60}}
    assert [child_id(s) for s in network_children(topology, str(tmp_path))][-1] == "clock"
    with pytest.raises(TopologyError, match="day_s must be positive"):
        parse_topology({**doc, "clock": {"day_s": 0}})
