"""``neurox node`` against a test that plays systemd's side of the notify protocol.

``FakeSystemd`` binds a datagram socket of its own, hands its name to the agent as ``$NOTIFY_SOCKET``
with ``$WATCHDOG_USEC``, and reads every message with the sender's credentials (``SO_PASSCRED``), as
systemd does to enforce ``NotifyAccess=main``: each message must come from the agent's own pid.
"""
import contextlib
import os
import pathlib
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
import uuid

import numpy as np
import pytest
import zmq

from neurox.cli import main
from neurox.cli._discovery import find_network
from neurox.cli._node import NodeConfig, peer_summary, starting_topology
from neurox.ext import Client, digits
from neurox.neuron import NeuronStore, Topology, load_topology, neuron_control, topology_path
from neurox.neuron._topology import DIAMOND_TOML
from neurox.runtime import call
from neurox.runtime._sd_notify import Notifier, socket_address, watchdog_interval

DIAMOND = pathlib.Path(DIAMOND_TOML).read_text()
WATCHDOG_USEC = 1_000_000  # the agent pings every 0.5 s
UCRED = struct.Struct("iII")  # struct ucred: pid, uid, gid


class FakeSystemd:
    """The receiving end of ``$NOTIFY_SOCKET``: every message as (arrival time, sender pid, fields)."""

    def __init__(self, address: str):
        self.address = address
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        self.sock.bind(socket_address(address))
        self.messages: list[tuple[float, int, dict]] = []

    def _receive(self, timeout: float) -> bool:
        self.sock.settimeout(max(timeout, 0.001))
        try:
            data, ancillary, _, _ = self.sock.recvmsg(4096, socket.CMSG_SPACE(UCRED.size))
        except TimeoutError:
            return False
        pid = next(UCRED.unpack(d)[0] for level, kind, d in ancillary
                   if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS)
        fields = dict(line.split("=", 1) for line in data.decode().split("\n"))
        self.messages.append((time.monotonic(), pid, fields))
        return True

    def wait_for(self, key: str, value: str | None = None, timeout: float = 30.0, since: float = 0.0) -> dict:
        """The first message after ``since`` that sets ``key`` (to ``value`` if given)."""
        deadline = time.monotonic() + timeout
        while True:
            for t, _, fields in self.messages:
                if t >= since and key in fields and (value is None or value in fields[key]):
                    return fields
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {key}={value or '*'} within {timeout} s; got {self.messages[-10:]}")
            self._receive(left)

    def collect(self, seconds: float) -> list[tuple[float, int, dict]]:
        """Every message that arrives in the next ``seconds``."""
        start = time.monotonic()
        while (left := start + seconds - time.monotonic()) > 0:
            self._receive(left)
        return [m for m in self.messages if m[0] >= start]

    def times_of(self, key: str, messages) -> list[float]:
        return [t for t, _, fields in messages if key in fields]

    def close(self) -> None:
        self.sock.close()
        if self.address.startswith("/"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.address)


@pytest.fixture
def systemd():
    fake = FakeSystemd(f"@neurox-test-{uuid.uuid4().hex}")
    yield fake
    fake.close()


def write_config(tmp_path, **extra) -> str:
    lines = ['name = "diamond"', 'data_dir = "data"'] + [f"{k} = {v!r}".replace("'", '"') for k, v in extra.items()]
    path = tmp_path / "node.toml"
    path.write_text("\n".join(lines) + "\n")
    return str(path)


@contextlib.contextmanager
def running_node(config: str, systemd: FakeSystemd):
    env = {**os.environ, "NOTIFY_SOCKET": systemd.address, "WATCHDOG_USEC": str(WATCHDOG_USEC)}
    proc = subprocess.Popen([sys.executable, "-m", "neurox.cli", "node", "--config", config], env=env)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(30)


# -- the notify protocol itself ------------------------------------------------------------------

