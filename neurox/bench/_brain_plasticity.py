"""Local plasticity measured in real neuron processes, each beside a baseline from the same run.

- :func:`measure_reward_learning`: a basal-ganglia-like network learns a 10-armed Bernoulli bandit
  whose best arm moves during the run, by its region's dopamine alone: a context input (cortex) feeds
  two striatal neurons (``three_factor``, tanh, learning by node perturbation) that feed a gate
  (``three_factor`` softmax: pallidum and thalamus letting one action through); beside an
  epsilon-greedy agent (constant step size, the textbook choice for a moving bandit) and the expected
  ratio of random choice, on the same arm schedule.
- :func:`measure_hebbian`: an ``oja`` neuron's weight vector against the first principal component
  of its zero-mean input, beside the same rule run in one numpy process and the initial weights.

The lead wires them into ``neurox bench brain``; each returns one JSON-able dict.
"""
from __future__ import annotations

import tempfile
import time

import numpy as np
import zmq

from ..ext import PRELOAD, Dataset, Origin, Stream, messenger_children
from ..brain import modulator_children
from ..neuron import (Network, Topology, array_from_wire, levels_endpoint, neuron_control,
                      parse_topology, reports_endpoint)
from ..neuron import oja_update
from ..runtime import call, make_socket, pack, unpack_map
from ._bandits import BASELINES, contextual_schedule, regret_curve, reward_ratio

ANSWER_TIMEOUT_S = 10.0


# -- reward learning -----------------------------------------------------------------------------
def bandit_topology(arms: int, learning_rate: float, striatum: tuple[int, int] | None = None,
                    width: int = 1, gate_learning_rate: float | None = None) -> Topology:
    """Striatum (``striatum`` = (neurons, units each), or None for none) -> a gate of ``arms`` softmax
    units, every layer learning by dopamine (region ``bandit``); the gate at ``gate_learning_rate`` if
    given (a softmax's policy gradient takes a larger step than node perturbation in tanh units can).
    The context arrives as it is (a constant 1, or one-hot): three-factor synapses learn, biases do not."""
    gate = {"name": "gate", "neurons": 1, "units": arms, "activation": "softmax",
            **({"learning_rate": gate_learning_rate} if gate_learning_rate is not None else {})}
    layers = [{"name": "striatum", "neurons": striatum[0], "units": striatum[1], "activation": "tanh"}] if striatum else []
    return parse_topology({
        "name": "bandit", "input_width": width, "seed": 0,
        "defaults": {"plasticity": "three_factor", "learning_rate": learning_rate},
        "layer": [*layers, gate], "output": {"decode": "label"}, "input": {"scale": "none"}})


def arm_schedule(arms: int, pulls: int, moves: int, rng: np.random.Generator) -> np.ndarray:
    """Each pull's reward probability per arm: one arm pays 0.9, the others 0.1-0.6; the best arm
    moves to another arm ``moves`` times, evenly spaced (the old best drops to 0.1-0.6)."""
    means = rng.uniform(0.1, 0.6, arms)
    best = int(rng.integers(arms))
    means[best] = 0.9
    schedule = np.empty((pulls, arms))
    phase = pulls // (moves + 1)
    for k in range(moves + 1):
        if k:
            new_best = int(rng.choice([a for a in range(arms) if a != best]))
            means[best], means[new_best], best = rng.uniform(0.1, 0.6), 0.9, new_best
        schedule[k * phase:] = means
    return schedule


def epsilon_greedy(schedule: np.ndarray, rng: np.random.Generator, epsilon: float = 0.1,
                   step: float = 0.1) -> float:
    """The baseline: total reward of epsilon-greedy with a constant step size on the same schedule."""
    values = np.zeros(schedule.shape[1])
    total = 0.0
    for means in schedule:
        arm = int(rng.integers(len(values))) if rng.random() < epsilon else int(values.argmax())
        reward = float(rng.random() < means[arm])
        values[arm] += step * (reward - values[arm])
        total += reward
    return total


