"""Local plasticity: Oja/Sanger find principal components, three-factor learning learns from dopamine and
only from dopamine -- as pure functions, and in real neuron processes."""
import numpy as np
import pytest
import zmq

from _brainutil import modulator_call, running_modulated_network, subscribed, wait_until
from _netutil import learn, neuron_call, params, running_network
from neurox.bench._brain_plasticity import bandit_topology, measure_hebbian, measure_reward_learning, principal_data
from neurox.ext import Origin, digits
from neurox.neuron import TopologyError, parse_topology
from neurox.neuron._plasticity import (SYNAPTIC_DECAY, EligibilityTrace, eligibility, explore, oja_update, tempered,
                                       three_factor_update)


def _cos(a, b):
    return abs(float(a @ b)) / (np.linalg.norm(a) * np.linalg.norm(b))


# -- Oja / Sanger -----------------------------------------------------------------------------------
def test_oja_converges_to_the_first_principal_component_with_unit_norm():
    rows, pc1 = principal_data(4000, 6, np.random.default_rng(3))
    w = np.random.default_rng(4).normal(0, 0.3, (6, 1)).astype(np.float32)
    assert _cos(w[:, 0], pc1) < 0.9
    for row in rows:
        oja_update(row[None, :], w, 0.01)
    assert _cos(w[:, 0], pc1) > 0.99
    assert np.linalg.norm(w) == pytest.approx(1.0, abs=0.05)


def test_sangers_rule_finds_the_first_two_components_in_order():
    rng = np.random.default_rng(5)
    basis, _ = np.linalg.qr(rng.normal(size=(5, 5)))
    rows = ((rng.normal(size=(6000, 5)) * [3.0, 1.5, 0.5, 0.4, 0.3]) @ basis.T).astype(np.float32)
    w = rng.normal(0, 0.3, (5, 2)).astype(np.float32)
    for at in range(0, len(rows), 4):
        oja_update(rows[at:at + 4], w, 0.01)
    assert _cos(w[:, 0], basis[:, 0]) > 0.98 and _cos(w[:, 1], basis[:, 1]) > 0.95


# -- three-factor pieces -------------------------------------------------------------------------------
def test_softmax_exploration_samples_one_action_as_often_as_its_probability():
    pi = np.tile(np.array([[0.6, 0.3, 0.1]], dtype=np.float32), (20000, 1))
    y = explore(pi, "softmax", np.random.default_rng(0))
    assert np.all(y.sum(axis=1) == 1.0) and set(np.unique(y)) == {0.0, 1.0}
    assert y.mean(axis=0) == pytest.approx([0.6, 0.3, 0.1], abs=0.015)
    noisy = explore(np.zeros((20000, 2), dtype=np.float32), "tanh", np.random.default_rng(0), temperature=2.0)
    assert noisy.std() == pytest.approx(0.2, rel=0.05)
    assert tempered(pi[:1], "softmax", 1e6) == pytest.approx(np.full((1, 3), 1 / 3), abs=1e-3)


def test_eligibility_decays_and_is_consumed_by_dopamine():
    trace = EligibilityTrace(2, 3, tau_s=1.0)
    x = np.array([[1.0, 2.0]], dtype=np.float32)
    trace.add(eligibility(x, np.array([[1.0, 0, 0]]), np.array([[0.5, 0.25, 0.25]])), now=10.0)
    weights = trace.take(now=11.0)
    assert weights[0] == pytest.approx(np.array([0.5, -0.25, -0.25]) * np.exp(-1.0))
    assert weights[1] == pytest.approx(2 * weights[0])
    assert not trace.take(now=11.0).any()  # consumed


def test_the_synaptic_decay_spares_synapses_whose_input_was_silent():
    """One-hot contexts: what context 1 learnt is not worn down while only context 0 is rewarded."""
    weights = np.array([[1.0, -1.0], [2.0, 0.5]], dtype=np.float32)
    tags = eligibility(np.array([[1.0, 0.0]], dtype=np.float32), np.array([[1.0, 0.0]]), np.array([[0.5, 0.5]]))
    three_factor_update(weights, tags, rpe=1.0, lr=1.0, decay=0.1)
    assert weights[0] == pytest.approx([0.9 * 1.0 + 0.5, 0.9 * -1.0 - 0.5])  # active: decayed, then moved
    assert weights[1] == pytest.approx([2.0, 0.5])  # silent: untouched


