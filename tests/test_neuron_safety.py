"""A neuron survives bad numbers and a full disk, with real processes, sockets and LevelDB.

Numerical safety (issue 17): a nan or inf arriving at a neuron is refused and counted; an input so
large that its update cannot be computed is refused; a regression target of raw magnitude is
clipped -- every time the pid stays, every weight stays finite, and the next packet is answered.
A full disk (issue 18): a replacement on a filesystem with no space left serves from memory,
reports ``persistence: degraded``, and persists again once space returns.
"""
import os
import signal
import subprocess

import numpy as np
import plyvel
import pytest
import zmq

from _netutil import EventWatcher, neuron_call, params, running_network
from _opsutil import wait_until
from neurox.ext import Client, digits
from neurox.neuron import inbox_endpoint, load_topology, parse_topology
from neurox.neuron import _frames as frames
from neurox.runtime import pack, unpack

pytestmark = pytest.mark.usefixtures("no_stray_processes")


def pids(network) -> dict[str, int]:
    return {n: neuron_call(network, n, "status")["pid"] for n in network.topology.neurons()}


def all_finite(network) -> bool:
    return all(np.isfinite(w).all() and np.isfinite(b).all() for w, b in (params(network, n) for n in network.topology.neurons()))


@pytest.mark.timeout(90)
def test_nan_and_inf_reaching_a_neuron_are_refused_and_counted_and_it_keeps_serving(tmp_path):
    with running_network(load_topology(), tmp_path / "data") as network:
        before = pids(network)
        push = zmq.Context.instance().socket(zmq.PUSH)
        push.setsockopt(zmq.LINGER, 1000)
        push.connect(inbox_endpoint(network.run_dir, "L0.n0"))
        good, nan, inf = (np.zeros((1, 64), np.float32), np.full((1, 64), np.nan, np.float32),
                          np.full((1, 64), np.inf, np.float32))
        meta = pack({"targets": [3]})
        push.send(frames.encode_forward("input", [901, 902, 903], [nan, good, inf], [True] * 3, [meta] * 3))
        push.close()
        metrics = wait_until(lambda: (m := neuron_call(network, "L0.n0", "metrics"))["non_finite_inputs"] == 2 and m,
                           what="the two refused packets counted")
        assert metrics["bad_frames_by_kind"].get("non_finite") == 1, "one frame, logged once"
        wait_until(lambda: neuron_call(network, "L4.n0", "metrics")["forwards"] >= 1, what="the good packet of the bundle")
        client = Client(network.messenger_in)
        try:
            reply = client.ask(vector=digits().features[0].tolist(), target=int(digits().targets[0]))
        finally:
            client.close()
        assert reply["ok"] and np.isfinite(reply["output"]).all(), reply
        assert pids(network) == before and all_finite(network)


@pytest.mark.timeout(90)
def test_an_input_too_large_to_learn_from_is_refused_and_the_network_keeps_answering(tmp_path):
    topology = load_topology()
    topology.input = {"scale": "none"}  # MessengerIn would standardise it: the neuron's own guard is tested
    with running_network(topology, tmp_path / "data") as network:
        before = pids(network)
        watcher = EventWatcher(network)
        client = Client(network.messenger_in)
        try:
            reply = client.ask(vector=[1e30] * 64, target=3)  # finite, but its gradient's norm is not
            assert reply["ok"], reply
            event = watcher.wait_for(lambda e: e["event"] == "update_refused", timeout=10)
            assert event["id"] == "L0.n0" and event["refused"] >= 1 and "non-finite" in event["reason"]
            assert neuron_call(network, "L0.n0", "metrics")["refused_updates"] >= 1
            assert all_finite(network), "nothing non-finite reached a weight"
            x = digits().features[1].tolist()
            for _ in range(3):
                assert client.ask(vector=x, target=int(digits().targets[1]))["ok"]
        finally:
            client.close()
            watcher.close()
        metrics = neuron_call(network, "L0.n0", "metrics")
        assert metrics["weights"]["non_finite"] == 0 and len(metrics["weights"]["histogram"]) == 10
        assert pids(network) == before


