"""Data safety: a polite stop during heavy learning loses nothing; a SIGKILL mid-flush never tears the
state; a full disk gives clear errors while the network keeps answering, and state resumes after."""
import os
import signal
import subprocess
import threading

import numpy as np
import plyvel
import pytest
import zmq

from _netutil import EventWatcher, neuron_call, params, running_network
from _opsutil import wait_until
from neurox.ext import Client, Stream, digits
from neurox.neuron import Network, load_topology
from neurox.neuron._frames import array_from_wire
from neurox.neuron._persistence import Persistence
from neurox.neuron._state import params_checksum
from neurox.runtime import pack, unpack


def stream_in_background(network: Network, stop: threading.Event) -> threading.Thread:
    def feed():
        stream = Stream(zmq.Context.instance(), network.run_dir, network.topology, digits(), window=8,
                        packet_timeout_s=1.0)
        try:
            stream.run(100, should_stop=stop.is_set)
        finally:
            stream.close()
    thread = threading.Thread(target=feed)
    thread.start()
    return thread


@pytest.mark.timeout(120)
def test_polite_stop_during_heavy_learning_keeps_the_last_in_memory_weights(tmp_path):
    stop = threading.Event()
    with running_network(load_topology(), tmp_path) as network:
        watcher = EventWatcher(network)
        feeder = stream_in_background(network, stop)
        wait_until(lambda: neuron_call(network, "L2.n1", "metrics")["updates"] > 100, 60, "it to learn hard")
        network.stop()  # SIGTERM to the root while packets are in flight; idempotent on exit
        stopped = {}
        while len(stopped) < len(network.topology.neurons()):
            event = watcher.wait_for(lambda e: e["event"] == "neuron_stopped", timeout=30)
            stopped[event["id"]] = event
        watcher.close()
    stop.set()
    feeder.join(30)
    assert all(e["flushed"] for e in stopped.values())
    with running_network(load_topology(), tmp_path, resume=True) as network:
        for neuron_id, event in stopped.items():
            w, b = params(network, neuron_id)
            assert params_checksum(w, b) == event["checksum"], f"{neuron_id} lost updates"


@pytest.mark.timeout(120)
def test_sigkill_during_flushes_never_leaves_a_torn_state(tmp_path):
    topology = load_topology()
    topology.defaults.update(policy="restore", flush_interval_s=0.005)
    stop = threading.Event()
    with running_network(topology, tmp_path) as network:
        feeder = stream_in_background(network, stop)
        watcher = EventWatcher(network)
        flushes_seen = 0
        try:
            for _ in range(12):
                status = wait_until(lambda: (s := neuron_call(network, "L2.n1", "status"))["flushes"] > flushes_seen
                                    and s, 20, "a flush since the last kill")
                flushes_seen = status["flushes"]
                os.kill(status["pid"], signal.SIGKILL)
                event = watcher.wait_for(lambda e: e["event"] == "child_restarted" and e["id"] == "L2.n1")
                restored = event["info"].get("restored")
                assert restored is not None, f"the state was not reopened cleanly: {event['info']}"
                assert restored["flushes"] >= flushes_seen, "at most the flushes after the last status are lost"
        finally:
            stop.set()
            feeder.join(30)
            watcher.close()


@pytest.mark.timeout(120)
def test_a_full_disk_gives_clear_errors_and_state_resumes_when_space_returns(tmp_path):
    disk = tmp_path / "disk"
    disk.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=6m", "tmpfs", str(disk)], check=True)
    stop = threading.Event()
    try:
        topology = load_topology()
        topology.defaults["flush_interval_s"] = 0.05
        with running_network(topology, disk / "data") as network:
            watcher = EventWatcher(network)
            feeder = stream_in_background(network, stop)
            wait_until(lambda: neuron_call(network, "L2.n1", "status")["flushes"] > 0, 20, "learning flushed")
            filler = disk / "filler"
            with open(filler, "wb", buffering=0) as f:
                try:
                    while True:
                        f.write(b"\0" * 65536)
                except OSError:
                    pass  # the disk is full
            failed = watcher.wait_for(lambda e: e["event"] == "flush_failed", timeout=20)
            assert failed["detail"], "the error says what went wrong"
            client = Client(network.messenger_in)
            reply = client.ask(vector=digits().features[0].tolist())
            client.close()
            assert reply["ok"], "the network keeps answering on a full disk"
            assert neuron_call(network, failed["id"], "metrics")["flush_errors"] > 0
            filler.unlink()
            recovered = watcher.wait_for(lambda e: e["event"] == "flush_recovered" and e["id"] == failed["id"],
                                         timeout=20)
            assert recovered["flushes"] > 0
            watcher.close()
            stop.set()
            feeder.join(30)
    finally:
        stop.set()
        subprocess.run(["umount", "-l", str(disk)], check=False)


class _Events:
    def emit(self, event, **fields):
        pass


def _start_after_crash(path: str, siblings: list) -> tuple:
    p = Persistence(path, "n", _Events(), dict(updates=0, flush_errors=0))
    fresh = lambda: (np.ones((3, 2), np.float32), np.zeros(2, np.float32))  # noqa: E731
    started = p.start("replace", False, (3, 2), np.random.default_rng(1), fresh=fresh, relay=lambda w, layout: w,
                      siblings=lambda: siblings, after_crash=True)
    return p, started


@pytest.mark.timeout(30)
def test_a_replacement_after_a_crash_seeds_without_opening_the_dead_database_and_flushes_anew(tmp_path):
    """Policy replace, the supervisor's ``after: "crash"``: the dead run's LevelDB is never opened,
    it is removed behind the start, and the first flush makes a new one."""
    path = str(tmp_path / "neurons" / "n")
    os.makedirs(os.path.dirname(path))
    dead = plyvel.DB(path, create_if_missing=True)
    dead.put(b"flushes", pack(7))
    dead.close()
    sibling = ("n2", np.full((3, 2), 5, np.float32), np.zeros(2, np.float32))
    p, (w, _, origin, saved) = _start_after_crash(path, [sibling])
    assert origin["seeding"]["method"] == "siblings_mean" and origin["seeding"]["reason"] == "replacement"
    assert abs(w - 5).max() < 0.1 and saved is None and p.store is None and p.status()["persistence"] == "ok"
    p.discarding.result()
    assert not os.path.exists(path), "the dead run's database is removed"
    assert p.dirty, "the seeded state is written at the first flush"
    p.flush(lambda: (w, np.zeros(2, np.float32), {}, {"updates": 0}), 1.0)
    assert p.status()["flushes"] == 1, "a new database: the dead run's count of flushes is gone"
    p.close(clean=True)
    reopened = plyvel.DB(path)
    assert np.array_equal(array_from_wire(unpack(reopened.get(b"weights"))), w) and reopened.get(b"clean") == b"1"
    reopened.close()


@pytest.mark.timeout(30)
def test_a_replacement_after_a_crash_with_no_sibling_answering_takes_its_own_last_flush(tmp_path):
    path = str(tmp_path / "neurons" / "n")
    first = Persistence(path, "n", _Events(), dict(updates=1, flush_errors=0))
    first.mark()
    first.flush(lambda: (np.full((3, 2), 3, np.float32), np.zeros(2, np.float32), {}, {"updates": 1}), 1.0)
    first.close(clean=False)  # died: no clean mark
    p, (w, _, origin, saved) = _start_after_crash(path, [])
    assert origin["seeding"]["method"] == "own_last_flush" and (w == 3).all() and saved.flushes == 1
    p.close(clean=False)