def test_notify_socket_addresses():
    assert socket_address("@neurox") == "\0neurox"
    assert socket_address("/run/systemd/notify") == "/run/systemd/notify"
    with pytest.raises(ValueError, match="absolute path or @abstract"):
        socket_address("vsock:2:1234")


def test_watchdog_interval_is_half_of_watchdog_usec_and_only_for_its_pid():
    assert watchdog_interval({"WATCHDOG_USEC": "30000000"}, 42) == 15.0
    assert watchdog_interval({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "42"}, 42) == 15.0
    assert watchdog_interval({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "43"}, 42) is None
    assert watchdog_interval({"WATCHDOG_USEC": "0"}, 42) is None
    assert watchdog_interval({}, 42) is None


@pytest.mark.parametrize("kind", ["abstract", "path"])
def test_notifier_reaches_both_socket_kinds_and_unsets_the_environment(kind, tmp_path):
    address = f"@neurox-test-{uuid.uuid4().hex}" if kind == "abstract" else str(tmp_path / "notify")
    fake = FakeSystemd(address)
    environ = {"NOTIFY_SOCKET": address, "WATCHDOG_USEC": "2000000", "WATCHDOG_PID": str(os.getpid()), "HOME": "/"}
    notifier = Notifier.from_environment(environ)
    try:
        assert environ == {"HOME": "/"}
        assert notifier.enabled and notifier.watchdog == 1.0
        assert notifier.ready("up") and notifier.watchdog_ping() and notifier.stopping("bye")
        assert fake.wait_for("READY", "1", timeout=1) == {"READY": "1", "STATUS": "up"}
        fake.wait_for("WATCHDOG", "1", timeout=1)
        fake.wait_for("STOPPING", "1", timeout=1)
        assert {pid for _, pid, _ in fake.messages} == {os.getpid()}
        with pytest.raises(ValueError, match="one KEY=VALUE line"):
            notifier.send("STATUS=two\nlines")
    finally:
        notifier.close()
        fake.close()


def test_notifier_without_a_socket_does_nothing():
    notifier = Notifier.from_environment({})
    assert not notifier.enabled and notifier.watchdog is None
    assert not notifier.ready("up")
    notifier.close()


def test_notifier_reports_an_unreachable_socket_without_failing(capfd):
    notifier = Notifier(f"\0neurox-test-nobody-{uuid.uuid4().hex}")
    assert not notifier.status("anyone?")
    notifier.close()
    assert "cannot reach" in capfd.readouterr().err


@pytest.mark.timeout(10)
def test_a_notify_socket_nobody_reads_fails_the_send_instead_of_holding_the_service(tmp_path, capfd):
    """A datagram socket holds a few unread messages (``net.unix.max_dgram_qlen``); past them a send
    that waited would hold the agent's loop, and its polite stop, until someone read."""
    deaf = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    deaf.bind(str(tmp_path / "notify"))
    notifier = Notifier(str(tmp_path / "notify"))
    try:
        started = time.monotonic()
        sent = [notifier.status(f"status {i}") for i in range(200)]
        assert time.monotonic() - started < 2.0
        assert sent[0] and not sent[-1], "the first ones queue, the rest fail"
        assert "cannot reach" in capfd.readouterr().err
        assert deaf.recv(100) == b"STATUS=status 0"
    finally:
        notifier.close()
        deaf.close()


# -- the config and the starting shape -----------------------------------------------------------

