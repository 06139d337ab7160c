"""CURVE keys, the ZAP allow-list, host placement and the TCP plan: the pure parts directly, then
real sockets on loopback (a plain ipc bind and its CURVE TCP twin on one socket)."""
import errno
import os
import shutil
import subprocess
import sys

import pytest
import zmq
from zmq.utils import z85

from neurox.cli import main
from neurox.neuron import Topology, TopologyError, parse_topology
from neurox.neuron._placement import front_host, layers_on, maintenance_host, parse_address, tcp_exports, tcp_routes
from neurox.runtime import CurveKeys, KeysError, Route, create_keys, make_socket, nothing_listens, write_tcp_plan
from neurox.runtime._curve import connect_curve, zap_reply

pytestmark = pytest.mark.timeout(20)

SPREAD = {
    "name": "spread", "input_width": 4,
    "hosts": {"h1": "10.0.0.1", "h2": "10.0.0.2:9000"},
    "layer": [{"name": "A", "neurons": 2, "host": "h1"}, {"name": "B", "neurons": 1, "host": "h2"},
              {"name": "C", "neurons": 1, "units": 2, "activation": "softmax", "host": "h1"}],
}


def zap_request(public: bytes, mechanism: bytes = b"CURVE") -> list[bytes]:
    return [b"1.0", b"42", b"", b"10.0.0.9", b"", mechanism, z85.decode(public)]


def test_zap_admits_exactly_the_allowed_keys():
    allowed_public, _ = zmq.curve_keypair()
    other_public, _ = zmq.curve_keypair()
    allowed = frozenset({allowed_public})
    assert zap_reply(zap_request(allowed_public), allowed)[2:5] == [b"200", b"OK", allowed_public]
    assert zap_reply(zap_request(other_public), allowed)[2] == b"400"
    assert zap_reply([b"1.0", b"42", b"", b"10.0.0.9", b"", b"NULL"], allowed)[2] == b"400"
    assert zap_reply([b"2.0", b"42", b"", b"", b"", b"CURVE", b"x" * 32], allowed)[2] == b"500"
    assert zap_reply([b"1.0"], allowed)[2] == b"500"


def test_keys_are_made_once_with_a_private_secret_that_is_never_shown(tmp_path, capsys):
    assert main(["keys", "--dir", str(tmp_path / "k"), "h1"]) == 0
    first = (tmp_path / "k" / "h1.key_secret").read_bytes()
    assert main(["keys", "--dir", str(tmp_path / "k"), "h1"]) == 0  # kept, not replaced
    assert (tmp_path / "k" / "h1.key_secret").read_bytes() == first
    assert os.stat(tmp_path / "k" / "h1.key_secret").st_mode & 0o777 == 0o600
    assert main(["keys", "--dir", str(tmp_path / "k"), "../h2"]) == 2
    assert os.stat(tmp_path / "k" / "allowed").st_mode & 0o777 == 0o750, "the allow-list to fill is made too"
    assert os.listdir(tmp_path / "k" / "allowed") == []
    shutil.copy(tmp_path / "k" / "h1.key", tmp_path / "k" / "allowed" / "h1.key")
    keys = CurveKeys.load(str(tmp_path / "k"), "h1")
    assert keys.secret.decode() not in repr(keys) + capsys.readouterr().out
    assert keys.allowed == {keys.public} and keys.server_key("h1") == keys.public
    with pytest.raises(KeysError, match="h9.key_secret"):
        CurveKeys.load(str(tmp_path / "k"), "h9")


