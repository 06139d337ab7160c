"""One diamond spread over three hosts: Linux network namespaces joined by a bridge, each running
``neurox node`` for its layers, every TCP link under CURVE.

The namespaces (h1, h2, h3 for the hosts, c for outside clients, b holding the bridge) exist only
for the module and are removed at its end whatever happens; so are the agents and their trees. The
test process itself stays in its own namespace and reaches each host's local sockets over ipc (unix
sockets are found by path, whatever the network namespace); what must cross the network runs in
namespace c through ``ip netns exec``.

Placement: L0 and the end layer L4 (with MessengerIn/Out) on h1, L1 and L3 on h2, L2 on h3. L1 and L2
form a region "mid": each of h2 and h3 runs a region supervisor holding the region's layers placed there.
h3 is also the maintenance host (the hippocampus, the sleep schedule and the pool of twins).
"""
import contextlib
import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import tomllib

import pytest
import zmq

from conftest import leaves_no_process
from test_node import FakeSystemd
from neurox.ext import Client
from neurox.neuron import NeuronStore, messenger_in_endpoint, neuron_control, parse_topology
from neurox.runtime import ControlClient, ControlError, create_keys
from neurox.supervisor_tree import control_endpoint

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root")

HOSTS = {"h1": "10.77.0.1", "h2": "10.77.0.2", "h3": "10.77.0.3"}
CLIENT_ADDRESS = "10.77.0.9"
BASE_PORT = 7600
WIDTH = 8
TOPOLOGY = f"""
name = "spread"
input_width = {WIDTH}

[defaults]
units = 8
learning_rate = 0.1
flush_interval_s = 0.2
join_timeout_ms = 200

[output]
decode = "label"

[hosts]
{chr(10).join(f'{h} = "{a}:{BASE_PORT}"' for h, a in HOSTS.items())}

[maintenance]
host = "h3"
awake_s = 3600.0
maintenance_s = 5.0
capacity = 200
replay_per_s = 200.0

[[layer]]
name = "L0"
host = "h1"

[[layer]]
name = "L1"
neurons = 2
host = "h2"
region = "mid"

[[layer]]
name = "L2"
neurons = 3
host = "h3"
region = "mid"

[[layer]]
name = "L3"
neurons = 2
host = "h2"

[[layer]]
name = "L4"
units = 2
activation = "softmax"
host = "h1"
"""
SPREAD = parse_topology(tomllib.loads(TOPOLOGY))
LAYERS_ON = {"h1": ["L0", "L4"], "h2": ["L1", "L3"], "h3": ["L2"]}
ROOT_LAYER_CHILDREN = {"h1": ["L0", "L4"], "h2": ["mid", "L3"], "h3": ["mid"]}
NEURONS_ON = {"h1": ["L0.n0", "L4.n0"], "h2": ["L1.n0", "L1.n1", "L3.n0", "L3.n1"], "h3": ["L2.n0", "L2.n1", "L2.n2"]}
VECTOR = [0.9, -0.5, 0.3, 0.1, -0.8, 0.6, 0.0, 0.4]


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=30)


class Namespaces:
    """The namespaces, bridge and veth pairs of one test run; :meth:`remove` takes them all away."""

    def __init__(self, prefix: str):
        self.prefix = prefix
        self.made: list[str] = []

    def name(self, short: str) -> str:
        return f"{self.prefix}{short}"

    def build(self) -> None:
        bridge = self._add("b")
        ip("-n", bridge, "link", "add", "br0", "type", "bridge")
        ip("-n", bridge, "link", "set", "br0", "up")
        for short, address in [*HOSTS.items(), ("c", CLIENT_ADDRESS)]:
            ns = self._add(short)
            ip("-n", bridge, "link", "add", f"p{short}", "type", "veth", "peer", "name", "eth0", "netns", ns)
            ip("-n", bridge, "link", "set", f"p{short}", "master", "br0", "up")
            ip("-n", ns, "addr", "add", f"{address}/24", "dev", "eth0")
            ip("-n", ns, "link", "set", "eth0", "up")
            ip("-n", ns, "link", "set", "lo", "up")

    def _add(self, short: str) -> str:
        ns = self.name(short)
        ip("netns", "add", ns)
        self.made.append(ns)
        return ns

    def remove(self) -> None:
        for ns in reversed(self.made):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=30)
        self.made.clear()