def _bandit(dopamine: bool, pulls: int = 1500, seed: int = 0) -> tuple[float, np.ndarray]:
    """A softmax three-factor unit on a 5-armed bandit: share of best-arm choices in the last third."""
    rng = np.random.default_rng(seed)
    means = np.array([0.2, 0.5, 0.9, 0.3, 0.4])
    w = np.zeros((1, 5), dtype=np.float32)
    trace, x, expected, best = EligibilityTrace(1, 5), np.ones((1, 1), dtype=np.float32), 0.0, []
    for t in range(pulls):
        z = x @ w
        pi = np.exp(z - z.max())
        pi /= pi.sum()
        y = explore(pi, "softmax", rng)
        arm = int(y.argmax())
        trace.add(eligibility(x, y, pi), now=t * 0.01)
        reward = float(rng.random() < means[arm])
        rpe, expected = reward - expected, expected + 0.1 * (reward - expected)
        three_factor_update(w, trace.take(now=t * 0.01), rpe if dopamine else 0.0, 0.2)
        best.append(arm == 2)
    return float(np.mean(best[-pulls // 3:])), w


def test_three_factor_learns_the_best_arm_with_dopamine_and_nothing_without():
    share, preferences = _bandit(dopamine=True)
    assert share > 0.8 and preferences.argmax() == 2
    share, preferences = _bandit(dopamine=False)
    assert share < 0.4 and not preferences.any()


def test_node_perturbation_moves_a_noisy_unit_towards_what_is_rewarded():
    """A tanh unit under exploration noise, rewarded for answering 0.5: dopamine moves it there."""
    rng = np.random.default_rng(1)
    x = np.ones((1, 1), dtype=np.float32)
    for dopamine in (True, False):
        w, trace, expected = np.zeros((1, 1), np.float32), EligibilityTrace(1, 1), 0.0
        for t in range(3000):
            y_mean = np.tanh(x @ w)
            y = explore(y_mean, "tanh", rng)
            trace.add(eligibility(x, y, y_mean), now=t * 0.01)
            reward = -float((y[0, 0] - 0.5) ** 2)
            rpe, expected = reward - expected, expected + 0.1 * (reward - expected)
            # a large rate: tags are ~ noise^2, and the synaptic decay pulls towards 0 (docs/brain.md)
            three_factor_update(w, trace.take(now=t * 0.01), rpe if dopamine else 0.0, 1.0)
        answer = float(np.tanh(w)[0, 0])
        assert 0.25 < answer < 0.6 if dopamine else answer == 0.0, (dopamine, answer)


# -- topology ---------------------------------------------------------------------------------------------
def test_a_local_layer_cannot_be_fed_by_a_backprop_layer():
    layers = [{"name": "A", "neurons": 1}, {"name": "B", "neurons": 1, "plasticity": "oja"}]
    with pytest.raises(TopologyError, match="sends no gradients back"):
        parse_topology({"input_width": 2, "layer": layers})
    layers[0]["plasticity"] = "three_factor"
    assert parse_topology({"input_width": 2, "layer": layers}).modulated_regions() == ["network"]
    with pytest.raises(TopologyError, match="plasticity must be one of"):
        parse_topology({"input_width": 2, "layer": [{"neurons": 1, "plasticity": "bcm"}]})


# -- real networks ------------------------------------------------------------------------------------------
@pytest.mark.timeout(60)
def test_a_live_oja_neuron_finds_the_first_principal_component(no_stray_processes):
    result = measure_hebbian(samples=1500, epochs=2)
    assert result["hebbian_cosine"] >= 0.95 and result["initial_cosine"] < 0.9, result
    assert result["lost"] == 0


@pytest.mark.timeout(120)
def test_a_network_with_an_oja_layer_under_a_backprop_readout_learns_the_digits(tmp_path, no_stray_processes):
    topology = parse_topology({
        "name": "hebb", "input_width": 64, "seed": 0,
        "layer": [{"name": "L0", "neurons": 1, "units": 16, "activation": "linear", "plasticity": "oja",
                   "learning_rate": 0.002},
                  {"name": "L1", "neurons": 1, "units": 10, "activation": "softmax", "learning_rate": 0.1}],
        "output": {"decode": "label"}})
    with running_network(topology, tmp_path) as network:
        before, _ = params(network, "L0.n0")
        progress = learn(network, digits(), epochs=2, window=4)
        after, _ = params(network, "L0.n0")
        metrics = neuron_call(network, "L0.n0", "metrics")
    assert progress.lost == 0 and progress.rolling_accuracy > 0.6, progress
    assert np.abs(after - before).max() > 0.05 and metrics["updates"] > 0
    assert np.linalg.norm(after[:, 0]) == pytest.approx(1.0, abs=0.1)  # Oja keeps the first unit's norm at 1


@pytest.mark.timeout(60)
def test_a_live_three_factor_neuron_learns_only_when_dopamine_comes(tmp_path, no_stray_processes):
    topology = bandit_topology(arms=4, learning_rate=0.2, striatum=None)
    with running_modulated_network(topology, tmp_path) as network:
        subscribed(network, "bandit", ["gate.n0"])
        origin = Origin(zmq.Context.instance(), network.run_dir, network.topology, "test")
        try:
            before = params(network, "gate.n0")
            for _ in range(50):
                origin.send(np.ones((1, 1), dtype=np.float32), learn=True)
                assert origin.returns.poll(5000)
                (answer,) = origin.receive()
                assert sorted(np.frombuffer(answer["output"], "<f4").tolist()) == [0, 0, 0, 1]  # one action gated
            after = params(network, "gate.n0")
            assert all(np.array_equal(a, b) for a, b in zip(before, after)), "learned without dopamine"
            modulator_call(network, "bandit", "reward", reward=1.0)
            changed = wait_until(lambda: params(network, "gate.n0"),
                                 lambda p: not np.array_equal(p[0], before[0]))
            status = neuron_call(network, "gate.n0", "status")
        finally:
            origin.close()
    assert status["neuromodulators"]["rewards"] == 1 and status["neuromodulators"]["rpe"] == pytest.approx(1.0)
    # softmax tags (one-hot minus probabilities) sum to zero: dopamine moves preference between actions
    step = changed[0] - before[0] * np.float32(1 - 0.2 * SYNAPTIC_DECAY)
    assert np.abs(step).max() > 0.01 and step.sum() == pytest.approx(0.0, abs=1e-4)
    assert np.array_equal(changed[1], before[1])  # synapses learn, the bias does not


@pytest.mark.timeout(120)
def test_a_live_dopamine_network_beats_chance_on_a_moving_bandit(no_stray_processes):
    result = measure_reward_learning(pulls=1500, moves=1)
    assert result["reward_ratio"] > result["random_ratio"] + 0.2, result
    assert result["best_arm_share_end_of_last_phase"] > 0.5, result