@pytest.mark.timeout(120)
def test_regression_targets_of_raw_magnitude_are_clipped_and_every_weight_stays_finite(tmp_path):
    topology = parse_topology({"name": "reg", "input_width": 6, "output": {"decode": "vector"},
                               "input": {"scale": "none"},  # raw magnitudes reach the neurons: their guard is tested
                               "layer": [{"name": "L0", "neurons": 1, "units": 8},
                                         {"name": "L1", "neurons": 1, "units": 1, "activation": "linear"}]})
    rng = np.random.default_rng(3)
    w_true = rng.normal(0, 1, 6)
    with running_network(topology, tmp_path / "data") as network:
        before = pids(network)
        client = Client(network.messenger_in)
        losses = []
        try:
            for _ in range(300):
                x = rng.normal(0, 1, 6)
                reply = client.ask(vector=x.tolist(), target=[float(1000 + 300 * x @ w_true)])
                assert reply["ok"], reply
                losses.append(reply["loss"])
        finally:
            client.close()
        end = neuron_call(network, "L1.n0", "metrics")
        assert end["clipped_updates"] > 0 and end["refused_updates"] == 0, end
        assert all(loss is not None and np.isfinite(loss) for loss in losses)
        assert np.mean(losses[-50:]) < 0.5 * np.mean(losses[:50]), "it still learns, only with bounded steps"
        assert all_finite(network) and pids(network) == before


# -- a full disk ---------------------------------------------------------------------------------------------------
def fill(path) -> None:
    with open(path, "wb", buffering=0) as f:
        try:
            while True:
                f.write(b"\0" * 65536)
        except OSError:
            pass
    with open(str(path) + ".tail", "wb", buffering=0) as f:  # the last few blocks
        try:
            while True:
                f.write(b"\0" * 512)
        except OSError:
            pass


def saved_weights(db_path: str) -> np.ndarray:
    db = plyvel.DB(db_path)
    try:
        value = unpack(db.get(b"weights"))
    finally:
        db.close()
    return frames.array_from_wire(value)


@pytest.mark.timeout(120)
def test_a_replacement_on_a_full_disk_serves_from_memory_and_persists_when_space_returns(tmp_path):
    disk = tmp_path / "disk"
    disk.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(disk)], check=True)
    try:
        topology = load_topology()
        topology.defaults["flush_interval_s"] = 0.05
        with running_network(topology, disk / "data") as network:
            watcher = EventWatcher(network)
            client = Client(network.messenger_in)
            x, label = digits().features[2].tolist(), int(digits().targets[2])
            assert client.ask(vector=x, target=label)["ok"]
            wait_until(lambda: neuron_call(network, "L2.n1", "snapshot")["flushes"] >= 1, what="a first flush")
            wait_until(lambda: neuron_call(network, "L2.n0", "status")["uptime_s"] > 1.2, what="siblings to seed from")
            db_path = os.path.join(network.data_dir, "neurons", "L2.n1")
            fill(disk / "filler")
            old = neuron_call(network, "L2.n1", "status")["pid"]
            os.kill(old, signal.SIGKILL)
            status = wait_until(lambda: (s := neuron_call(network, "L2.n1", "status"))["pid"] != old and s,
                                what="the replacement")
            assert status["started"]["seeding"]["method"] == "siblings_mean", "seeded from siblings as usual"
            wait_until(lambda: (s := neuron_call(network, "L2.n1", "status"))["flushes"] or s["persistence"] != "ok",
                       what="its first flush, after the dead run's database was removed")
            fill(disk / "refill")  # removing its predecessor's database freed some space: full again
            for _ in range(5):
                reply = client.ask(vector=x, target=label)
                assert reply["ok"], reply
            event = watcher.wait_for(lambda e: e["event"] == "flush_failed" and e["id"] == "L2.n1", timeout=20)
            assert event["persistence"] == "degraded" and event["detail"]
            status = neuron_call(network, "L2.n1", "status")
            assert status["persistence"] == "degraded" and "No space left" in status["persistence_detail"]
            assert neuron_call(network, "L2.n1", "metrics")["persistence"] == "degraded"
            in_memory, _ = params(network, "L2.n1")
            for name in ("filler", "refill"):
                os.unlink(disk / name)
                os.unlink(str(disk / name) + ".tail")
            recovered = watcher.wait_for(lambda e: e["event"] == "flush_recovered" and e["id"] == "L2.n1", timeout=20)
            assert recovered["persistence"] == "ok" and recovered["flushes"] >= 1
            assert neuron_call(network, "L2.n1", "status")["persistence"] == "ok"
            client.close()
            watcher.close()
            in_memory, _ = params(network, "L2.n1")
        # the network stopped politely: what its DB gives back is what it held in memory
        assert np.array_equal(saved_weights(db_path), in_memory)
        assert not os.path.exists(disk / "filler")
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)