def measure_reward_learning(pulls: int = 3000, arms: int = 10, moves: int = 1, learning_rate: float = 1.0,
                            seed: int = 0, striatum_learning_rate: float = 0.2) -> dict:
    """The dopamine-driven learner's mean reward over the best arm's, beside epsilon-greedy, UCB1,
    Thompson sampling and sliding-window / discounted UCB on the same schedule, with regret curves."""
    rng = np.random.default_rng(seed)
    schedule = arm_schedule(arms, pulls, moves, rng)
    best_total = float(schedule.max(axis=1).sum())
    baseline = epsilon_greedy(schedule, np.random.default_rng(seed + 1))
    topology = bandit_topology(arms, learning_rate)
    started = time.perf_counter()
    choices, total = play_network(topology, schedule, np.random.default_rng(seed + 2))
    elapsed = time.perf_counter() - started
    with_striatum, _ = play_network(bandit_topology(arms, striatum_learning_rate, (2, 8), gate_learning_rate=learning_rate),
                                    schedule, np.random.default_rng(seed + 2))
    best_arms = schedule.argmax(axis=1)
    last = slice(pulls - pulls // (2 * (moves + 1)), pulls)
    figures = {"reward_ratio": round(total / best_total, 4),
               "epsilon_greedy_ratio": round(baseline / best_total, 4),
               "random_ratio": round(float(schedule.mean(axis=1).sum()) / best_total, 4),
               "ratio_vs_epsilon_greedy": round(total / baseline, 4) if baseline else None,
               "best_arm_share_end_of_last_phase": round(float((choices[last] == best_arms[last]).mean()), 4),
               "pulls": pulls, "arms": arms, "moves": moves, "learning_rate": learning_rate,
               "network": "context (a constant 1) -> gate (softmax), three_factor",
               "with_striatum_reward_ratio": round(reward_ratio(schedule, with_striatum), 4),
               "with_striatum_network": "context -> striatum (2 neurons x 8 tanh, node perturbation) -> gate",
               "pulls_per_s": round(pulls / elapsed, 1)}
    figures.update(against_baselines(schedule, choices, None, seed, moves))
    figures["bandit_reward_vs_best_baseline"] = figures.pop("vs_best_baseline")
    return figures


def measure_contextual_bandit(pulls: int = 3000, arms: int = 10, contexts: int = 4, learning_rate: float = 1.0,
                              seed: int = 0) -> dict:
    """A contextual bandit (the best arm depends on a one-hot context input), the network against
    per-context UCB1, Thompson sampling and sliding-window UCB on the same draws."""
    means, drawn = contextual_schedule(arms, contexts, pulls, np.random.default_rng(seed))
    topology = bandit_topology(arms, learning_rate, width=contexts)
    started = time.perf_counter()
    choices, _ = play_network(topology, means, np.random.default_rng(seed + 2), np.eye(contexts)[drawn])
    elapsed = time.perf_counter() - started
    figures = {"pulls": pulls, "arms": arms, "contexts": contexts, "learning_rate": learning_rate,
               "network": "context (one-hot) -> gate (softmax), three_factor",
               "pulls_per_s": round(pulls / elapsed, 1)}
    figures.update(against_baselines(means, choices, drawn, seed, 0))
    figures["contextual_reward_ratio"] = figures.pop("reward_ratio")
    figures["contextual_reward_vs_best_baseline"] = figures.pop("vs_best_baseline")
    return figures


def against_baselines(schedule: np.ndarray, choices: np.ndarray, contexts: np.ndarray | None, seed: int,
                      moves: int) -> dict:
    """Reward ratios (expected reward over the best arm's) and regret curves of the network and of each
    baseline; ``vs_best_baseline`` over the best of UCB1, Thompson and sliding-window UCB."""
    ratios = {"reward_ratio": round(reward_ratio(schedule, choices), 4)}
    curves = {"network": regret_curve(schedule, choices)}
    for name, baseline in BASELINES.items():
        options = {"breakpoints": moves} if name in ("sliding_window_ucb", "discounted_ucb") else {}
        chosen = baseline(schedule, np.random.default_rng(seed + 1), contexts, **options)
        ratios[f"{name}_ratio"] = round(reward_ratio(schedule, chosen), 4)
        curves[name] = regret_curve(schedule, chosen)
    best = max(ratios[f"{name}_ratio"] for name in ("ucb1", "thompson", "sliding_window_ucb"))
    return {**ratios, "vs_best_baseline": round(ratios["reward_ratio"] / best, 4), "regret_curves": curves,
            "regret_at_pulls": np.linspace(0, len(choices) - 1, len(curves["network"])).astype(int).tolist()}


def play_network(topology: Topology, schedule: np.ndarray, rng: np.random.Generator,
                 contexts: np.ndarray | None = None) -> tuple[np.ndarray, float]:
    """A fresh bandit network with its region's modulator plays the schedule; (choices, total reward)."""
    with tempfile.TemporaryDirectory() as data_dir:
        network = Network(topology, data_dir, extensions=messenger_children(data_dir)
                          + modulator_children(topology, data_dir), preload=PRELOAD)
        with network:
            return _play(network, schedule, rng, contexts)


def _play(network: Network, schedule: np.ndarray, rng: np.random.Generator,
          contexts: np.ndarray | None = None) -> tuple[np.ndarray, float]:
    """Pull, get the network's choice, report the reward to the region's modulator, and wait until the
    dopamine for that reward has been published (so the next pull cannot overtake it). The input is
    ``contexts[t]`` (a constant 1 without)."""
    ctx = zmq.Context.instance()
    region = network.topology.region_of_layer(network.topology.layers[-1])
    origin = Origin(ctx, network.run_dir, network.topology, "bandit")
    levels = make_socket(ctx, zmq.SUB, connect=levels_endpoint(network.run_dir, region), linger_ms=0)
    levels.setsockopt(zmq.SUBSCRIBE, b"levels")
    rewards = make_socket(ctx, zmq.PUSH, connect=reports_endpoint(network.run_dir, region), linger_ms=0)
    choices = np.empty(len(schedule), dtype=np.int64)
    total = 0.0
    try:
        first = _await(levels, lambda message: True)
        _await_neurons(network, first["seq"])
        for t, means in enumerate(schedule):
            row = np.ones((1, 1)) if contexts is None else contexts[t:t + 1]
            origin.send(row.astype(np.float32), learn=True)
            if not origin.returns.poll(int(ANSWER_TIMEOUT_S * 1000)):
                raise RuntimeError(f"no answer to pull {t}")
            arm = choices[t] = origin.receive()[0]["label"][0]
            reward = float(rng.random() < means[arm])
            total += reward
            rewards.send(pack({"kind": "reward", "reward": reward}))
            _await(levels, lambda message, n=t + 1: message["rewards_total"] >= n)
    finally:
        for sock in (levels, rewards):
            sock.close()
        origin.close()
    return choices, total


def _await(sub: zmq.Socket, predicate) -> dict:
    deadline = time.monotonic() + ANSWER_TIMEOUT_S
    while time.monotonic() < deadline:
        if sub.poll(int(max(0.0, deadline - time.monotonic()) * 1000) + 1):
            message = unpack_map(sub.recv_multipart()[1])
            if predicate(message):
                return message
    raise RuntimeError("the modulator did not publish in time")


def _await_neurons(network: Network, seq: int) -> None:
    """Until every neuron has received publication ``seq`` or later: a SUB may join after the start,
    and the dopamine of the first rewards must not go unheard."""
    deadline = time.monotonic() + ANSWER_TIMEOUT_S
    for neuron in network.topology.neurons():
        while _call(network, neuron, "status")["neuromodulators"]["seq"] < seq:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{neuron} does not hear its region's modulator")
            time.sleep(0.02)


# -- Hebbian ------------------------------------------------------------------------------------------
def principal_data(samples: int, width: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Zero-mean Gaussian rows with one dominant direction, and that direction (the first PC)."""
    basis, _ = np.linalg.qr(rng.normal(size=(width, width)))
    spread = np.linspace(1.0, 0.4, width)
    spread[0] = 2.0
    rows = (rng.normal(size=(samples, width)) * spread) @ basis.T
    rows -= rows.mean(axis=0)
    _, vectors = np.linalg.eigh(np.cov(rows.T))
    return rows.astype(np.float32), vectors[:, -1]


def hebbian_topology(width: int, learning_rate: float) -> Topology:
    return parse_topology({
        "name": "hebbian", "input_width": width, "seed": 0,
        "layer": [{"name": "L0", "neurons": 1, "units": 1, "activation": "linear", "plasticity": "oja",
                   "learning_rate": learning_rate}],
        "output": {"decode": "vector"},
        "input": {"scale": "none"}})  # the first principal component of the data as it is, not standardised


def measure_hebbian(samples: int = 3000, width: int = 8, epochs: int = 2, learning_rate: float = 0.01,
                    seed: int = 0) -> dict:
    """|cos| between an oja neuron's weights and the data's first principal component."""
    rng = np.random.default_rng(seed)
    rows, pc1 = principal_data(samples, width, rng)
    data = Dataset(rows, np.zeros((samples, 1), dtype=np.float32), None)
    reference = np.random.default_rng(seed + 1).normal(0.0, 1.0 / np.sqrt(width), (width, 1)).astype(np.float32)
    for _ in range(epochs):
        for row in rows[np.random.default_rng(seed + 2).permutation(samples)]:
            oja_update(row[None, :], reference, learning_rate)
    with tempfile.TemporaryDirectory() as data_dir:
        with Network(hebbian_topology(width, learning_rate), data_dir, extensions=messenger_children(data_dir),
                     preload=PRELOAD) as network:
            initial = _weights(network)
            stream = Stream(zmq.Context.instance(), network.run_dir, network.topology, data, window=8, seed=seed)
            try:
                progress = stream.run(epochs)
            finally:
                stream.close()
            learned = _weights(network)
    return {"hebbian_cosine": round(_cosine(learned, pc1), 4), "initial_cosine": round(_cosine(initial, pc1), 4),
            "reference_cosine": round(_cosine(reference[:, 0], pc1), 4),
            "weight_norm": round(float(np.linalg.norm(learned)), 4), "samples": progress.answered,
            "lost": progress.lost, "samples_per_s": round(progress.samples_per_s)}


def _call(network: Network, neuron: str, op: str):
    return call(zmq.Context.instance(), neuron_control(network.run_dir, network.topology, neuron), op, 5.0)


def _weights(network: Network) -> np.ndarray:
    params = _call(network, network.topology.layers[0].neurons[0], "get_params")
    return array_from_wire(params["weights"])[:, 0].copy()


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(abs(a @ b) / (np.linalg.norm(a) * np.linalg.norm(b)))
