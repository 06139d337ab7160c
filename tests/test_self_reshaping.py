"""Self-reshaping and structural plasticity: the pure policy, and a live network that grows a neuron,
prunes links and keeps learning, with every change an event."""
import os

import numpy as np
import pytest
import zmq

from _netutil import learn
from _opsutil import wait_until
from neurox.ext import PRELOAD, digits, network_children
from neurox.brain import ShapingConfig
from neurox.neuron import Network, TopologyError, link_rms, load_topology, parse_topology
from neurox.bench._brain_shaping import learn_for, line_topology, shapes_over_time
from neurox.bench._plots import plot_brain
from neurox.brain._shaping import (NeuronView, decide_links, decide_neurons, decide_start, learnt_between, plateaued,
                                  recovered, round_due, round_mark, silent_streaks)
from neurox.runtime import ControlClient
from neurox.supervisor_tree import control_endpoint

LAYERS = [("L1", ["L1.n0", "L1.n1"]), ("L2", ["L2.n0"])]


def view(neuron, layer, activity=0.5, saturation=0.0, **links):
    return NeuronView(neuron, layer, activity, saturation, links)


# -- the pure policy ---------------------------------------------------------------------------
def test_a_plateau_is_a_small_relative_improvement_over_the_last_rounds():
    assert not plateaued([1.0, 0.9], rounds=2, tolerance=0.05)  # too few rounds to tell
    assert not plateaued([1.0, 0.9, 0.8], rounds=2, tolerance=0.05)
    assert plateaued([1.0, 0.99, 0.98], rounds=2, tolerance=0.05)
    assert plateaued([0.5, 0.6, 0.7], rounds=2, tolerance=0.05)  # getting worse is no improvement


def test_rounds_counted_in_samples_come_every_interval_samples_learnt_whatever_the_time():
    by_samples = ShapingConfig(interval_s=0.001, interval_samples=10_000)
    assert not round_due(by_samples, 9_999, elapsed_s=3600.0, end_reported=True)  # hours, but too few samples
    assert round_due(by_samples, 10_000, elapsed_s=0.0, end_reported=True)
    timed = ShapingConfig(interval_s=2.0)
    assert not round_due(timed, 10 ** 9, elapsed_s=1.9, end_reported=True)
    assert not round_due(timed, 0, elapsed_s=5.0, end_reported=False)  # the same loss again is no news
    assert round_due(timed, 0, elapsed_s=2.0, end_reported=True)
    # the next round counts from the last multiple of the interval reached, not from where the report fell
    assert round_mark(0, 13_000, 5000) == 10_000 and round_mark(10_000, 14_999, 5000) == 10_000
    assert round_mark(0, 13_000, None) == 13_000
    # what the end learnt between two reports, from its (samples, updates) counters
    assert learnt_between(None, (500, 60)) == 500  # the first report seen: counted from the start
    assert learnt_between(None, (500, 0)) == 0
    assert learnt_between((500, 60), (820, 100)) == 320
    assert learnt_between((500, 60), (820, 60)) == 0  # it only answered: nothing learnt
    assert learnt_between((5_000, 600), (300, 40)) == 300  # restarted: all it computed since


def test_the_shape_over_time_follows_the_neurons_added_and_removed_and_the_layers_widened():
    changes = [{"ok": True, "op": "add_neuron", "target": ["L3"], "samples": 5000, "at_s": 1.0},
               {"ok": False, "op": "add_neuron", "target": ["L2"], "samples": 10000, "at_s": 2.0},  # refused
               {"ok": True, "op": "add_link", "target": ["L1.n0", "L3.n2"], "samples": 10000, "at_s": 2.0},
               {"ok": True, "op": "remove_neuron", "target": ["L2.n1"], "samples": 15000, "at_s": 3.0},
               {"ok": True, "op": "widen_layer", "target": ["L0", "32"], "samples": 20000, "at_s": 4.0}]
    assert shapes_over_time([1, 2, 3, 2, 1], [16, 16, 16, 16, 10], ["L0", "L1", "L2", "L3", "L4"], changes) == [
        {"samples": 0, "at_s": 0.0, "shape": [1, 2, 3, 2, 1], "units": 138},
        {"samples": 5000, "at_s": 1.0, "shape": [1, 2, 3, 3, 1], "units": 154},
        {"samples": 15000, "at_s": 3.0, "shape": [1, 2, 2, 3, 1], "units": 138},
        {"samples": 20000, "at_s": 4.0, "shape": [1, 2, 2, 3, 1], "units": 154}]