@pytest.mark.parametrize("text, error", [
    ('data_dir = "d"\n', "name is required"),
    ('name = "x"\n', "data_dir is required"),
    ('name = "x"\ndata_dir = "d"\ncolour = "red"\n', "unknown key 'colour'"),
    ('name = "../x"\ndata_dir = "d"\n', "name must match"),
    ('name = "x"\ndata_dir = 3\n', "data_dir has the wrong type"),
    ('name = "x"\ndata_dir = "d"\nstatus_interval_s = 0\n', "node.toml: status_interval_s: accepted float > 0.0, got 0"),
    ('name = "x"\ndata_dir = "d"\nmetrics_port = "9100"\n', "node.toml: metrics_port has the wrong type: accepted int, got '9100' (str)"),
    ('name = "x\n', "node.toml"),
    ('name = "x"\ndata_dir = "d"\nhost = "h1"\n', "host and keys_dir go together"),
])
def test_a_bad_config_is_refused_with_its_reason(tmp_path, capsys, text, error):
    (tmp_path / "node.toml").write_text(text)
    assert main(["node", "--config", str(tmp_path / "node.toml")]) == 2
    assert error in capsys.readouterr().out


SPREAD = DIAMOND + '\n[hosts]\nh1 = "127.0.0.1"\nh2 = "127.0.0.2"\n'
SPREAD = SPREAD.replace('name = "L0"', 'name = "L0"\nhost = "h1"').replace('name = "L1"', 'name = "L1"\nhost = "h2"')
for _layer in ("L2", "L3", "L4"):
    SPREAD = SPREAD.replace(f'name = "{_layer}"', f'name = "{_layer}"\nhost = "h1"')


@pytest.mark.parametrize("extra, error", [
    ({}, "must say which one this is"),
    ({"host": "h9", "keys_dir": "keys"}, "'h9' is not one of the topology's hosts"),
    ({"host": "h1", "keys_dir": "keys"}, "h1.key_secret"),
])
def test_a_host_must_be_one_of_the_topology_with_its_keys(tmp_path, capsys, extra, error):
    (tmp_path / "shape.toml").write_text(SPREAD)
    assert main(["node", "--config", write_config(tmp_path, topology="shape.toml", **extra)]) == 2
    assert error in capsys.readouterr().out


def test_status_names_the_peers_that_answer():
    assert peer_summary({}) == ""
    assert peer_summary({"h2": True, "h3": False}) == "; peers h2 up, h3 unreachable"


def test_paths_in_the_config_are_relative_to_its_file(tmp_path):
    config = NodeConfig.load(write_config(tmp_path, topology="shape.toml", run_dir="/run/x"))
    assert (config.data_dir, config.topology, config.run_dir) == (
        str(tmp_path / "data"), str(tmp_path / "shape.toml"), "/run/x")


def test_a_pushed_topology_wins_and_an_unchanged_one_keeps_the_live_shape(tmp_path):
    shutil.copy(DIAMOND_TOML, tmp_path / "shape.toml")
    config = NodeConfig.load(write_config(tmp_path, topology="shape.toml"))
    os.makedirs(config.data_dir)
    first = starting_topology(config)
    assert [len(layer.neurons) for layer in first.layers] == [1, 2, 3, 2, 1]
    (tmp_path / "reshaped.toml").write_text(DIAMOND.replace("neurons = 3", "neurons = 4"))
    load_topology(str(tmp_path / "reshaped.toml")).save(topology_path(config.data_dir))  # a live reshape
    assert len(starting_topology(config).layers[2].neurons) == 4  # a restart keeps it
    (tmp_path / "shape.toml").write_text(DIAMOND.replace("neurons = 3", "neurons = 5"))
    assert [len(layer.neurons) for layer in starting_topology(config).layers] == [1, 2, 5, 2, 1]


# -- the agent under a fake systemd --------------------------------------------------------------

def neuron_controls(data_dir: str, run_dir: str) -> dict[str, str]:
    topology = Topology.load(topology_path(data_dir))
    return {n: neuron_control(run_dir, topology, n) for n in topology.neurons()}


