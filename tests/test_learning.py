"""A network of neuron processes learns online, and survives the death of its neurons."""
import os
import signal

import numpy as np
import pytest

from _netutil import EventWatcher, learn, neuron_call, params, running_network, settle
from neurox.ext import Dataset, digits
from neurox.neuron import Reshaping, load_topology, parse_topology


def xor_dataset(n: int = 3000, seed: int = 0) -> Dataset:
    rng = np.random.default_rng(seed)
    corners = rng.integers(0, 2, size=(n, 2))
    points = corners + rng.normal(0, 0.08, size=(n, 2))
    return Dataset(points.astype(np.float32), (corners[:, 0] ^ corners[:, 1]).astype(np.int64), ["0", "1"])


def xor_topology():
    return parse_topology({
        "name": "xor", "input_width": 2, "defaults": {"units": 8, "learning_rate": 0.1},
        "layer": [{"name": "L0", "neurons": 1}, {"name": "L1", "neurons": 2},
                  {"name": "L2", "neurons": 1, "units": 2, "activation": "softmax"}],
        "output": {"decode": "label", "labels": ["0", "1"]}})


@pytest.mark.timeout(120)
def test_learns_xor_which_no_linear_model_can(tmp_path):
    data = xor_dataset()
    with running_network(xor_topology(), tmp_path) as network:
        progress = learn(network, data, epochs=2, window=1)
    assert progress.answered == 2 * len(data.targets) and progress.lost == 0
    assert progress.rolling_accuracy >= 0.95, progress


@pytest.mark.timeout(120)
def test_xor_with_the_compiled_kernels_too(tmp_path, monkeypatch):
    monkeypatch.setenv("NEUROX_KERNELS", "numba")  # the launcher (and so every neuron) inherits it
    data = xor_dataset(1500, seed=1)
    with running_network(xor_topology(), tmp_path) as network:
        progress = learn(network, data, epochs=2, window=1)
    assert progress.rolling_accuracy >= 0.95, progress


@pytest.mark.timeout(120)
def test_digits_stream_beats_chance_clearly(tmp_path):
    with running_network(load_topology(), tmp_path) as network:
        progress = learn(network, digits(), epochs=1, window=4)
    assert progress.answered == 1797
    assert progress.accuracy > 0.4, progress  # chance is 0.1
    assert progress.rolling_accuracy > 0.6, progress


@pytest.mark.timeout(180)
def test_killed_hidden_neuron_is_replaced_from_its_siblings(tmp_path):
    data = digits()
    with running_network(load_topology(), tmp_path) as network:
        learn(network, data, epochs=1, window=4)
        reshaping = Reshaping(network.reshaper)
        reshaping.set_learning(False)
        settle(network)
        siblings = [params(network, n) for n in ("L2.n0", "L2.n2")]
        old_w, _ = params(network, "L2.n1")
        old_pid = neuron_call(network, "L2.n1", "status")["pid"]
        watcher = EventWatcher(network)
        os.kill(old_pid, signal.SIGKILL)
        seeded = watcher.wait_for(lambda e: e["event"] == "neuron_seeded" and e["id"] == "L2.n1")
        watcher.close()
        assert seeded["method"] == "siblings_mean" and sorted(seeded["siblings"]) == ["L2.n0", "L2.n2"]
        new_w, new_b = params(network, "L2.n1")
        mean_w = np.mean([w for w, _ in siblings], axis=0)
        mean_b = np.mean([b for _, b in siblings], axis=0)
        assert neuron_call(network, "L2.n1", "status")["pid"] != old_pid
        # documented: the mean of the siblings plus N(0, 0.01) noise, so close to it but not equal
        assert np.abs(new_w - mean_w).max() < 0.06 and np.abs(new_b - mean_b).max() < 0.06
        assert not np.array_equal(new_w, mean_w)
        assert np.abs(new_w - old_w).max() > 0.06, "the dead neuron's own weights must not come back"
        reshaping.set_learning(True)
        reshaping.close()
        after = learn(network, data, epochs=1, window=4)
    assert after.lost == 0
    assert after.rolling_accuracy > 0.6, after


@pytest.mark.timeout(120)
def test_restore_policy_brings_back_exactly_the_flushed_weights(tmp_path):
    topology = load_topology()
    topology.defaults["policy"] = "restore"
    with running_network(topology, tmp_path) as network:
        learn(network, digits(), epochs=1, window=4)
        reshaping = Reshaping(network.reshaper)
        reshaping.set_learning(False)
        reshaping.close()
        settle(network)
        neuron_call(network, "L2.n1", "snapshot")
        flushed_w, flushed_b = params(network, "L2.n1")
        watcher = EventWatcher(network)
        os.kill(neuron_call(network, "L2.n1", "status")["pid"], signal.SIGKILL)
        started = watcher.wait_for(lambda e: e["event"] == "child_restarted" and e["id"] == "L2.n1")
        watcher.close()
        assert started["info"]["restored"]["after"] == "crash"
        restored_w, restored_b = params(network, "L2.n1")
    assert np.array_equal(restored_w, flushed_w) and np.array_equal(restored_b, flushed_b)


@pytest.mark.timeout(120)
def test_polite_stop_then_restart_loses_no_update(tmp_path):
    data = digits()
    topology = load_topology()
    topology.defaults["flush_interval_s"] = 30.0  # nothing but the polite stop flushes
    with running_network(topology, tmp_path) as network:
        learn(network, data, epochs=1, window=4)
        settle(network)
        before = {n: params(network, n) for n in network.topology.neurons()}
    with running_network(load_topology(), tmp_path, resume=True) as network:
        after = {n: params(network, n) for n in network.topology.neurons()}
        statuses = {n: neuron_call(network, n, "status")["started"] for n in network.topology.neurons()}
    for neuron_id, (w, b) in before.items():
        assert np.array_equal(after[neuron_id][0], w) and np.array_equal(after[neuron_id][1], b), neuron_id
        assert statuses[neuron_id]["restored"]["after"] == "polite stop"