def test_the_shapes_over_time_are_drawn_for_each_start_and_for_the_growth(tmp_path):
    """``bench brain --plot``: the units over time of each start (seconds) and of the growth (samples)."""
    layers, start, widths = ["L0", "L1", "L2", "L3", "L4"], [1, 1, 1, 1, 1], [16, 16, 16, 16, 10]
    grow = [{"ok": True, "op": "add_neuron", "target": ["L2"], "samples": 5000, "at_s": 1.5}]
    steps = shapes_over_time(start, widths, layers, grow)
    starts = {f"self_reshaping{name}_{key}": value for name in ("", "_small_start", "_large_start")
              for key, value in (("accuracy", 0.9), ("shape_over_time", steps))}
    result = {"self_reshaping": {**starts, "learning_s": 3.0, "fixed_diamond_units": 138, "fixed_diamond_accuracy": 0.93},
              "growth": {"self_reshaping_hard_accuracy": 0.8, "self_reshaping_hard_shape_over_time": steps,
                         "hard_samples": 10000, "fixed_diamond_hard_units": 138, "fixed_diamond_hard_accuracy": 0.6,
                         "hard_rows": 3000}}
    paths = plot_brain(result, str(tmp_path))
    assert [os.path.basename(p) for p in paths] == ["self_reshaping.png", "growth.png"]
    for path in paths:
        with open(path, "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n" and os.path.getsize(path) > 10_000


def test_a_saturated_layer_grows_on_a_plateau_only_and_up_to_its_limit():
    config = ShapingConfig(plateau_rounds=1, plateau_tolerance=0.05, saturation=0.3, max_neurons=3)
    views = [view("L1.n0", "L1", saturation=0.5), view("L1.n1", "L1", saturation=0.7),
             view("L2.n0", "L2", saturation=0.4)]
    (grow,) = decide_neurons(config, LAYERS, views, [1.0, 0.99], {})
    assert (grow.op, grow.target) == ("add_neuron", ("L1",)) and "saturates" in grow.reason
    assert decide_neurons(config, LAYERS, views, [1.0, 0.5], {}) == []  # still improving
    cool = [v if v.layer == "L2" else view(v.id, v.layer, saturation=0.1) for v in views]
    assert [a.target for a in decide_neurons(config, LAYERS, cool, [1.0, 0.99], {})] == [("L2",)]
    full = ShapingConfig(plateau_rounds=1, saturation=0.3, max_neurons=2)
    assert [a.target for a in decide_neurons(full, LAYERS, views, [1.0, 0.99], {})] == [("L2",)]


def test_a_layer_narrower_than_the_answer_widens_first_without_waiting_for_a_plateau():
    config = ShapingConfig(plateau_rounds=1, plateau_tolerance=0.05, saturation=0.3, max_neurons=3)
    views = [view("L1.n0", "L1", saturation=0.0), view("L1.n1", "L1", saturation=0.0),
             view("L2.n0", "L2", saturation=0.9)]
    widths = {"L1": 4, "L2": 4}  # L1: 8 units, L2: 4, the answer 10
    (grow,) = decide_neurons(config, LAYERS, views, [1.0, 0.5], {}, widths, needed=10)  # still improving
    assert (grow.op, grow.target) == ("add_neuron", ("L2",)) and "fewer than the 10" in grow.reason
    wide = {"L1": 8, "L2": 16}  # wide enough: back to the plateau rule
    assert decide_neurons(config, LAYERS, views, [1.0, 0.5], {}, wide, needed=10) == []
    assert [a.target for a in decide_neurons(config, LAYERS, views, [1.0, 0.99], {}, wide, needed=10)] == [("L2",)]
    capped = ShapingConfig(max_neurons=2)  # L1 is at its limit: L2 (narrower still) grows, never past max
    assert [a.target for a in decide_neurons(capped, LAYERS, views, [1.0], {}, {"L1": 2, "L2": 4}, 10)] == [("L2",)]


def test_the_start_node_doubles_its_units_while_it_is_narrower_than_the_answer():
    (widen,) = decide_start("L0", 4, 10)
    assert (widen.op, widen.target) == ("widen_layer", ("L0", "8")) and "fewer than the 10" in widen.reason
    assert decide_start("L0", 8, 10)[0].target == ("L0", "16")
    assert decide_start("L0", 10, 10) == [] and decide_start("L0", 16, 10) == []


def test_a_mastered_task_on_a_plateau_takes_the_least_listened_neuron_of_the_least_saturated_layer():
    config = ShapingConfig(plateau_rounds=1, plateau_tolerance=0.05, shrink_below=0.05)
    layers = [("L1", ["L1.n0", "L1.n1"]), ("L2", ["L2.n0", "L2.n1"])]
    views = [view("L1.n0", "L1", saturation=0.05), view("L1.n1", "L1", saturation=0.03),
             view("L2.n0", "L2", saturation=0.2, **{"L1.n0": 0.4, "L1.n1": 0.1}),
             view("L2.n1", "L2", saturation=0.2, **{"L1.n0": 0.3, "L1.n1": 0.2})]
    (shrink,) = decide_neurons(config, layers, views, [0.041, 0.040], {}, {"L1": 8, "L2": 8}, needed=4)
    assert (shrink.op, shrink.target) == ("remove_neuron", ("L1.n1",)) and "least saturated" in shrink.reason
    assert decide_neurons(config, layers, views, [0.08, 0.079], {}, {"L1": 8, "L2": 8}, 4) == []  # not mastered
    assert decide_neurons(config, layers, views, [0.06, 0.04], {}, {"L1": 8, "L2": 8}, 4) == []  # still improving
    # L1 would fall below the answer's 10 units: L2 (wide enough) gives one up instead
    assert [a.target for a in decide_neurons(config, layers, views, [0.04, 0.04], {}, {"L1": 8, "L2": 16}, 10)] \
        == [("L2.n0",)]
    assert decide_neurons(ShapingConfig(plateau_rounds=1, shrink_below=0.0), layers, views, [0.04, 0.04], {}) == []
    # after a shrink at loss 0.02, the next waits until the loss is back under it (give or take the tolerance)
    floor = recovered(0.02, config)
    assert floor == pytest.approx(0.021)
    assert decide_neurons(config, layers, views, [0.03, 0.03], {}, {"L1": 8, "L2": 8}, 4, floor) == []
    assert [a.target for a in decide_neurons(config, layers, views, [0.0205, 0.0205], {}, {"L1": 8, "L2": 8}, 4,
                                             floor)] == [("L1.n1",)]


def test_a_neuron_silent_for_long_enough_is_removed_but_never_a_layers_last():
    config = ShapingConfig(silence=0.01, silent_rounds=2)
    views = [view("L1.n0", "L1", activity=0.0), view("L1.n1", "L1", activity=0.0), view("L2.n0", "L2", activity=0.0)]
    once = silent_streaks({}, views, config.silence)
    assert once == {"L1.n0": 1, "L1.n1": 1, "L2.n0": 1}
    assert decide_neurons(config, LAYERS, views, [], once) == []
    twice = silent_streaks(once, views, config.silence)
    removed = decide_neurons(config, LAYERS, views, [], twice)
    assert [(a.op, a.target) for a in removed] == [("remove_neuron", ("L1.n0",))]  # L1 keeps one, L2 its only one
    woke = silent_streaks(twice, [view("L1.n0", "L1", activity=0.2)], config.silence)
    assert woke == {"L1.n0": 0}  # a neuron that speaks starts over; those not seen are forgotten


def test_weak_links_are_pruned_when_both_ends_can_spare_them_and_as_many_sprout():
    layers = [("L0", ["L0.n0", "L0.n1"]), ("L1", ["L1.n0", "L1.n1"])]
    links = [("L0.n0", "L1.n0"), ("L0.n1", "L1.n0"), ("L0.n1", "L1.n1")]
    views = [view("L1.n0", "L1", **{"L0.n0": 0.001, "L0.n1": 0.5}), view("L1.n1", "L1", **{"L0.n1": 0.002})]
    actions = decide_links(ShapingConfig(prune_below=0.01), layers, views, links, np.random.default_rng(0))
    # L1.n0 can spare its weak link from L0.n0 -- but L0.n0 has no other output: kept. L1.n1's only input is kept.
    assert actions == []
    links.append(("L0.n0", "L1.n1"))
    views[1] = view("L1.n1", "L1", **{"L0.n1": 0.002, "L0.n0": 0.3})
    actions = decide_links(ShapingConfig(prune_below=0.01), layers, views, links, np.random.default_rng(0))
    assert [(a.op, a.target) for a in actions] == [("remove_link", ("L0.n0", "L1.n0")),
                                                  ("remove_link", ("L0.n1", "L1.n1"))]
    assert decide_links(ShapingConfig(prune_below=0.01, structural=False), layers, views, links,
                        np.random.default_rng(0)) == []


def test_a_neuron_short_of_inputs_sprouts_one_from_the_previous_layer():
    layers = [("L0", ["L0.n0", "L0.n1", "L0.n2"]), ("L1", ["L1.n0"])]
    links = [("L0.n0", "L1.n0")]
    views = [view("L1.n0", "L1", **{"L0.n0": 0.5})]
    (sprout,) = decide_links(ShapingConfig(min_inputs=2), layers, views, links, np.random.default_rng(1))
    assert sprout.op == "add_link" and sprout.target[1] == "L1.n0" and sprout.target[0] in ("L0.n1", "L0.n2")


def test_link_strength_is_the_rms_of_each_links_rows_and_bad_settings_are_refused():
    weights = np.array([[3.0, 4.0], [0.0, 0.0], [1.0, 1.0]], dtype=np.float32)
    assert link_rms(weights, [("a", 1), ("b", 2)]) == pytest.approx({"a": np.sqrt(12.5), "b": np.sqrt(0.5)})
    with pytest.raises(ValueError, match="unknown key .interval.; accepted: interval_s, "):
        ShapingConfig.from_table({"interval": 3})
    with pytest.raises(ValueError, match=r"^self_reshaping.interval_s: accepted float > 0.0, got 0$"):
        ShapingConfig.from_table({"interval_s": 0})
    with pytest.raises(ValueError, match=r"^self_reshaping.interval_samples has the wrong type: accepted int, got 2.5"):
        ShapingConfig.from_table({"interval_samples": 2.5})
    with pytest.raises(TopologyError, match=r"^self_reshaping.plateau_rounds: accepted int >= 1, got 0$"):
        small_topology({"plateau_rounds": 0})
    with pytest.raises(TopologyError, match=r"^self_reshaping.structural has the wrong type: accepted bool, got 'no' \(str\)$"):
        small_topology({"structural": "no"})  # once taken as true


# -- a live network ----------------------------------------------------------------------------
def small_topology(shaping: dict, **more):
    return parse_topology({
        "name": "shaping", "input_width": 64, "defaults": {"units": 8, "learning_rate": 0.05},
        "layer": [{"name": "L0", "neurons": 1}, {"name": "L1", "neurons": 2}, {"name": "L2", "neurons": 2},
                  {"name": "L3", "neurons": 1, "units": 10, "activation": "softmax"}],
        "self_reshaping": shaping, **more})


@pytest.mark.timeout(120)
def test_a_live_network_prunes_grows_and_keeps_learning_reading_its_reports_from_the_bus(
        tmp_path, watch, no_stray_processes):
    # Rounds only on request (interval of an hour); every link counts as weak, every layer as saturated,
    # and any loss above zero as a plateau: the policy's decisions are certain, the network real.
    topology = small_topology({"interval_s": 3600, "plateau_rounds": 1, "plateau_tolerance": 1.0,
                               "saturation": -1.0, "max_neurons": 3, "prune_below": 1e9, "silence": -1.0,
                               "shrink_below": 0.0},
                              maintenance={"awake_s": 3600, "maintenance_s": 3600, "capacity": 50})
    data = digits()
    network = Network(topology, str(tmp_path), extensions=network_children(topology, str(tmp_path)), preload=PRELOAD)
    with network:
        events = watch(network.tree)
        shaper = ControlClient(zmq.Context.instance(), control_endpoint(network.run_dir, "root/self_reshaper"), 60)
        try:
            learn(network, data, epochs=1, batch=8)
            reported_anew(events, network, shaper)
            pruned = shaper.call("round")
            removed = [tuple(c["target"]) for c in pruned if c["op"] == "remove_link"]
            assert all(c["ok"] for c in pruned) and len(removed) == 2, pruned
            # the start node's 8 units are fewer than the answer's 10: doubled in the same round
            assert [c["target"] for c in pruned if c["op"] == "widen_layer"] == [["L0", "16"]], pruned
            # the weaker of each L2 neuron's two inputs went, as far as every L1 neuron keeps an output
            assert {src for src, _ in removed} == {"L1.n0", "L1.n1"} and {dst for _, dst in removed} == {"L2.n0", "L2.n1"}
            learn(network, data, epochs=1, batch=8)
            reported_anew(events, network, shaper)
            grown = [c for c in shaper.call("round") if c["op"] == "add_neuron"]
            assert len(grown) == 1 and grown[0]["ok"], grown
            events.wait_for("self_reshaped", op="add_neuron")
            shape = [len(layer["neurons"]) for layer in network_shape(network)]
            assert shape in ([1, 3, 2, 1], [1, 2, 3, 1]), shape
            progress = learn(network, data, epochs=1, batch=8)
            assert progress.lost == 0 and progress.rolling_accuracy > 0.5, progress  # chance is 0.1
            status = shaper.call("status")
            # every figure came from the neurons' reports on the bus: not one call to a neuron
            assert status["rounds"] == 2 and status["calls"] == 0 and status["reports"] >= 6, status
            # while the network sleeps (its twins learning in the pool) nothing is reshaped
            sleeper = ControlClient(zmq.Context.instance(), control_endpoint(network.run_dir, "root/maintenance"), 30)
            try:
                sleeper.call("sleep_now")
                events.wait_for("maintenance_started", timeout=30)  # the bus reaches the self-reshaper a moment later
                wait_until(lambda: shaper.call("status")["asleep"], 10, "the self-reshaper heard the network fall asleep")
                assert shaper.call("round") == [] and shaper.call("status")["asleep_rounds"] == 1
                sleeper.call("wake")
                events.wait_for("maintenance_ended", timeout=30)
                wait_until(lambda: shaper.call("status")["asleep"] is False, 10, "the self-reshaper heard it wake")
            finally:
                sleeper.close()
        finally:
            shaper.close()


@pytest.mark.timeout(60)
def test_a_live_self_reshaper_counts_its_rounds_in_the_samples_its_end_learnt(tmp_path, watch,
                                                                               no_stray_processes):
    # Timed rounds would come with every report of the end (interval_s 0.05, a report a second); counted in
    # samples, one per 4,000 learnt (at most one a report: fewer if one report brings 8,000). The policy
    # changes nothing (no plateau, no saturation, no silence, no weak link).
    topology = small_topology({"interval_s": 0.05, "interval_samples": 4000, "plateau_tolerance": -1.0,
                               "saturation": 2.0, "silence": -1.0, "structural": False, "shrink_below": 0.0},
                              defaults={"units": 16, "learning_rate": 0.05})
    network = Network(topology, str(tmp_path), extensions=network_children(topology, str(tmp_path)), preload=PRELOAD)
    with network:
        events = watch(network.tree)
        shaper = ControlClient(zmq.Context.instance(), control_endpoint(network.run_dir, "root/self_reshaper"), 30)
        try:
            learn(network, digits(), epochs=5, batch=8)  # 8,985 samples
            reported_anew(events, network, shaper)
            reported_anew(events, network, shaper)  # and the end's reports after the last sample: no news
            shaper.call("status")  # a round due after the last report read comes before the next request
            status = shaper.call("status")
            assert 1 <= status["rounds"] <= status["learnt"] // 4000 == 2 and status["changes"] == [], status
        finally:
            shaper.close()


def reported_anew(events, network, shaper):
    """Wait until every neuron has published a report since now, and the self-reshaper has read each
    (it decides from them; its subscription and the test's receive the same reports, not at the same time)."""
    neurons = [n for layer in network_shape(network) for n in layer["neurons"]]
    seen = {n: len(events.named("neuron_report", id=n)) + 1 for n in neurons}
    for neuron in neurons:
        events.wait_for("neuron_report", count=seen[neuron], id=neuron)
    wait_until(lambda: all(shaper.call("status")["reports_by_neuron"].get(n, 0) >= seen[n] for n in neurons),
               10, "the self-reshaper to read the same reports")


def network_shape(network):
    client = ControlClient(zmq.Context.instance(), network.reshaper)
    try:
        return client.call("topology")["layers"]
    finally:
        client.close()


@pytest.mark.timeout(120)
def test_self_shaped_lines_learn_within_reach_of_the_fixed_diamond(no_stray_processes):
    """After the same 6,000 samples of the same stream (seeded networks): the 1-1-1-1-1 line of 16 units
    a neuron, reshaping itself, is within 0.05 of the fixed diamond; the too-small line (4 units a
    neuron) widens its inner layers towards the 10 classes from the first rounds (3 s of learning, a
    round every 0.5 s: a budget in samples can pass before the first round, when the stream is fast or a
    report late), without waiting for a plateau."""
    diamond, *_ = learn_for(load_topology(), 60.0, samples=6000)
    line, *_ = learn_for(line_topology(), 60.0, samples=6000)
    assert line >= diamond - 0.05 and diamond > 0.9, (line, diamond)
    _, final, changes, _ = learn_for(line_topology(units=4, shaping={"interval_s": 0.5}), 3.0)
    shape = [len(layer.neurons) for layer in final.layers]
    widened = [c for c in changes if c["ok"] and c["op"] == "add_neuron" and "fewer than the 10" in c["reason"]]
    net = sum(1 if c["op"] == "add_neuron" else -1 for c in changes if c["ok"] and c["op"].endswith("_neuron"))
    assert len(widened) >= 2 and shape[0] == shape[-1] == 1 and sum(shape[1:-1]) == 3 + net, (shape, changes)
    # the start node, which no neuron can be added to, doubled its 4 units past the 10 classes: 16
    assert [c["target"] for c in changes if c["op"] == "widen_layer" and c["ok"]] == [["L0", "8"], ["L0", "16"]]
    assert final.width_of("L0.n0") == 16