@pytest.mark.timeout(120)
def test_ready_watchdog_stopping_and_a_polite_stop_with_state_flushed(tmp_path, systemd, no_stray_processes):
    # No periodic flush during the test: what is on disk after the stop was written by the stop.
    (tmp_path / "shape.toml").write_text(DIAMOND.replace("flush_interval_s = 1.0",
                                                                            "flush_interval_s = 3600.0"))
    config = write_config(tmp_path, topology="shape.toml", status_interval_s=5.0)
    data_dir = str(tmp_path / "data")
    with running_node(config, systemd) as proc:
        ready = systemd.wait_for("READY", "1", timeout=60)
        assert ready["STATUS"] == "diamond: 9/9 neurons alive"
        watchdog = systemd.times_of("WATCHDOG", systemd.collect(2.6))
        assert len(watchdog) >= 4 and max(np.diff(watchdog)) < WATCHDOG_USEC / 1e6
        assert {pid for _, pid, _ in systemd.messages} == {proc.pid}  # NotifyAccess=main holds

        found = find_network(data_dir)  # run.json, as for `neurox ask --data-dir`
        assert found["pid"] == proc.pid
        ctx = zmq.Context.instance()
        assert call(ctx, found["control"], "ping") == "pong"  # the same control API as everywhere
        samples = digits()
        client = Client(found["messenger_in"])
        taught = 20
        try:
            for i in range(taught):
                reply = client.ask(vector=samples.features[i].tolist(), target=int(samples.targets[i]))
                assert reply["ok"], reply
        finally:
            client.close()
        controls = neuron_controls(data_dir, found["run_dir"])
        deadline = time.monotonic() + 10
        while call(ctx, controls["L0.n0"], "metrics")["updates"] < taught:  # the last backward pass lands
            assert time.monotonic() < deadline, "the taught samples never reached L0"
            time.sleep(0.05)
        live = {n: call(ctx, endpoint, "get_params") for n, endpoint in controls.items()}

        started_stop = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert "flushing" in systemd.wait_for("STOPPING", "1", timeout=5, since=started_stop)["STATUS"]
        assert proc.wait(60) == 0
    assert not os.path.exists(tmp_path / "data" / "run.json")
    for neuron, params in live.items():
        store = NeuronStore(os.path.join(data_dir, "neurons", neuron))
        try:
            saved = store.load()
            assert store.was_clean, f"{neuron} was not stopped politely"
            live_weights = np.frombuffer(params["weights"]["data"], "<f4").reshape(params["weights"]["shape"])
            assert np.array_equal(saved.weights, live_weights), f"{neuron}: the stop did not flush its weights"
            assert saved.counters["updates"] == taught
        finally:
            store.close(clean=True)


@pytest.mark.timeout(120)
def test_no_watchdog_while_the_root_supervisor_does_not_answer(tmp_path, systemd, no_stray_processes):
    with running_node(write_config(tmp_path, status_interval_s=5.0), systemd) as proc:
        systemd.wait_for("READY", "1", timeout=60)
        root = call(zmq.Context.instance(), find_network(str(tmp_path / "data"))["control"], "status")["pid"]
        os.kill(root, signal.SIGSTOP)
        try:
            stalled = systemd.collect(0.5)  # one tick in flight may still ping
            stalled = systemd.collect(2.0)
        finally:
            os.kill(root, signal.SIGCONT)
        assert systemd.times_of("WATCHDOG", stalled) == []
        assert any("does not answer" in fields.get("STATUS", "") for _, _, fields in stalled)
        assert len(systemd.times_of("WATCHDOG", systemd.collect(1.5))) >= 2  # healthy again
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0


@pytest.mark.timeout(120)
def test_the_root_supervisor_exiting_escalates_to_systemd(tmp_path, systemd, no_stray_processes):
    with running_node(write_config(tmp_path, status_interval_s=5.0), systemd) as proc:
        systemd.wait_for("READY", "1", timeout=60)
        root = call(zmq.Context.instance(), find_network(str(tmp_path / "data"))["control"], "status")["pid"]
        os.kill(root, signal.SIGKILL)
        assert proc.wait(30) == 1  # Restart=on-failure takes it from here
        systemd.wait_for("STATUS", "the root supervisor died (crash (signal SIGKILL))", timeout=1)