def test_placement_gives_every_host_the_same_ports():
    topology = parse_topology(SPREAD)
    assert parse_address("10.0.0.2:9000") == ("10.0.0.2", 9000) and parse_address("h") == ("h", 7600)
    assert front_host(topology) == "h1"
    assert layers_on(topology, "h1") == ["A", "C"] and layers_on(topology, None) == ["A", "B", "C"]
    assert tcp_exports(topology, "h1") == {"root.ctl": "tcp://10.0.0.1:7600", "messenger.in": "tcp://10.0.0.1:7601",
                                           "events.pub": "tcp://10.0.0.1:7602", "events.ctl": "tcp://10.0.0.1:7603",
                                           "A.n0.in": "tcp://10.0.0.1:7700", "A.n1.in": "tcp://10.0.0.1:7701",
                                           "C.n0.in": "tcp://10.0.0.1:7900", "root.A.A.n0.ctl": "tcp://10.0.0.1:8000",
                                           "root.A.A.n1.ctl": "tcp://10.0.0.1:8001", "root.C.C.n0.ctl": "tcp://10.0.0.1:8200"}
    assert tcp_exports(topology, "h2") == {"root.ctl": "tcp://10.0.0.2:9000", "events.pub": "tcp://10.0.0.2:9002",
                                           "events.ctl": "tcp://10.0.0.2:9003", "B.n0.in": "tcp://10.0.0.2:9200",
                                           "root.B.B.n0.ctl": "tcp://10.0.0.2:9500"}
    assert tcp_routes(topology, "h2") == {"A.n0.in": Route("tcp://10.0.0.1:7700", "h1"),
                                          "A.n1.in": Route("tcp://10.0.0.1:7701", "h1"),
                                          "C.n0.in": Route("tcp://10.0.0.1:7900", "h1"),
                                          "root.A.A.n0.ctl": Route("tcp://10.0.0.1:8000", "h1"),
                                          "root.A.A.n1.ctl": Route("tcp://10.0.0.1:8001", "h1"),
                                          "root.C.C.n0.ctl": Route("tcp://10.0.0.1:8200", "h1")}
    assert maintenance_host(topology) == "h1"  # no [maintenance] host: the front host
    sleepy = parse_topology({**SPREAD, "maintenance": {"host": "h2"}})
    assert maintenance_host(sleepy) == "h2"
    assert tcp_exports(sleepy, "h2")["hippocampus.in"] == "tcp://10.0.0.2:9004"
    assert tcp_routes(sleepy, "h1")["hippocampus.in"] == Route("tcp://10.0.0.2:9004", "h2")
    assert "hippocampus.in" not in tcp_exports(sleepy, "h1") and "hippocampus.in" not in tcp_routes(sleepy, "h2")
    again = Topology.from_dict(topology.to_dict())
    assert again.hosts == SPREAD["hosts"] and tcp_routes(again, "h1") == tcp_routes(topology, "h1")
    assert parse_topology(topology.to_toml_dict()).to_dict() == topology.to_dict()


@pytest.mark.parametrize("change, error", [
    (lambda d: d["layer"][1].update(host="h7"), "must name one of the hosts"),
    (lambda d: d["layer"][1].pop("host"), "must name one of the hosts"),
    (lambda d: d.pop("hosts"), "no \\[hosts\\] table"),
    (lambda d: d["hosts"].update(h2="10.0.0.2:65500"), "do not fit"),
    (lambda d: d["hosts"].update(h2="10.0.0.2:x"), "ADDRESS:PORT"),
    (lambda d: d["hosts"].update({"../h3": "10.0.0.3"}), "a host name must match"),
    (lambda d: d.update(maintenance={"host": "h9"}), "\\[maintenance\\] host must be one of the hosts"),
])
def test_a_bad_placement_is_refused_with_its_reason(change, error):
    doc = {**SPREAD, "hosts": dict(SPREAD["hosts"]), "layer": [dict(l) for l in SPREAD["layer"]]}
    change(doc)
    with pytest.raises(TopologyError, match=error):
        parse_topology(doc)


def bind_with_a_free_twin(ctx, keys_dir, server_run, client_run, attempts: int = 5):
    """A PULL bound at ``server_run``'s x.in with a TCP twin on a free port (another process may take
    the port between finding it free and binding it: then try another)."""
    for attempt in range(attempts):
        with ctx.socket(zmq.PULL) as probe:
            twin = f"tcp://127.0.0.1:{probe.bind_to_random_port('tcp://127.0.0.1')}"
        write_tcp_plan(str(server_run), "h1", keys_dir, {"x.in": twin}, {})
        write_tcp_plan(str(client_run), "h1", keys_dir, {}, {"x.in": Route(twin, "h1")})
        try:
            return make_socket(ctx, zmq.PULL, bind=f"ipc://{server_run}/x.in"), twin
        except zmq.ZMQError as error:
            if error.errno != errno.EADDRINUSE or attempt == attempts - 1:
                raise


