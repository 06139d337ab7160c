"""Neurotransmitter kinetics against their closed-form solutions, and each one's effect on a neuron
in the direction docs/brain.md documents (pure functions, then a real network and its modulator)."""
import math
import time

import numpy as np
import pytest
import zmq

from _brainutil import modulator_call, running_modulated_network, subscribed, wait_until
from _netutil import learn, neuron_call
from neurox.ext import Origin, digits
from neurox.brain import ChemistryError
from neurox.neuron import TopologyError, load_topology, parse_topology, reports_endpoint
from neurox.neuron._math import backward, forward
from neurox.brain._neurotransmitters import (DEFAULT_KINETICS, EXPECTED_REWARD_RATE, Expectations, Kinetics, advance,
                                             drives, expect, phasic, region_chemistry, release_rate, step,
                                             unbiased_step)
from neurox.neuron import NEUTRAL, modulation
from neurox.neuron._plasticity import tempered

REST = {name: 1.0 for name in DEFAULT_KINETICS}


# -- kinetics ------------------------------------------------------------------------------------
def _integrate(level: float, release: float, k: float, t: float, steps: int = 20000) -> float:
    """dC/dt = R - k C by classical Runge-Kutta, independent of the closed form."""
    h = t / steps
    f = lambda c: release - k * c  # noqa: E731
    for _ in range(steps):
        a = f(level)
        b = f(level + h * a / 2)
        c = f(level + h * b / 2)
        d = f(level + h * c)
        level += h * (a + 2 * b + 2 * c + d) / 6
    return level


@pytest.mark.parametrize("name", sorted(DEFAULT_KINETICS))
def test_each_transmitter_relaxes_as_the_closed_form_says(name):
    k = DEFAULT_KINETICS[name]
    release = release_rate(k, 0.5)
    steady = release / k.clearance_per_s
    for t in (0.01, 0.1, 1.0, 5.0):
        closed = steady + (3.0 - steady) * math.exp(-k.clearance_per_s * t)
        assert step(3.0, release, k.clearance_per_s, t) == pytest.approx(closed, rel=1e-12)
        assert step(3.0, release, k.clearance_per_s, t) == pytest.approx(_integrate(3.0, release, k.clearance_per_s, t),
                                                                          rel=1e-9)
    # the half-life of the excess over the steady state is ln 2 / (reuptake + degradation)
    half = math.log(2) / k.clearance_per_s
    assert step(steady + 1.0, release, k.clearance_per_s, half) - steady == pytest.approx(0.5)


def test_at_rest_levels_stay_at_rest_and_activity_raises_the_steady_state():
    chemistry = region_chemistry({}, "r")
    levels = chemistry.resting_levels()
    assert advance(levels, chemistry, {}, 10.0) == pytest.approx(levels)
    k = chemistry.kinetics["glutamate"]
    after = advance(levels, chemistry, {"glutamate": 0.5}, 100.0)
    assert after["glutamate"] == pytest.approx(k.rest + k.release_per_activity * 0.5 / k.clearance_per_s)
    assert after["gaba"] == pytest.approx(1.0)


def test_piecewise_constant_release_composes_exactly():
    """Advancing in many small steps equals one step: the modulator's period does not matter."""
    chemistry = region_chemistry({}, "r")
    one = advance({**REST, "dopamine": 4.0}, chemistry, {"dopamine": 0.3}, 1.0)
    many = {**REST, "dopamine": 4.0}
    for _ in range(50):
        many = advance(many, chemistry, {"dopamine": 0.3}, 0.02)
    assert many == pytest.approx(one, rel=1e-12)


def test_rewards_make_dopamine_bursts_and_dips_and_the_expectation_follows():
    k = DEFAULT_KINETICS["dopamine"]
    expected = Expectations()
    delta, _, expected = expect(expected, 0.7)
    assert delta == 0.7 and expected.reward == 0.7  # the first reward is taken whole: no bias towards 0
    for _ in range(200):
        delta, _, expected = expect(expected, 0.3)
    assert expected.reward == pytest.approx(0.3, abs=1e-2) and abs(delta) < 1e-2
    assert phasic(1.0, k, +0.5) > 1.0 > phasic(1.0, k, -0.5)
    assert phasic(0.2, k, -5.0) == 0.0  # a dip cannot go below nothing