class Host:
    """One host: its keys, config and run directory, and its agent while it runs."""

    def __init__(self, name: str, namespace: str, work: pathlib.Path):
        self.name, self.namespace = name, namespace
        self.dir = work / name
        self.run_dir = str(work / "run" / name)
        self.data_dir = str(self.dir / "data")
        self.config = self.dir / "node.toml"
        self.log = self.dir / "agent.log"
        self.proc: subprocess.Popen | None = None
        self.systemd: FakeSystemd | None = None

    def write_config(self) -> None:
        self.config.write_text(f'name = "spread"\ndata_dir = "data"\ntopology = "../topology.toml"\n'
                               f'run_dir = "{self.run_dir}"\nhost = "{self.name}"\nkeys_dir = "keys"\n'
                               f'status_interval_s = 1.0\n')

    def start(self) -> None:
        env = {**os.environ, "NOTIFY_SOCKET": self.systemd.address} if self.systemd else None
        with open(self.log, "a") as log:
            self.proc = subprocess.Popen(
                ["ip", "netns", "exec", self.namespace, sys.executable, "-m", "neurox.cli", "node",
                 "--config", str(self.config)], stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=env)

    @property
    def control(self) -> str:
        return control_endpoint(self.run_dir, "root")

    def wait_up(self, timeout: float = 60.0) -> None:
        """Until the root answers and every local layer counts all its neurons active."""
        deadline = time.monotonic() + timeout
        while True:
            assert self.proc.poll() is None, f"{self.name}'s agent exited:\n{self.log.read_text()[-3000:]}"
            with contextlib.suppress(ControlError):
                counts = [self.call(control_endpoint(self.run_dir, SPREAD.supervisor_path(layer)), "count_children")
                          for layer in LAYERS_ON[self.name]]
                if all(c["active"] == c["specs"] for c in counts):
                    return
            assert time.monotonic() < deadline, f"{self.name} not up in {timeout} s:\n{self.log.read_text()[-3000:]}"
            time.sleep(0.1)

    def call(self, endpoint: str, op: str, **args):
        client = ControlClient(zmq.Context.instance(), endpoint, 2.0)
        try:
            return client.call(op, **args)
        finally:
            client.close()

    def neuron(self, neuron_id: str, op: str):
        return self.call(neuron_control(self.run_dir, SPREAD, neuron_id), op)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60.0) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        finally:
            self.proc = None


@pytest.fixture(scope="module")
def work():
    """The module's scratch directory (keys, builds, configs, data, sockets), removed at its end."""
    with tempfile.TemporaryDirectory(prefix="nx-hosts-") as tmp:
        yield pathlib.Path(tmp)