def test_an_exported_ipc_endpoint_gets_a_curve_twin_and_a_routed_one_is_reached_over_it(tmp_path):
    """One PULL: its ipc bind stays plain for local peers, its TCP twin lets in only allowed keys;
    a PUSH asking for the ipc endpoint of another host's run directory lands on the TCP twin."""
    keys_dir, client_dir = str(tmp_path / "keys"), str(tmp_path / "client")
    public, _ = create_keys(keys_dir, "h1")
    create_keys(client_dir, "h2")
    os.makedirs(tmp_path / "keys" / "allowed")
    shutil.copy(public, tmp_path / "keys" / "allowed" / "h1.key")
    os.makedirs(tmp_path / "client" / "allowed")
    shutil.copy(public, tmp_path / "client" / "allowed" / "h1.key")
    server_run, client_run = tmp_path / "run1", tmp_path / "run2"
    server_run.mkdir()
    client_run.mkdir()
    ctx = zmq.Context()
    sockets = []
    try:
        inbox, twin = bind_with_a_free_twin(ctx, keys_dir, server_run, client_run)
        sockets.append(inbox)
        local = make_socket(ctx, zmq.PUSH, connect=f"ipc://{server_run}/x.in")
        routed = make_socket(ctx, zmq.PUSH, connect=f"ipc://{client_run}/x.in")  # -> the TCP twin, as h1
        stranger = make_socket(ctx, zmq.PUSH, connect=twin)
        keys = CurveKeys.load(client_dir, "h2")  # a real key pair, just not on the allow-list
        unlisted = make_socket(ctx, zmq.PUSH)
        connect_curve(unlisted, keys.client_options(keys.server_key("h1")))
        unlisted.connect(twin)
        sockets += [local, routed, stranger, unlisted]
        for sock, body in ((stranger, b"plain"), (unlisted, b"unlisted"), (local, b"local"), (routed, b"routed")):
            sock.send(body)
        got = set()
        while inbox.poll(1500):
            got.add(inbox.recv())
        assert got == {b"local", b"routed"}
        # who can tell that nobody listens (a probe, before it waits for an answer): not of a routed endpoint
        assert not nothing_listens(f"ipc://{client_run}/x.in") and not nothing_listens(f"ipc://{server_run}/x.in")
        assert nothing_listens(f"ipc://{client_run}/y.in") and not nothing_listens(twin)
    finally:
        for sock in sockets:
            sock.close(linger=0)
        ctx.term()  # returns: the ZAP thread ends with its context


ZAP_STOPS = """
import threading, time, zmq
from neurox.runtime import CurveKeys  # noqa: F401 (the package, as a process imports it)
from neurox.runtime._curve import ZapHandler
for _ in range(30):
    ctx = zmq.Context()
    ZapHandler.ensure(ctx, frozenset())
    time.sleep(0.01)  # the handler thread is blocked in its recv
    closer = threading.Thread(target=ctx.destroy, daemon=True)  # what every process does on its way out
    closer.start()
    closer.join(5)
    assert not closer.is_alive(), "ctx.destroy() hung"
print("stopped 30 of 30")
"""


@pytest.mark.timeout(60)
def test_a_process_with_a_zap_handler_ends_its_context_cleanly_every_time():
    """ctx.destroy() on the way out must not close the ZAP thread's socket from another thread (libzmq
    aborted with 'Assertion failed: pfd.revents & POLLIN', or term hung, holding a polite stop up)."""
    done = subprocess.run([sys.executable, "-c", ZAP_STOPS], capture_output=True, text=True, timeout=50)
    assert done.returncode == 0 and "stopped 30 of 30" in done.stdout, (done.returncode, done.stderr[-500:])