def test_a_running_mean_without_its_starting_bias():
    """The first value is taken whole, the step falls to the rate: the mean of a constant is exact at once,
    and the weights of n values are those of an exponential average renormalised."""
    weight, value = 0.0, 0.0
    steps = []
    for x in (5.0, 5.0, 5.0):
        step_, weight = unbiased_step(weight, 0.1)
        value += step_ * (x - value)
        steps.append(step_)
        assert value == pytest.approx(5.0)
    assert steps[0] == 1.0 and steps[1] == pytest.approx(0.1 / 0.19) and steps[2] > 0.1
    for _ in range(500):
        step_, weight = unbiased_step(weight, 0.1)
    assert step_ == pytest.approx(0.1) and weight == pytest.approx(1.0)


def test_norepinephrine_answers_a_run_of_disappointments_not_single_bad_outcomes():
    """A steady Bernoulli(0.9) stream (a miss now and then) gives almost no disappointment; the same
    stream dropping to 0.1 gives it at once and for tens of outcomes; a rise gives none."""
    rng = np.random.default_rng(0)
    expected = Expectations()
    noise = []
    for _ in range(2000):
        _, u, expected = expect(expected, float(rng.random() < 0.9))
        noise.append(u)
    assert sum(noise[500:]) == 0.0  # its misses (one in ten, each |delta| ~ 0.9) are what it expects
    dropped = []
    for _ in range(60):
        _, u, expected = expect(expected, float(rng.random() < 0.1))
        dropped.append(u)
    assert dropped[0] == 0.0 and sum(u > 0.05 for u in dropped[5:30]) >= 20 and sum(dropped) > 3.0
    risen = Expectations()
    for _ in range(300):
        _, _, risen = expect(risen, float(rng.random() < 0.1))
    for _ in range(30):
        _, u, risen = expect(risen, float(rng.random() < 0.9))
        assert u == 0.0


def test_drives_are_the_mean_over_reporting_neurons():
    assert drives([("glutamate", 0.8), ("glutamate", 0.4), ("gaba", 0.6), ("glutamate", 2.0)]) == pytest.approx(
        {"glutamate": (0.8 + 0.4 + 1.0) / 4, "gaba": 0.6 / 4})
    assert drives([]) == {}


# -- effects (docs/brain.md) -----------------------------------------------------------------------
def test_at_rest_every_effect_is_neutral():
    assert modulation(REST, REST) == NEUTRAL


@pytest.mark.parametrize("transmitter, field, direction", [
    ("glutamate", "gain", +1), ("gaba", "gain", -1), ("serotonin", "gain", -1),
    ("norepinephrine", "learning_rate_factor", +1), ("norepinephrine", "exploration", +1)])
def test_each_modulator_moves_its_effect_in_the_documented_direction(transmitter, field, direction):
    more = getattr(modulation({**REST, transmitter: 2.0}, REST), field)
    less = getattr(modulation({**REST, transmitter: 0.5}, REST), field)
    assert (more - 1.0) * direction > 0 and (less - 1.0) * direction < 0


def test_effects_are_bounded():
    assert modulation({**REST, "glutamate": 1e9}, REST).gain == 4.0
    assert modulation({**REST, "gaba": 1e9}, REST).gain == 0.25


def test_norepinephrine_flattens_a_choice_and_more_gain_sharpens_a_response():
    pi = np.array([[0.7, 0.2, 0.1]], dtype=np.float32)
    hot = tempered(pi, "softmax", modulation({**REST, "norepinephrine": 3.0}, REST).exploration)
    entropy = lambda p: float(-(p * np.log(p)).sum())  # noqa: E731
    assert entropy(hot) > entropy(pi) and hot.sum() == pytest.approx(1.0)
    z = np.array([0.3, -0.2])
    assert np.all(np.abs(np.tanh(modulation({**REST, "glutamate": 3.0}, REST).gain * z)) > np.abs(np.tanh(z)))