@pytest.fixture(scope="module")
def cluster(work):
    """Three hosts with keys distributed as the Ansible role does, agents running; all removed after."""
    (work / "topology.toml").write_text(TOPOLOGY)
    namespaces = Namespaces(f"nx{os.getpid() % 100000}")
    hosts = {name: Host(name, namespaces.name(name), work) for name in HOSTS}
    assert shutil.which("ip"), "iproute2 is missing: run tests/setup_tools.sh"
    with leaves_no_process():
        try:
            hosts["h1"].systemd = FakeSystemd(str(work / "h1.notify"))  # a path: abstract ones are per namespace
            namespaces.build()
            publics = {}
            for name, host in hosts.items():  # each host makes its own pair...
                publics[name] = create_keys(str(host.dir / "keys"), name)[0]
            for name in [*HOSTS, "admin"]:  # ...and every host allows every host and the admin client
                if name == "admin":
                    publics[name] = create_keys(str(work / "admin"), "admin")[0]
                for host in hosts.values():
                    os.makedirs(host.dir / "keys" / "allowed", exist_ok=True)
                    shutil.copy(publics[name], host.dir / "keys" / "allowed" / f"{name}.key")
            create_keys(str(work / "mallory"), "mallory")
            for keys_dir in (work / "admin", work / "mallory"):
                os.makedirs(keys_dir / "allowed")
                shutil.copy(publics["h1"], keys_dir / "allowed" / "h1.key")  # public keys are public
            for host in hosts.values():
                host.write_config()
                host.start()
            for host in hosts.values():
                host.wait_up()
            yield work, namespaces, hosts
        finally:
            for host in hosts.values():
                with contextlib.suppress(subprocess.TimeoutExpired):
                    host.stop()
            if hosts["h1"].systemd is not None:
                hosts["h1"].systemd.close()
            namespaces.remove()  # leaves_no_process then fails the run for any process left, and kills it
    left = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, timeout=30).stdout
    assert namespaces.prefix not in left, left


def messenger(host: Host) -> Client:
    return Client(messenger_in_endpoint(host.run_dir))


@pytest.mark.timeout(120)
def test_the_spread_diamond_answers_and_learns_across_hosts(cluster):
    _, _, hosts = cluster
    for name, host in hosts.items():
        tcp = json.loads(pathlib.Path(host.run_dir, "tcp.json").read_text())
        assert tcp["host"] == name and set(tcp["exports"]) >= {"root.ctl", *(f"{n}.in" for n in NEURONS_ON[name])}
        elsewhere = [n for h, ns in NEURONS_ON.items() if h != name for n in ns]
        controls = {os.path.basename(neuron_control("/", SPREAD, n)) for n in elsewhere}  # root.mid.L1.L1.n0.ctl, ...
        assert set(tcp["routes"]) == ({f"{n}.in" for n in elsewhere} | controls
                                      | ({"hippocampus.in"} if name != "h3" else set()))
        assert os.stat(host.run_dir).st_mode & 0o777 == 0o700  # ipc sockets: the service user only
        children = [row["id"] for row in host.call(host.control, "which_children")]
        assert set(children) == {*ROOT_LAYER_CHILDREN[name], "service",  # every host's Supervisor service
                                 *(("reshaper", "messenger_out", "messenger_in") if name == "h1" else ()),
                                 *(("maintenance_pool", "maintenance") if name == "h3" else ())}
        assert children[:len(ROOT_LAYER_CHILDREN[name])] == ROOT_LAYER_CHILDREN[name]
    for name, placed in (("h2", ["L1"]), ("h3", ["L2"])):  # a host's region subtree: the region's layers there
        mid = hosts[name].call(control_endpoint(hosts[name].run_dir, "root/mid"), "which_children")
        assert [row["id"] for row in mid] == placed
    reshaper = control_endpoint(hosts["h1"].run_dir, "root/reshaper")  # on the front host only
    assert hosts["h1"].call(reshaper, "topology")["hosts"] == {h: f"{a}:{BASE_PORT}" for h, a in HOSTS.items()}
    with pytest.raises(ControlError, match="spread_over_hosts"):  # a layer's host is placement, pushed as a topology
        hosts["h1"].call(reshaper, "add_layer", name="L9", after="L2")
    client = messenger(hosts["h1"])
    try:
        losses = []
        for _ in range(40):
            reply = client.ask(vector=VECTOR, target=1, timeout=10)
            assert reply["ok"], reply
            losses.append(reply["loss"])
        answer = client.ask(vector=VECTOR, timeout=10)
    finally:
        client.close()
    assert sum(losses[-5:]) < 0.5 * sum(losses[:5]), losses  # it learns: the same sample, less and less loss
    assert answer["ok"] and answer["label"] == 1
    assert hosts["h1"].systemd.wait_for("READY", "1", timeout=1)  # h1's agent spoke systemd's protocol
    hosts["h1"].systemd.wait_for("STATUS", "spread@h1: 2/2 neurons alive; peers h2 up, h3 up", timeout=10)
    deadline = time.monotonic() + 10
    for name, neurons in NEURONS_ON.items():  # every neuron on every host learnt from every sample
        for neuron in neurons:
            while hosts[name].neuron(neuron, "metrics")["updates"] < 40:  # the last gradients land
                assert time.monotonic() < deadline, f"{neuron} did not learn from every sample"
                time.sleep(0.05)


