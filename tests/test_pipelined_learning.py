"""Many packets in flight through real neuron processes: bundles answer like single packets, nothing is
lost or duplicated when neurons die, and the weights are exactly what the one-process reference computes."""
import collections
import os
import signal
import time

import numpy as np
import pytest
import zmq

from _netutil import neuron_call, params, running_network, settle
from neurox.bench._learn_reference import ReferencePipeline
from neurox.ext import digits
from neurox.ext._origin import Origin
from neurox.neuron import load_topology, parse_topology


def tiny_topology(rule: str):
    return parse_topology({
        "name": "tiny", "input_width": 6, "seed": 3, "input": {"scale": "none"},  # the reference does not scale
        "defaults": {"units": 4, "learning_rate": 0.1, "staleness": rule, "staleness_group": 5},
        "layer": [{"name": "A", "neurons": 1}, {"name": "B", "neurons": 2},
                  {"name": "C", "neurons": 1, "units": 3, "activation": "softmax"}]})


def answers(origin: Origin, count: int, timeout_s: float = 20.0) -> list[dict]:
    got, deadline = [], time.monotonic() + timeout_s
    while len(got) < count and time.monotonic() < deadline:
        if origin.returns.poll(100):
            got.extend(origin.receive())
    return got


@pytest.mark.timeout(120)
def test_a_burst_of_packets_is_answered_each_as_if_alone(tmp_path):
    """K packets sent at once travel as bundles; each answer equals the answer to that packet sent alone."""
    data, k = digits(), 48
    with running_network(load_topology(), tmp_path) as network:
        origin = Origin(zmq.Context.instance(), network.run_dir, network.topology, "burst")
        try:
            ids = [origin.send(data.features[i:i + 1]) for i in range(k)]
            burst = {r["packet"]: r for r in answers(origin, k)}
            alone = {}
            for i in range(k):
                packet = origin.send(data.features[i:i + 1])
                (result,) = answers(origin, 1)
                alone[i] = (packet, result)
            end = neuron_call(network, "L4.n0", "metrics")
        finally:
            origin.close()
    assert sorted(burst) == sorted(ids), "every packet of the burst answered, once"
    for i, packet in enumerate(ids):
        assert alone[i][1]["packet"] == alone[i][0]
        bundled = np.frombuffer(burst[packet]["output"], dtype="<f4")
        single = np.frombuffer(alone[i][1]["output"], dtype="<f4")
        assert np.allclose(bundled, single, atol=1e-6), i
        assert burst[packet]["label"] == alone[i][1]["label"]
    assert end["forwards"] == 2 * k and end["forward_bundles"] < k + k // 2, \
        "the burst was computed in bundles of several packets"


KILL_SPACING_S = 0.5
"""Between two kills of the chaos test: more than a join's deadline (200 ms)."""


@pytest.mark.timeout(180)
def test_window_64_with_neurons_killed_loses_and_duplicates_no_packet(tmp_path):
    """Hidden neurons (each with siblings) are SIGKILLed while 64 learning packets are in flight: every
    packet is answered exactly once (a join goes on without a dead neighbour's part after its deadline).
    Kills are at least ``KILL_SPACING_S`` apart: what waited downstream for a dead neuron's part has gone
    on before the next kill (a neuron killed while it waits loses what it holds, as any dead neuron does --
    at this network's speed 400 packets can pass in 50 ms, and two kills 50 ms apart lost a bundle)."""
    data, window, total = digits(), 64, 3000
    counts: collections.Counter = collections.Counter()
    sent, kills, last_kill = [], 0, float("-inf")
    with running_network(load_topology(), tmp_path) as network:
        victims = [n for layer in network.topology.layers[1:-1] for n in layer.neurons]
        origin = Origin(zmq.Context.instance(), network.run_dir, network.topology, "chaos")
        try:
            in_flight: set = set()
            next_kill = 300  # a kill every 400 packets sent: the same kills however fast the machine is
            deadline = time.monotonic() + 120
            while (len(sent) < total or in_flight) and time.monotonic() < deadline:
                while len(sent) < min(total, next_kill) and len(in_flight) < window:  # a kill due waits its turn
                    i = len(sent) % len(data.targets)
                    packet = origin.send(data.features[i:i + 1], [int(data.targets[i])], learn=True)
                    sent.append(packet)
                    in_flight.add(packet)
                if origin.returns.poll(50):
                    for result in origin.receive():
                        counts[result["packet"]] += 1
                        in_flight.discard(result["packet"])
                if len(sent) >= next_kill and time.monotonic() - last_kill >= KILL_SPACING_S:
                    victim = victims[kills % len(victims)]
                    try:
                        os.kill(neuron_call(network, victim, "status", timeout=2.0)["pid"], signal.SIGKILL)
                        kills, last_kill = kills + 1, time.monotonic()
                        next_kill += 400
                    except Exception:  # a replacement still starting: tried again at the next turn
                        pass
            time.sleep(0.5)  # anything duplicated would come now
            while origin.returns.poll(100):
                for result in origin.receive():
                    counts[result["packet"]] += 1
        finally:
            origin.close()
    assert kills >= 5
    assert [p for p in sent if counts[p] == 0] == [], "lost packets"
    assert [p for p, c in counts.items() if c > 1] == [], "duplicated packets"
    assert set(counts) == set(sent)


@pytest.mark.timeout(180)
@pytest.mark.parametrize("rule", ["delay", "stash"])
def test_pipelined_weights_are_what_one_process_computes_from_the_neurons_journals(tmp_path, rule):
    """400 samples, 16 in flight, through real processes: every neuron's weights equal (1e-5) those of the
    one-process reference that replays the bundles each neuron journaled, with the same staleness rule."""
    rng = np.random.default_rng(11)
    features = rng.random((400, 6), dtype=np.float32)
    targets = (features[:, 0] + features[:, 1] > features[:, 2] * 2).astype(int) + (features[:, 3] > 0.7)
    window, samples = 16, {}
    with running_network(tiny_topology(rule), tmp_path) as network:
        neurons = network.topology.neurons()
        first = {n: params(network, n) for n in neurons}
        for n in neurons:
            neuron_call(network, n, "journal", on=True)
        origin = Origin(zmq.Context.instance(), network.run_dir, network.topology, "exact")
        try:
            in_flight, answered = set(), 0
            for i in range(len(features)):
                while len(in_flight) >= window:
                    for result in origin.receive():
                        in_flight.discard(result["packet"])
                        answered += 1
                packet = origin.send(features[i:i + 1], [int(targets[i])], learn=True)
                samples[packet] = (features[i:i + 1], [int(targets[i])])
                in_flight.add(packet)
            answered += len(answers(origin, len(in_flight)))
        finally:
            origin.close()
        settle(network)
        journals = {n: neuron_call(network, n, "journal", on=False) for n in neurons}
        last = {n: params(network, n) for n in neurons}
    assert answered == len(features)
    assert not any(j["truncated"] for j in journals.values())
    forward = [len(p) for kind, p in journals["C.n0"]["entries"] if kind == "F"]
    assert sum(forward) == len(features) and max(forward) > 1, "packets were in flight together (bundles)"
    reference = ReferencePipeline(tiny_topology(rule), first, rule, group=5)
    reference.replay({n: j["entries"] for n, j in journals.items()}, samples)
    for n, (weights, bias) in reference.params().items():
        assert np.allclose(weights, last[n][0], atol=1e-5) and np.allclose(bias, last[n][1], atol=1e-5), n
        assert not np.allclose(weights, first[n][0], atol=1e-3), f"{n} learnt"
