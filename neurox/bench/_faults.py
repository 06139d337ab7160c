"""The faults ``neurox bench chaos`` injects, each a small function of a running :class:`Host`.

A :class:`Host` holds one network on a fixed run directory and data directory and, like systemd's
``Restart=on-failure`` above ``neurox node``, starts it again (from its flushed state) whenever it has
ended, for whatever reason. Clients and the learning stream reach the same endpoints across restarts.
"""
from __future__ import annotations

import os
import random
import signal
import subprocess
import time
from dataclasses import dataclass, field

import psutil

from ..ext import PRELOAD, messenger_children
from ..neuron import Network, Topology
from ..runtime import SPARE_NAME, ControlError
from ..supervisor_tree import SupervisorClient, control_endpoint

FAULTS = ("neurons", "layer", "sigstop", "messengers", "launcher", "root", "disk", "sigterm")


@dataclass
class Host:
    """One host's network, restarted whenever it ends (``restarts`` counts them)."""

    topology: Topology
    data_dir: str
    run_dir: str
    timeout_ms: int = 2000
    network: Network | None = None
    restarts: int = 0
    start_failures: list[str] = field(default_factory=list)

    def start(self) -> None:
        self.network = Network(self.topology, self.data_dir, run_dir=self.run_dir, resume=True, preload=PRELOAD,
                               extensions=messenger_children(self.data_dir, timeout_ms=self.timeout_ms))
        self.network.start()

    def keep_up(self) -> bool:
        """Start the network again if it has ended; True if it had (the caller may want to know)."""
        if self.network is not None and self.network.tree.alive:
            return False
        if self.network is not None:
            self.network.stop()
        try:
            self.start()
        except Exception as exc:  # noqa: BLE001 -- a failed start is retried at the next call, as systemd would
            self.start_failures.append(str(exc))
            self.network = None
            return True
        self.restarts += 1
        return True

    def wait_healthy(self, timeout: float = 60.0) -> bool:
        """Wait until the network is up and every child of its root is running (the keeper restarts it)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            network = self.network  # the keeper's thread alone talks to the tree's launcher
            if network is not None:
                client = SupervisorClient(network.control, timeout=1.0)
                try:
                    if all(isinstance(c["pid"], int) for c in client.which_children()):
                        return True
                except ControlError:
                    pass
                finally:
                    client.close()
            time.sleep(0.1)
        return False

    def stop(self) -> None:
        if self.network is not None:
            self.network.stop()
            self.network = None

    def child_pid(self, supervisor_path: str, child_id: str) -> int | None:
        client = SupervisorClient(control_endpoint(self.run_dir, supervisor_path), timeout=2.0)
        try:
            return next((c["pid"] for c in client.which_children() if c["id"] == child_id
                         and isinstance(c["pid"], int)), None)
        except ControlError:
            return None
        finally:
            client.close()

    def neuron_pid(self, neuron: str) -> int | None:
        topology = self.network.topology
        return self.child_pid(topology.supervisor_path(topology.layer_of(neuron).name), neuron)


def _signal(pid: int | None, sig: int) -> bool:
    if pid is None:
        return False
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        return False
    return True


def _repeat(seconds: float, pause: float, act) -> int:
    """``act()`` then a ``pause``, again and again for ``seconds``; how many acts took (``act`` says)."""
    done = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        done += act()
        time.sleep(pause)
    return done


def kill_neurons(host: Host, rng: random.Random, seconds: float) -> int:
    """SIGKILL a random neuron every 250 ms."""
    return _repeat(seconds, 0.25,
                   lambda: _signal(host.neuron_pid(rng.choice(host.network.topology.neurons())), signal.SIGKILL))


def kill_layer(host: Host, rng: random.Random, seconds: float) -> int:
    """SIGKILL a whole layer (its supervisor, which takes its neurons) every 3 s."""
    def kill() -> bool:
        topology = host.network.topology
        path = topology.supervisor_path(rng.choice(topology.layers).name)
        return _signal(host.child_pid(*path.rsplit("/", 1)), signal.SIGKILL)
    return _repeat(seconds, 3.0, kill)


def freeze_neuron(host: Host, rng: random.Random, seconds: float) -> int:
    """SIGSTOP a random neuron for 3 s, then SIGCONT it, for the fault's length."""
    def freeze() -> bool:
        pid = host.neuron_pid(rng.choice(host.network.topology.neurons()))
        if not _signal(pid, signal.SIGSTOP):
            return False
        time.sleep(3.0)
        _signal(pid, signal.SIGCONT)
        return True
    return _repeat(seconds, 0.5, freeze)