# -- configuration -----------------------------------------------------------------------------------
def test_region_overrides_apply_over_network_wide_settings():
    table = {"publish_interval_s": 0.5, "dopamine": {"reuptake_per_s": 8.0},
             "region": {"striatum": {"dopamine": {"phasic_per_rpe": 3.0}, "expected_reward_rate": 0.5}}}
    striatum, cortex = region_chemistry(table, "striatum"), region_chemistry(table, "cortex")
    assert striatum.kinetics["dopamine"] == Kinetics(1.0, 2.0, 8.0, 1.0, 3.0)
    assert cortex.kinetics["dopamine"].phasic_per_rpe == 1.0 and cortex.kinetics["dopamine"].reuptake_per_s == 8.0
    assert striatum.expected_reward_rate == 0.5 and cortex.expected_reward_rate == EXPECTED_REWARD_RATE
    assert striatum.publish_interval_s == 0.5


@pytest.mark.parametrize("table, words", [
    ({"dopmine": {}}, "unknown keys ['dopmine']"),
    ({"dopamine": {"reuptake_per_s": -1}}, "non-negative"),
    ({"serotonin": {"rest": float("inf")}}, "finite"),
    ({"serotonin": {"rest": float("nan")}}, "finite"),
    ({"dopamine": {"halflife": 1}}, "unknown keys ['halflife']"),
    ({"gaba": {"reuptake_per_s": 0, "degradation_per_s": 0}}, "must be positive"),
    ({"publish_interval_s": 0}, "positive"),
    ({"expected_reward_rate": 2}, "(0, 1]"),
    ({"region": {"r": {"publish_interval_s": 1}}}, "unknown keys ['publish_interval_s']"),
])
def test_bad_chemistry_is_refused_with_the_reason(table, words):
    with pytest.raises(ChemistryError) as info:
        region_chemistry(table, "r")
    assert words in str(info.value)
    with pytest.raises(TopologyError):
        parse_topology({"name": "r", "input_width": 2, "neurotransmitters": table, "layer": [{"neurons": 1}]})


def test_topology_settings_are_checked():
    with pytest.raises(TopologyError, match="transmitter must be one of"):
        parse_topology({"input_width": 2, "layer": [{"neurons": 1, "transmitter": "acetylcholine"}]})
    assert parse_topology({"input_width": 2, "layer": [{"neurons": 1}]}).modulated_regions() == []
    gaba = parse_topology({"name": "n", "input_width": 2, "neurotransmitters": {},
                           "layer": [{"neurons": 1, "transmitter": "gaba"}]})
    assert gaba.modulated_regions() == ["n"]


# -- in a real network ---------------------------------------------------------------------------------
def chemistry_topology():
    return parse_topology({
        "name": "chem", "input_width": 3, "seed": 1,
        # a long period: only the publication right after each release counts, so levels hold still;
        # fast clearance, so that a level is back at rest soon after
        "neurotransmitters": {"publish_interval_s": 5.0,
                              **{name: {"reuptake_per_s": 20.0} for name in DEFAULT_KINETICS}},
        "layer": [{"name": "L0", "neurons": 1, "units": 4, "activation": "tanh"},
                  {"name": "L1", "neurons": 1, "units": 2, "activation": "linear"}],
        "output": {"decode": "vector"}})


