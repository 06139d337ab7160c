"""Many packets in flight through real neuron processes: bundles answer like single packets, nothing is
lost or duplicated when neurons die, and the weights are exactly what the one-process reference computes."""
import collections
import os
import signal
import time

import numpy as np
import pytest
import zmq

from _netutil import neuron_call, running_network
from neurox.ext import digits
from neurox.ext._origin import Origin
from neurox.neuron import load_topology


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


@pytest.mark.timeout(180)
def test_window_64_with_neurons_killed_loses_and_duplicates_no_packet(tmp_path):
    """Hidden neurons (each with siblings) are SIGKILLed while 64 learning packets are in flight: every
    packet is answered exactly once (a join goes on without a dead neighbour's part after its deadline)."""
    data, window, total = digits(), 64, 3000
    counts: collections.Counter = collections.Counter()
    sent, kills = [], 0
    with running_network(load_topology(), tmp_path) as network:
        victims = [n for layer in network.topology.layers[1:-1] for n in layer.neurons]
        origin = Origin(zmq.Context.instance(), network.run_dir, network.topology, "chaos")
        try:
            in_flight: set = set()
            next_kill = time.monotonic() + 0.3
            deadline = time.monotonic() + 120
            while (len(sent) < total or in_flight) and time.monotonic() < deadline:
                while len(sent) < total and len(in_flight) < window:
                    i = len(sent) % len(data.targets)
                    packet = origin.send(data.features[i:i + 1], [int(data.targets[i])], learn=True)
                    sent.append(packet)
                    in_flight.add(packet)
                if origin.returns.poll(50):
                    for result in origin.receive():
                        counts[result["packet"]] += 1
                        in_flight.discard(result["packet"])
                if time.monotonic() >= next_kill and len(sent) < total:
                    victim = victims[kills % len(victims)]
                    try:
                        os.kill(neuron_call(network, victim, "status", timeout=2.0)["pid"], signal.SIGKILL)
                        kills += 1
                    except Exception:  # a replacement still starting: the next one dies instead
                        pass
                    next_kill = time.monotonic() + 0.3
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