@pytest.mark.timeout(120)
def test_the_maintenance_host_copies_every_host_s_neurons_into_its_pool_and_gives_their_learning_back(cluster):
    _, _, hosts = cluster
    h1, h3 = hosts["h1"], hosts["h3"]
    sleeper = control_endpoint(h3.run_dir, "root/maintenance")
    pool = control_endpoint(h3.run_dir, "root/maintenance_pool")
    every = [(name, n) for name, ns in NEURONS_ON.items() for n in ns]
    seen = h3.call(sleeper, "status")["seen"]
    client = messenger(h1)
    try:
        for i in range(30):  # learnt on the front host, remembered on the maintenance host (over TCP)
            vector = [v * (1 + (i % 5) / 4) for v in VECTOR]  # inputs that vary: MessengerIn standardises them
            assert client.ask(vector=vector, target=i % 2, timeout=10)["ok"]
        deadline = time.monotonic() + 10
        while h3.call(sleeper, "status")["seen"] < seen + 30:
            assert time.monotonic() < deadline, "the experiences did not reach the maintenance host"
            time.sleep(0.1)
        before = {n: hosts[name].neuron(n, "get_params")["weights"]["data"] for name, n in every}
        cycles, given = (h3.call(sleeper, "status")[k] for k in ("cycles", "given_back"))
        assert h3.call(sleeper, "sleep_now") == {"phase": "awake"}
        twins, answered = set(), 0
        deadline = time.monotonic() + 60
        while (status := h3.call(sleeper, "status"))["cycles"] == cycles:
            assert time.monotonic() < deadline, status
            twins |= {c["id"] for c in h3.call(pool, "which_children") if c["pid"]}
            assert client.ask(vector=VECTOR, timeout=10)["ok"]  # the working network keeps answering
            answered += 1
    finally:
        client.close()
    assert twins == {n for _, n in every}  # every host's neurons had their twin on h3
    assert status["given_back"] - given == len(every) and status["dreamt"] > 0
    moved = [n for name, n in every if hosts[name].neuron(n, "get_params")["weights"]["data"] != before[n]]
    assert sorted(moved) == sorted(n for _, n in every)  # each took back what its twin learnt, on its host
    assert answered > 0 and h3.call(pool, "which_children") == []


CLIENT = """
import json, sys
import numpy as np, zmq
from neurox.neuron import INPUT, encode_forward
from neurox.runtime import ControlClient, ControlError, CurveKeys, make_socket, pack, unpack_map
from neurox.runtime._curve import connect_curve

a = json.loads(sys.argv[1])
ctx = zmq.Context()
curve = None
if a["keys"]:
    keys = CurveKeys.load(a["keys"], a["name"])
    curve = keys.client_options(keys.server_key("h1"))

def socket(kind, endpoint):
    sock = make_socket(ctx, kind, linger_ms=1000)
    if curve:
        connect_curve(sock, curve)
    sock.connect(endpoint)
    return sock

out = {}
inbox = socket(zmq.PUSH, a["inbox"])
inbox.send(encode_forward(INPUT, [7], [np.full((1, a["width"]), 0.5, "<f4")], [False], [pack({})]))
front = socket(zmq.DEALER, a["messenger_in"])
front.send_multipart([b"", pack({"message_hash_id": "m1", "vector": [0.5] * a["width"], "timeout_ms": 3000})])
out["reply"] = unpack_map(front.recv_multipart()[-1]) if front.poll(4000) else None
control = ControlClient(ctx, a["control"], 2.0, curve=curve)
try:
    out["ping"] = control.call("ping")
except ControlError as exc:
    out["ping"] = exc.error
for sock in (inbox, front, control.sock):
    sock.close()
ctx.term()
print(json.dumps(out))
"""