@pytest.mark.timeout(60)
def test_released_transmitters_change_a_live_neurons_response_as_documented(tmp_path, no_stray_processes):
    vector = [0.3, -0.2, 0.5]
    with running_modulated_network(chemistry_topology(), tmp_path) as network:
        subscribed(network, "chem", ["L0.n0"])
        assert modulator_call(network, "chem", "status")["levels"]["glutamate"] == pytest.approx(1.0, abs=0.05)
        at_rest = np.array(neuron_call(network, "L0.n0", "inject", vector=vector)["output"])
        responses = {}
        for transmitter, amount in (("glutamate", 3.0), ("gaba", 3.0), ("serotonin", 3.0), ("norepinephrine", 3.0)):
            modulator_call(network, "chem", "release", transmitter=transmitter, amount=amount)
            status = wait_until(lambda: neuron_call(network, "L0.n0", "status"),
                                lambda s, t=transmitter: s["neuromodulators"]["levels"][t] > 3.0)
            chemistry = status["neuromodulators"]
            output = np.array(neuron_call(network, "L0.n0", "inject", vector=vector)["output"])
            # y = tanh(gain * z): the response's pre-activation scales by exactly the reported gain
            assert np.arctanh(output) == pytest.approx(chemistry["gain"] * np.arctanh(at_rest), rel=1e-3)
            responses[transmitter] = chemistry
            time.sleep(0.5)  # 10 time constants: back at rest; a release of nothing publishes that
            modulator_call(network, "chem", "release", transmitter=transmitter, amount=0.0)
            wait_until(lambda: neuron_call(network, "L0.n0", "status"),
                       lambda s, t=transmitter: s["neuromodulators"]["levels"][t] < 1.1)
        assert responses["glutamate"]["gain"] > 1.5
        assert responses["gaba"]["gain"] < 0.7 and responses["serotonin"]["gain"] < 0.7
        assert responses["norepinephrine"]["learning_rate_factor"] > 3.0
        assert responses["norepinephrine"]["exploration"] > 3.0
        metrics = neuron_call(network, "L1.n0", "metrics")
        assert set(metrics["neuromodulators"]["levels"]) == set(REST)


@pytest.mark.timeout(60)
def test_the_modulator_refuses_bad_requests_and_reports(tmp_path, no_stray_processes):
    with running_modulated_network(chemistry_topology(), tmp_path) as network:
        for op, args in (("release", {"transmitter": "adrenaline", "amount": 1}),
                         ("release", {"transmitter": "gaba", "amount": "lots"}),
                         ("reward", {"reward": float("nan")}), ("set_state", {"state": "asleep"})):
            with pytest.raises(Exception, match="bad_request"):
                modulator_call(network, "chem", op, **args)
        push = zmq.Context.instance().socket(zmq.PUSH)
        push.setsockopt(zmq.LINGER, 2000)  # deliver before closing
        push.connect(reports_endpoint(network.run_dir, "chem"))
        for frame in (b"\xc1garbage", b"\x93\x01\x02\x03", b"\x81\xa4kind\xa4nope"):
            push.send(frame)
        push.close()
        wait_until(lambda: modulator_call(network, "chem", "status"),
                   lambda s: set(s["bad_frames_by_kind"]) >= {"malformed", "wrong_type", "bad_report"})
        assert modulator_call(network, "chem", "reward", reward=1.0) == {"rewards": 1, "expected_reward": 1.0}


@pytest.mark.timeout(60)
@pytest.mark.parametrize("transmitter, direction", [("gaba", -1), ("glutamate", +1)])
def test_active_neurons_release_their_transmitter_and_so_inhibit_or_excite_the_region(
        tmp_path, transmitter, direction, no_stray_processes):
    topology = parse_topology({
        "name": "ei", "input_width": 3, "seed": 2,
        "neurotransmitters": {"publish_interval_s": 0.05, transmitter: {"release_per_activity": 40.0}},
        "layer": [{"name": "L0", "neurons": 1, "units": 8, "activation": "tanh", "transmitter": transmitter},
                  {"name": "L1", "neurons": 1, "units": 2, "activation": "linear"}],
        "output": {"decode": "vector"}})
    rng = np.random.default_rng(0)
    with running_modulated_network(topology, tmp_path) as network:
        idle = neuron_call(network, "L1.n0", "status")["neuromodulators"]
        assert idle["gain"] == pytest.approx(1.0, abs=0.02)
        origin = Origin(zmq.Context.instance(), network.run_dir, network.topology, "test")
        try:
            deadline, busy = time.monotonic() + 10.0, idle
            while time.monotonic() < deadline and (busy["gain"] - 1.0) * direction < 0.15:
                for _ in range(20):
                    origin.send(rng.uniform(-2, 2, (1, 3)).astype(np.float32))
                time.sleep(0.01)
                busy = neuron_call(network, "L1.n0", "status")["neuromodulators"]
        finally:
            origin.close()
    assert busy["levels"][transmitter] > 1.3, busy  # a gain 0.15 away from 1 needs a level 1.32 (or 1.38)
    assert (busy["gain"] - 1.0) * direction >= 0.15, busy