def kill_messengers(host: Host, rng: random.Random, seconds: float) -> int:
    """SIGKILL MessengerOut, MessengerIn, MessengerOut, MessengerIn, 1 s apart (this exceeds the root's
    restart intensity of 3 in 5 s: the root gives up, and the host starts the network again)."""
    kills = 0
    for child in ("messenger_out", "messenger_in", "messenger_out", "messenger_in"):
        host.wait_healthy()
        kills += _signal(host.child_pid("root", child), signal.SIGKILL)
        time.sleep(1.0)
    time.sleep(max(0.0, seconds - 4.0))
    return kills


def kill_launcher(host: Host, rng: random.Random, seconds: float) -> int:
    """SIGKILL the launcher (the fork server): the host's whole tree dies with it, and comes back."""
    killed = _signal(host.network.tree.launcher_proc.pid if host.network.tree.launcher_proc else None, signal.SIGKILL)
    time.sleep(seconds)
    return int(killed)


def kill_root(host: Host, rng: random.Random, seconds: float) -> int:
    """SIGKILL the root supervisor: the tree under it dies, and the host starts it again."""
    killed = _signal(host.network.tree.root_pid, signal.SIGKILL)
    time.sleep(seconds)
    return int(killed)


def polite_stop(host: Host, rng: random.Random, seconds: float) -> int:
    """SIGTERM the root supervisor (a polite stop: every neuron flushes); then the host starts it again."""
    stopped = _signal(host.network.tree.root_pid, signal.SIGTERM)
    time.sleep(seconds)
    return int(stopped)


def fill_disk(host: Host, rng: random.Random, seconds: float) -> int:
    """Fill the data directory's filesystem, SIGKILL a neuron (its replacement cannot open its LevelDB
    and must serve from memory), wait, then free the space again."""
    filler = os.path.join(host.data_dir, "..", "filler")
    try:
        with open(filler, "wb") as f:
            while True:
                f.write(b"\0" * (1 << 20))
                f.flush()
    except OSError:
        pass
    try:
        kills = _signal(host.neuron_pid(rng.choice(host.network.topology.neurons())), signal.SIGKILL)
        time.sleep(seconds)
    finally:
        os.unlink(filler)
    return int(kills)


APPLY = {"neurons": kill_neurons, "layer": kill_layer, "sigstop": freeze_neuron, "messengers": kill_messengers,
         "launcher": kill_launcher, "root": kill_root, "disk": fill_disk, "sigterm": polite_stop}


class SmallDisk:
    """A small tmpfs for the data directory (the ``disk`` fault fills it); root only."""

    def __init__(self, path: str, size_mb: int = 64):
        self.path = path
        os.makedirs(path, exist_ok=True)
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_mb}m", "tmpfs", path], check=True, timeout=30)

    def close(self) -> None:
        subprocess.run(["umount", "-l", self.path], timeout=30)


class Burners:
    """``count`` processes that burn a core each: the busy machine the issue saw accuracy stay down on."""

    def __init__(self, count: int):
        self.procs = [subprocess.Popen(["python3", "-c", "while True: pass"]) for _ in range(count)]

    def close(self) -> None:
        for proc in self.procs:
            proc.kill()
            proc.wait()


def orphans(host: Host) -> int:
    """Processes of the launcher that the tree does not know of (the launcher's spare aside)."""
    known = {host.network.tree.root_pid, host.network.tree.bus_pid}
    stack = [host.network.control]
    while stack:
        client = SupervisorClient(stack.pop(), timeout=5.0)
        try:
            for child in client.which_children():
                if isinstance(child["pid"], int):
                    known.add(child["pid"])
                    if child["type"] == "supervisor":
                        stack.append(child["control"])
        except ControlError:
            pass
        finally:
            client.close()
    children = {p.pid for p in psutil.Process(host.network.tree.launcher_proc.pid).children()
                if p.name() != SPARE_NAME}
    return len(children - known)
