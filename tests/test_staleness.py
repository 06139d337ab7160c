"""Staleness rules (pure) and the one-process reference of the pipelined network."""
import numpy as np
import pytest

from neurox.bench._learn import layer_params, layer_sources, reference_mlp, sample_order
from neurox.bench._learn_reference import ReferencePipeline, fresh_params
from neurox.ext import Feed, ScaleConfig, digits
from neurox.neuron import DEFAULT_RAMP, load_topology, parse_topology, TopologyError
from neurox.neuron._staleness import DelayScaled, Stashed, check_settings, delay_step, make_rule

RNG = np.random.default_rng(7)


def bundle(packets: int, fan_in: int = 6, units: int = 4):
    x = RNG.random((packets, fan_in), dtype=np.float32)
    dz = RNG.standard_normal((packets, units)).astype(np.float32)
    w = RNG.standard_normal((fan_in, units)).astype(np.float32)
    return x, dz, w, np.zeros(units, dtype=np.float32)


@pytest.mark.timeout(10)
def test_delay_rule_steps_by_the_middle_delay_of_the_bundle_and_counts_packets():
    rule = DelayScaled()
    x, dz, w, b = bundle(4)
    w0 = w.copy()
    stamps = [rule.stamp(w, b)] * 4
    rule.applied = 6  # six packets learnt from since these forward passes
    dx, w1, b1 = rule.learn(x, dz, stamps, [1] * 4, w, b, 0.05)
    assert np.allclose(dx, dz @ w0.T, atol=1e-6), "dx uses the weights before the update"
    step = 0.05 / np.sqrt(1 + 6 + 1.5)
    assert delay_step(0.05, 6, 4) == pytest.approx(step)
    assert np.allclose(w1, w0 - step * x.T @ dz, atol=1e-6) and np.allclose(b1, -step * dz.sum(0), atol=1e-6)
    assert rule.applied == 10
    _, w2, _ = rule.learn(x, dz, [10] * 4, [1] * 4, w1.copy(), b1.copy(), 0.0)
    assert np.array_equal(w2, w1) and rule.applied == 10, "frozen (rate 0): nothing applied, nothing counted"


@pytest.mark.timeout(10)
def test_one_packet_at_a_time_the_delay_rule_is_plain_sgd():
    rule = DelayScaled()
    x, dz, w, b = bundle(1)
    expected = w - 0.05 * x.T @ dz
    _, w1, _ = rule.learn(x, dz, [rule.stamp(w, b)], [1], w.copy(), b, 0.05)
    assert np.allclose(w1, expected, atol=1e-6)


@pytest.mark.timeout(10)
def test_stash_rule_sums_a_group_then_steps_once_and_uses_each_packets_own_weights():
    rule = Stashed(group=5)
    x, dz, w, b = bundle(3)
    old = w
    dx, w1, b1 = rule.learn(x, dz, [rule.stamp(w, b)] * 3, [1] * 3, w, b, 0.1)
    assert w1 is w and rule.count == 3, "not a whole group yet: the weights stay"
    assert np.allclose(dx, dz @ w.T, atol=1e-6)
    x2, dz2, _, _ = bundle(2)
    newer = w + 1.0  # a later version some packets were computed with
    stamps = [old, newer]
    dx2, w2, b2 = rule.learn(x2, dz2, stamps, [1, 1], newer, b, 0.1)
    assert np.allclose(dx2[0], dz2[0] @ old.T, atol=1e-6) and np.allclose(dx2[1], dz2[1] @ newer.T, atol=1e-6)
    summed = x.T @ dz + x2.T @ dz2
    assert np.allclose(w2, newer - 0.1 / np.sqrt(5) * summed, atol=1e-5)
    assert w2 is not newer and rule.count == 0, "an update makes a new version; the stashed ones stay as they were"
    assert np.allclose(b2, b - 0.1 / np.sqrt(5) * (dz.sum(0) + dz2.sum(0)), atol=1e-6)


