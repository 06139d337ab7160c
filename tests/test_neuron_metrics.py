"""A neuron's metrics follow its weights: the figures of its weights are computed again only when the
weights change (new weights, an update), and then they are the new weights' figures (real processes);
the resident memory each process reports is its own."""
import os

import numpy as np
import pytest

from _netutil import neuron_call, params, running_network
from _opsutil import wait_until
from neurox.ext import Client, digits
from neurox.neuron import load_topology
from neurox.neuron._frames import array_to_wire
from neurox.runtime import rss_bytes

pytestmark = pytest.mark.usefixtures("no_stray_processes")


def weight_figures(network, neuron_id: str) -> tuple[dict, dict]:
    metrics = neuron_call(network, neuron_id, "metrics")
    return metrics["weights"], metrics["link_rms"]


@pytest.mark.timeout(60)
def test_the_weight_figures_of_the_metrics_follow_new_weights_and_updates(tmp_path):
    with running_network(load_topology(), tmp_path / "data") as network:
        figures, rms = weight_figures(network, "L1.n0")
        w, _ = params(network, "L1.n0")
        assert figures["mean"] == pytest.approx(float(w.mean()), abs=1e-6)
        assert weight_figures(network, "L1.n0") == (figures, rms)  # nothing changed: the same figures

        new = np.linspace(-1.0, 1.0, w.size, dtype=np.float32).reshape(w.shape)
        neuron_call(network, "L1.n0", "set_params", weights=array_to_wire(new))
        figures, rms = weight_figures(network, "L1.n0")
        assert (figures["min"], figures["max"]) == (pytest.approx(-1.0), pytest.approx(1.0))
        assert figures["histogram"] == np.histogram(new, bins=10)[0].tolist()
        assert rms == {"L0.n0": pytest.approx(float(np.sqrt(np.mean(new ** 2))), rel=1e-5)}

        client = Client(network.messenger_in)
        try:
            sample = digits()
            for i in range(5):
                assert client.ask(vector=sample.features[i].tolist(), target=int(sample.targets[i]))["ok"]
        finally:
            client.close()
        wait_until(lambda: settled(network, "L1.n0"), timeout=10)  # the answers come before the gradients
        learnt, _ = params(network, "L1.n0")
        assert not np.array_equal(learnt, new), "the asks were learnt from"
        figures, _ = weight_figures(network, "L1.n0")
        assert figures["mean"] == pytest.approx(float(learnt.mean()), abs=1e-7)
        assert figures["std"] == pytest.approx(float(learnt.std()), abs=1e-7)


def settled(network, neuron_id: str) -> bool:
    """Every gradient of the asks came back and was learnt from (nothing kept, nothing pending)."""
    metrics = neuron_call(network, neuron_id, "metrics")
    return metrics["updates"] >= 5 and metrics["kept"] == 0 and metrics["pending_gradients"] == 0


@pytest.mark.timeout(30)
def test_own_resident_memory_is_each_process_own_also_after_a_fork():
    """``rss_bytes()`` keeps its own /proc file open: a forked child must read its own, not its parent's."""
    before = rss_bytes()
    assert before == rss_bytes(os.getpid()) and before > 0
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child grows by 64 MiB it touches, and says what it read of itself
        start = rss_bytes()
        grown = bytearray(64 << 20)
        grown[::4096] = b"x" * len(range(0, len(grown), 4096))
        os.write(write, f"{start} {rss_bytes()} {rss_bytes(os.getpid())}".encode())
        os._exit(0)
    os.close(write)
    start, own, by_pid = map(int, os.read(read, 100).split())
    os.close(read)
    os.waitpid(pid, 0)
    assert abs(own - by_pid) < (4 << 20) and own >= start + (60 << 20)
    assert rss_bytes() < before + (32 << 20), "the parent reads its own memory, not its child's"
    assert rss_bytes(pid) is None, "a process gone has no memory to read"