@pytest.mark.timeout(120)
def test_a_modulated_diamond_still_learns_the_digits_by_backprop(tmp_path, no_stray_processes):
    """With a modulator, activity raises glutamate and so every neuron's gain: backprop carries it."""
    topology = load_topology()
    topology.neurotransmitters = {"publish_interval_s": 0.1}
    with running_modulated_network(topology.validate(), tmp_path) as network:
        progress = learn(network, digits(), epochs=1, window=4)
        chemistry = neuron_call(network, "L2.n1", "status")["neuromodulators"]
    assert chemistry["modulated"] and chemistry["gain"] > 1.01 and chemistry["levels"]["glutamate"] > 1.02
    assert progress.answered == 1797 and progress.rolling_accuracy > 0.6, progress


def test_backprop_through_a_gain_is_the_exact_gradient():
    """What a neuron does under gain g: y = act(g (xW + b)), and the gradient it gets is scaled by g."""
    rng = np.random.default_rng(0)
    x, w, b = rng.normal(size=(3, 4)), rng.normal(size=(4, 2)), rng.normal(size=2)
    c, gain = rng.normal(size=(3, 2)), 1.7
    loss = lambda w_, b_: float((c * np.tanh(gain * (x @ w_ + b_))).sum())  # noqa: E731
    y = forward(x.astype(np.float32), (w * gain).astype(np.float32), (b * gain).astype(np.float32), "tanh")
    new_w, new_b = w.astype(np.float32), b.astype(np.float32)
    dx = backward(x.astype(np.float32), y, (c * gain).astype(np.float32), new_w, new_b, "tanh", 1.0)
    eps = 1e-6
    numeric_w = np.array([[(loss(w + eps * np.eye(4)[i][:, None] * np.eye(2)[j], b) - loss(w, b)) / eps
                           for j in range(2)] for i in range(4)])
    assert (w - new_w) == pytest.approx(numeric_w, abs=1e-3)
    numeric_b = np.array([(loss(w, b + eps * np.eye(2)[j]) - loss(w, b)) / eps for j in range(2)])
    assert (b - new_b) == pytest.approx(numeric_b, abs=1e-3)
    assert dx.shape == x.shape


def test_a_modulated_region_needs_a_name_fit_for_its_sockets():
    with pytest.raises(TopologyError, match="without '/'"):
        parse_topology({"name": "a/b", "input_width": 2, "neurotransmitters": {}, "layer": [{"neurons": 1}]})
    parse_topology({"name": "a/b", "input_width": 2, "layer": [{"neurons": 1}]})  # no modulator: any name


def test_kept_expectations_are_read_back_and_an_older_file_keeps_its_state(tmp_path, capsys):
    from dataclasses import asdict

    from neurox.brain._modulator import read_kept
    from neurox.runtime import pack
    kept = Expectations(0.8, 0.99, -0.1, 0.2, 1.0)
    (tmp_path / "new").write_bytes(pack({"state": "meditative", "expected": asdict(kept)}))
    assert read_kept(str(tmp_path / "new")) == ("meditative", kept)
    (tmp_path / "old").write_bytes(pack({"state": "maintenance", "expected_reward": 0.5, "expected_surprise": 0.1}))
    assert read_kept(str(tmp_path / "old")) == ("maintenance", Expectations())
    (tmp_path / "bad").write_bytes(b"\xc1")
    assert read_kept(str(tmp_path / "bad")) == ("awake", Expectations())
    assert read_kept(str(tmp_path / "none")) == ("awake", Expectations())
    assert "start afresh" in capsys.readouterr().err