@pytest.mark.timeout(10)
def test_settings_are_checked_with_errors_that_say_what_is_accepted():
    assert isinstance(make_rule("delay"), DelayScaled) and make_rule("stash", 4).group == 4
    with pytest.raises(ValueError, match="delay, stash; got 'fast'"):
        check_settings({"staleness": "fast"})
    with pytest.raises(ValueError, match="positive integer; got 0"):
        check_settings({"staleness_group": 0})
    with pytest.raises(TopologyError, match="staleness must be one of"):
        parse_topology({"input_width": 4, "defaults": {"staleness": "x"}, "layer": [{"name": "a"}]})


def one_at_a_time(topology, packets: int) -> dict:
    """Journals of a network that finishes each packet, forward and backward, before the next starts."""
    journals = {n: [] for n in topology.neurons()}
    for packet in range(packets):
        for n in topology.neurons():
            journals[n].append(["F", [packet]])
        for layer in reversed(topology.layers[:-1]):
            for n in layer.neurons:
                journals[n].append(["B", [packet]])
    return journals


@pytest.mark.timeout(120)
@pytest.mark.parametrize("rule", ["delay", "stash"])
def test_reference_pipeline_one_packet_at_a_time_is_the_one_process_mlp(rule):
    """Replayed one packet at a time, either rule is plain SGD (same first weights, same samples)."""
    topology, data = load_topology(), digits()
    params = fresh_params(topology)
    order = sample_order(300, 1, 1, seed=3)
    accuracy, _ = reference_mlp(data.features, data.targets, layer_params(topology, params), layer_sources(topology), 0.05,
                                order, ScaleConfig("none"))  # the replay below is fed the rows as they are
    pipeline = ReferencePipeline(topology, params, rule, group=1)
    answers = pipeline.replay(one_at_a_time(topology, 300),
                              {p: (data.features[rows], data.targets[rows]) for p, rows in enumerate(order)})
    hits = [answers[p].argmax() == data.targets[rows][0] for p, rows in enumerate(order)]
    assert np.mean(hits) == pytest.approx(accuracy, abs=1e-9)
    assert accuracy > 0.4  # learnt: chance is 0.1


@pytest.mark.timeout(60)
def test_a_journal_waiting_for_a_part_that_never_comes_is_refused():
    topology = load_topology()
    journals = one_at_a_time(topology, 1)
    journals["L4.n0"].append(["F", [99]])
    with pytest.raises(ValueError, match="never come"):
        ReferencePipeline(topology, fresh_params(topology)).replay(journals, {0: (np.zeros((1, 64)), [3])})


@pytest.mark.timeout(120)
def test_reference_pipeline_makes_bundles_of_the_window_and_learns_with_both_rules():
    topology, data = load_topology(), digits()
    for rule in ("delay", "stash"):
        result = ReferencePipeline(topology, fresh_params(topology), rule).stream(
            data.features, data.targets, window=8, epochs=1)
        assert all(7 <= size <= 8 for size in result.mean_bundle.values()), result.mean_bundle
        assert result.accuracy > 0.6, (rule, result)  # chance is 0.1; one epoch at window 1 reaches about 0.73


@pytest.mark.timeout(10)
def test_a_feed_opens_its_window_slowly_and_lets_what_has_room_go_as_one_bundle():
    feed = Feed(window=4, ramp=2)
    assert feed.limit == 1 and feed.room(0.0) == 1, "one packet in flight at first"
    for packet in range(1, 7):
        assert feed.room(0.0) >= 1
        feed.sending(packet, 1, [0], 0.0)
        assert feed.answer({"packet": packet, "label": [0]}, 0.0)
        assert feed.limit == min(4, 1 + packet // 2), packet
    assert feed.room(0.0) == 4, "the whole window at once, once open"
    feed.sending(7, 1, [0], 0.0)
    assert feed.room(0.0) == 3 and Feed(window=4, ramp=0).limit == 4
    assert Feed(window=4, rate=10.0, ramp=0).room(0.0) == 1, "a rate spaces packets: one at a time"
    assert Feed(window=4).ramp == DEFAULT_RAMP > 0