def outside_client(namespaces: Namespaces, keys: str | None, name: str | None) -> dict:
    """What a client in namespace c gets from h1 over TCP: a MessengerIn reply, a ping, and a
    forward frame pushed straight into L0.n0's inbox."""
    address = HOSTS["h1"]
    args = {"keys": keys, "name": name, "width": WIDTH, "inbox": f"tcp://{address}:{BASE_PORT + 100}",
            "messenger_in": f"tcp://{address}:{BASE_PORT + 1}", "control": f"tcp://{address}:{BASE_PORT}"}
    done = subprocess.run(["ip", "netns", "exec", namespaces.name("c"), sys.executable, "-c", CLIENT, json.dumps(args)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


@pytest.mark.timeout(120)
def test_only_a_client_with_an_allowed_curve_key_gets_in(cluster):
    work, namespaces, hosts = cluster
    h1 = hosts["h1"]
    messenger_in = control_endpoint(h1.run_dir, "root/messenger_in")

    def seen() -> tuple[int, int]:
        return h1.neuron("L0.n0", "metrics")["forwards"], h1.call(messenger_in, "metrics")["requests"]

    before = seen()
    for keys, name in ((None, None), (str(work / "mallory"), "mallory")):
        got = outside_client(namespaces, keys, name)
        assert got == {"reply": None, "ping": "timeout"}, (name, got)
    time.sleep(0.5)
    assert seen() == before  # refused at the handshake: nothing injected, nothing read
    got = outside_client(namespaces, str(work / "admin"), "admin")
    assert got["ping"] == "pong"
    assert got["reply"]["ok"] and got["reply"]["message_hash_id"] == "m1", got
    forwards, requests = seen()
    assert requests == before[1] + 1 and forwards >= before[0] + 2  # the request and the injected frame


@pytest.mark.timeout(180)
def test_a_client_elsewhere_walks_every_host_and_changes_host_2_through_its_gateway(cluster):
    """Each host's control gateway (BASE+5, CURVE): from the client namespace, with the admin's keys
    and the hosts' public keys only, every host's whole tree is walked and host 2's layer L3 is put to
    another state; mallory's key gets no answer and changes nothing."""
    work, namespaces, hosts = cluster
    for name in HOSTS:  # public keys are public: the clients know every host's
        for keys_dir in (work / "admin", work / "mallory"):
            shutil.copy(hosts[name].dir / "keys" / f"{name}.key", keys_dir / "allowed" / f"{name}.key")

    def neurox(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["ip", "netns", "exec", namespaces.name("c"), sys.executable, "-m", "neurox.cli", *args],
                              capture_output=True, text=True, timeout=60)

    def via(host: str, keys: str = "admin") -> list[str]:
        return ["--remote", f"tcp://{HOSTS[host]}:{BASE_PORT + 5}", "--keys", str(work / keys), "--key-name", keys,
                "--server", host]

    for name in HOSTS:
        done = neurox("probe", "tree", *via(name))
        assert done.returncode == 0, done.stdout + done.stderr
        shown = {line.strip().split(" [")[0] for line in done.stdout.splitlines()}
        assert {"root", "service", *ROOT_LAYER_CHILDREN[name], *NEURONS_ON[name]} <= shown, (name, shown)
        assert not set(NEURONS_ON["h1" if name != "h1" else "h2"]) & shown, "each host shows its own part"
    for neuron in ("L3.n0", "L3.n1"):  # host 2's layer L3, changed from outside
        done = neurox("probe", "state", f"root/L3/{neuron}", "meditative", *via("h2"))
        assert json.loads(done.stdout)["state"] == "meditative", done.stdout + done.stderr
        assert hosts["h2"].neuron(neuron, "status")["state"] == "meditative"
    done = neurox("reshape", *via("h1"), "remove-layer", "L3")  # the reshaper answers through h1's gateway
    assert done.returncode == 1 and "spread_over_hosts" in done.stdout, done.stdout
    refused = neurox("probe", "state", "root/L3/L3.n0", "awake", *via("h2", "mallory"), "--timeout", "1")
    assert refused.returncode == 3 and "did not answer" in refused.stdout, refused.stdout
    assert hosts["h2"].neuron("L3.n0", "status")["state"] == "meditative", "mallory changed nothing"
    for neuron in ("L3.n0", "L3.n1"):
        assert json.loads(neurox("probe", "state", f"root/L3/{neuron}", "awake", *via("h2")).stdout)["state"] == "awake"


def shape_on(host: Host) -> dict:
    """The live shape a host keeps in its data directory (what its neurons read, and its next start resumes)."""
    return json.loads(pathlib.Path(host.data_dir, "topology.json").read_text())


@pytest.mark.timeout(120)
def test_a_neuron_and_a_link_are_added_and_removed_across_hosts(cluster):
    """The reshaper on h1 adds a neuron to h2's layer L3 (fed from h3, feeding h1) and a link into it from
    h1; the new neuron learns in the network across the three hosts; then both go, and nothing is left."""
    _, _, hosts = cluster
    h1, h2 = hosts["h1"], hosts["h2"]
    reshaper = control_endpoint(h1.run_dir, "root/reshaper")
    new = control_endpoint(h2.run_dir, "root/L3/L3.n2")  # on h2, under h2's layer supervisor
    assert h1.call(reshaper, "add_neuron", layer="L3")["id"] == "L3.n2"
    status = h1.call(new, "status")
    assert status["inputs"] == ["L2.n0", "L2.n1", "L2.n2"] and status["outputs"] == ["L4.n0"], status
    assert h1.call(reshaper, "add_link", **{"from": "L0.n0", "to": "L3.n2"}) == {"from": "L0.n0", "to": "L3.n2"}
    assert "L0.n0" in h1.call(new, "status")["inputs"]
    for host in hosts.values():  # every host keeps the new shape, and routes to the new neuron or serves it
        layer = next(layer for layer in shape_on(host)["layers"] if layer["name"] == "L3")
        assert layer["neurons"] == ["L3.n0", "L3.n1", "L3.n2"] and ["L0.n0", "L3.n2"] in shape_on(host)["links"]
        plan = json.loads(pathlib.Path(host.run_dir, "tcp.json").read_text())
        assert "L3.n2.in" in (plan["exports"] if host is h2 else plan["routes"]), host.name
    before = h1.call(new, "metrics")
    client = messenger(h1)
    try:
        for i in range(20):
            assert client.ask(vector=VECTOR, target=i % 2, timeout=10)["ok"]
    finally:
        client.close()
    deadline = time.monotonic() + 10
    while (after := h1.call(new, "metrics"))["updates"] < before["updates"] + 20:  # its gradients came back
        assert time.monotonic() < deadline, after
        time.sleep(0.05)
    assert after["forwards"] >= before["forwards"] + 20
    h1.call(reshaper, "remove_link", **{"from": "L0.n0", "to": "L3.n2"})
    assert h1.call(reshaper, "remove_neuron", id="L3.n2") == {"id": "L3.n2", "layer": "L3"}
    assert [c["id"] for c in h2.call(control_endpoint(h2.run_dir, "root/L3"), "which_children")] == ["L3.n0", "L3.n1"]
    for host in hosts.values():
        assert "L3.n2" not in json.dumps(shape_on(host)) and "L3.n2.in" not in pathlib.Path(host.run_dir, "tcp.json").read_text()
    assert h2.neuron("L3.n0", "status")["outputs"] == ["L4.n0"] and "L0.n0" not in h2.neuron("L3.n0", "status")["inputs"]


@pytest.mark.timeout(180)
def test_a_dead_host_is_waited_for_and_no_request_is_lost_without_an_error(cluster):
    """The documented recovery (docs/deployment.md): the other hosts wait for the dead host's
    supervisor (systemd; here the test) to restart its agent; meanwhile every request is answered,
    with an explicit ``timeout`` error while its layer is missing; the restarted neurons come back
    from their own last flush."""
    _, _, hosts = cluster
    h1, h3 = hosts["h1"], hosts["h3"]
    for neuron in NEURONS_ON["h3"]:  # a flush of its own, whatever ran before this test (it asks without learning)
        assert h3.neuron(neuron, "snapshot")["flushes"] >= 1
    replies: dict[str, list[dict]] = {}
    sent: list[str] = []
    done = threading.Event()

    duplicates: list[int] = []

    def traffic() -> None:
        client = messenger(h1)
        try:
            while not done.is_set():
                sent.append(client.submit(vector=VECTOR, timeout_ms=1000, deadline_s=1.5))
                for reply in client.results(timeout=0.05):
                    replies.setdefault(reply["message_hash_id"], []).append(reply)
            while client.pending:
                for reply in client.results(timeout=0.5):
                    replies.setdefault(reply["message_hash_id"], []).append(reply)
            duplicates.append(client.stats["duplicates"])
        finally:
            client.close()

    sender = threading.Thread(target=traffic)
    sender.start()
    try:
        time.sleep(1.0)
        killed = time.monotonic()
        assert h3.stop(signal.SIGKILL, timeout=10) == -signal.SIGKILL
        h1.systemd.wait_for("STATUS", "peers h2 up, h3 unreachable", since=killed, timeout=10)
        time.sleep(2.0)
        killed_at = len(sent)
        h3.start()  # what systemd's Restart=on-failure does on a real host
        h3.wait_up()
        recovered_at, recovered = len(sent), time.monotonic()
        h1.systemd.wait_for("STATUS", "peers h2 up, h3 up", since=recovered, timeout=10)
        time.sleep(3.0)
    finally:
        done.set()
        sender.join(30)
    assert set(replies) == set(sent), f"{len(set(sent) - set(replies))} requests got no reply"
    assert all(len(r) == 1 for r in replies.values()) and duplicates == [0], "a request answered twice"
    outcomes = [replies[m][0] for m in sent]
    assert all(r["ok"] or r["error"] in ("timeout", "deadline") for r in outcomes), {r.get("error") for r in outcomes}
    assert any(not r["ok"] for r in outcomes[:killed_at]), "the dead layer never showed"
    after = outcomes[recovered_at:]
    assert len(after) > 20 and all(r["ok"] for r in after[-10:]), "answers did not come back after the restart"
    for neuron in NEURONS_ON["h3"]:
        started = h3.neuron(neuron, "status")["started"]
        assert started.get("seeding", {}).get("method") == "own_last_flush", (neuron, started)


@pytest.mark.timeout(120)
def test_every_host_stops_politely_with_every_neuron_flushed(cluster):
    """SIGTERM to each agent, as systemd's stop does: exit 0, and every neuron's store marked clean
    (the ZAP threads end with their processes' contexts and hold no stop up)."""
    _, _, hosts = cluster
    for host in hosts.values():
        assert host.stop() == 0, host.log.read_text()[-3000:]
    for name, neurons in NEURONS_ON.items():
        for neuron in neurons:
            store = NeuronStore(os.path.join(hosts[name].data_dir, "neurons", neuron))
            try:
                assert store.was_clean, f"{neuron} on {name} was not stopped politely"
            finally:
                store.close(clean=True)
