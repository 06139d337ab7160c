"""``neurox node --config FILE``: the per-host agent, run by systemd (``systemd/neurox-node@.service``).

It starts the host's network (layers, reshaper, MessengerIn/Out and the topology's extensions) as
the host's root supervision tree and then only watches it: clients talk to the root supervisor's
control socket and event bus as everywhere else (``run.json`` in the data directory points at them,
so ``neurox ask``/``neurox probe --data-dir`` find the node). Towards systemd it speaks the notify
protocol (:mod:`neurox.runtime._sd_notify`):

- ``READY=1`` once the tree is up (``Type=notify``: systemd counts the unit as started only then);
- ``STATUS=`` every tick: neurons alive per the layer supervisors' ``count_children`` and, spread
  over hosts, which other hosts' root supervisors answer (a dead peer is reported, not this host's
  failure: the watchdog is not withheld for it);
- ``WATCHDOG=1`` every tick while the tree is healthy -- the root supervisor alive *and* answering
  ``ping`` -- at half of ``$WATCHDOG_USEC``, so a hung root gets the service killed and restarted;
- ``STOPPING=1`` on SIGTERM, then a polite stop (every neuron flushes its LevelDB) and exit 0.

If the root supervisor exits on its own (its restart intensity was exceeded), the agent stops the
rest and exits 1: the failure escalates to systemd, the supervisor above the host, whose
``Restart=on-failure`` and start limits play OTP's intensity one level up.

The config is TOML with these keys (relative paths are taken from the config file's directory)::

    name = "diamond"                    # the network's name (the unit's instance name)
    data_dir = "/var/lib/neurox/diamond"
    topology = "topology.toml"          # optional; default: the bundled 1-2-3-2-1 diamond
    run_dir = "/run/neurox/diamond"     # optional; default: a private directory under /tmp
    status_interval_s = 5.0             # optional; STATUS= at least this often
    host = "h1"                         # with a topology spread over hosts: which one this is
    keys_dir = "/etc/neurox/diamond/keys"   # with host: h1.key_secret and allowed/*.key (CURVE)
    metrics_port = 9464                 # optional; serve /metrics for Prometheus (docs/operations.md)
    metrics_address = "127.0.0.1"       # optional; where /metrics listens (default: loopback only)
    [service]                           # optional; the Supervisor service (neurox.ops.ServiceConfig)
    enabled = true

With ``host`` the agent runs only the layers placed on it (and the edge processes if it is the
front host), links to the other hosts over TCP with CURVE, and serves its root's control socket on
TCP for allow-listed peers (``docs/deployment.md``, "A network across hosts").

Which shape the network starts with: a topology file that changed since the last start (a reshape
pushed by Ansible) wins; otherwise the live shape kept in the data directory, so a restart after a
crash keeps what live reshaping did meanwhile.

A run directory of one's own (``run_dir``) is cleared of the sockets and ``tcp.json`` a crashed
predecessor left (:mod:`neurox.cli._run_dir`); the node refuses to start where a network still runs.
"""
from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import re
import signal
import threading
from typing import Annotated

import msgspec

import zmq

from ..ext import PRELOAD, network_children
from ..neuron import (DataDirError, Network, Topology, TopologyError, control_tcp, ensure_usable_data_dir, events_tcp,
                      front_host, layers_on, live_topology, load_topology)
from ..ops import (PRELOAD as OPS_PRELOAD, Gateway, MetricsServer, ServiceConfig, gateway_endpoint, serve_metrics,
                   service_children, service_source)
from ..runtime import ConfigError, ControlClient, ControlError, CurveKeys, KeysError, read_toml, typed
from ..runtime import Notifier
from ..supervisor_tree import TreeError
from ._discovery import write_run_file
from ._run_dir import RunDirInUse, clear_stale_run_dir

PUSHED_TOPOLOGY_FILE = "node-topology.sha256"
"""In the data directory: the digest of the topology file the node last started from."""
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
PEER_TIMEOUT_S = 0.3
"""How long a tick waits for another host's root to answer ``ping`` before calling it unreachable."""
EXIT_CONFIG = 2
EXIT_TREE_FAILED = 1


class NodeConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A node config file (see the module's docstring), its own schema; ``[service]`` is ServiceConfig's."""

    name: str
    data_dir: str
    topology: str | None = None
    run_dir: str | None = None
    status_interval_s: Annotated[float, msgspec.Meta(gt=0)] = 5.0
    host: str | None = None
    keys_dir: str | None = None
    metrics_port: Annotated[int, msgspec.Meta(ge=0, le=65535)] | None = None
    metrics_address: str = "127.0.0.1"
    service: ServiceConfig = msgspec.field(default_factory=ServiceConfig)

    @property
    def label(self) -> str:
        """How STATUS= and the log name this agent: the network, and the host if spread over hosts."""
        return self.name if self.host is None else f"{self.name}@{self.host}"

    @classmethod
    def load(cls, path: str) -> "NodeConfig":
        """Read and check a node config (see the module's docstring for its keys)."""
        config = typed(cls, read_toml(path), path)
        if not NAME_PATTERN.fullmatch(config.name):
            raise ConfigError(f"{path}: name must match {NAME_PATTERN.pattern}, got {config.name!r}")
        if (config.host is None) != (config.keys_dir is None):
            raise ConfigError(f"{path}: host and keys_dir go together (a host talks to its peers only with CURVE keys)")
        if config.metrics_port is not None and not config.service.enabled:
            raise ConfigError(f"{path}: metrics_port reads the Supervisor service; [service] enabled must be true")
        base = os.path.dirname(os.path.abspath(path))
        return msgspec.structs.replace(config, **{k: os.path.join(base, getattr(config, k)) for k in (
            "data_dir", "topology", "run_dir", "keys_dir") if getattr(config, k) is not None})


def starting_topology(config: NodeConfig) -> Topology:
    """The shape to start with: a newly pushed topology file, else the live one, else the file
    (or the bundled diamond without one)."""
    if config.topology is None:
        return live_topology(load_topology(None), config.data_dir, resume=True)
    with open(config.topology, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    topology = load_topology(config.topology)
    marker = os.path.join(config.data_dir, PUSHED_TOPOLOGY_FILE)
    try:
        with open(marker) as f:
            seen_before = f.read().strip() == digest
    except FileNotFoundError:
        seen_before = False
    topology = live_topology(topology, config.data_dir, resume=seen_before)
    with open(marker, "w") as f:
        f.write(digest + "\n")
    return topology


def check_host(config: NodeConfig, topology: Topology) -> None:
    """The config's host is one of the topology's, with usable keys (ConfigError or KeysError if not)."""
    if config.host is None:
        if topology.hosts:
            raise ConfigError(f"the topology spreads over hosts {sorted(topology.hosts)}: "
                              f"the config must say which one this is (host, keys_dir)")
        return
    if config.host not in topology.hosts:
        raise ConfigError(f"host {config.host!r} is not one of the topology's hosts {sorted(topology.hosts)}")
    CurveKeys.load(config.keys_dir, config.host)
    missing = [h for h in topology.hosts if not os.path.exists(os.path.join(config.keys_dir, "allowed", f"{h}.key"))]
    if missing:
        raise KeysError(f"{config.keys_dir}/allowed has no public key of the hosts {missing}")


class Health:
    """The tree's health through its control API: the root answering ``ping``, the neurons alive as
    counted by each layer supervisor (the root's supervisor children, and a region's), and -- spread over hosts --
    which other hosts' root supervisors answer over TCP (CURVE, with this host's keys)."""

    def __init__(self, ctx: zmq.Context, network: Network, timeout: float, peers: dict[str, ControlClient]):
        self.ctx, self.network, self.timeout = ctx, network, timeout
        self.root = ControlClient(ctx, network.control, timeout)
        self.layers: dict[str, ControlClient] = {}
        self.peers = peers

    @classmethod
    def for_node(cls, config: NodeConfig, network: Network, timeout: float) -> "Health":
        ctx = zmq.Context.instance()
        peers = {}
        if config.host is not None:
            keys = CurveKeys.load(config.keys_dir, config.host)
            peers = {host: ControlClient(ctx, control_tcp(network.topology, host), PEER_TIMEOUT_S,
                                         curve=keys.client_options(keys.server_key(host)))
                     for host in sorted(network.topology.hosts) if host != config.host}
        return cls(ctx, network, timeout, peers)

    def peers_answering(self) -> dict[str, bool]:
        answers = {}
        for host, client in self.peers.items():
            try:
                answers[host] = client.call("ping") == "pong"
            except ControlError:
                answers[host] = False
        return answers

    def root_answers(self) -> bool:
        try:
            return self.root.call("ping") == "pong"
        except ControlError:
            return False

    def neurons(self) -> tuple[int, int]:
        """(alive, total) over the layer supervisors; a layer that does not answer counts as dead."""
        return self._count(self.root.call("which_children"))

    def _count(self, children: list[dict]) -> tuple[int, int]:
        """(alive, total) neurons under these children: a supervisor of supervisors is a region's, whose
        children are its layers' supervisors; a supervisor of workers is a layer's."""
        alive = total = 0
        for row in children:
            if row["type"] != "supervisor":
                continue
            client = self.layers.get(row["control"])
            if client is None:
                client = self.layers[row["control"]] = ControlClient(self.ctx, row["control"], self.timeout)
            try:
                counts = client.call("count_children")
                found = self._count(client.call("which_children")) if counts["supervisors"] else \
                    (counts["active"], counts["specs"])
            except ControlError:
                continue
            alive += found[0]
            total += found[1]
        return alive, total

    def close(self) -> None:
        self.root.close()
        for client in (*self.layers.values(), *self.peers.values()):
            client.close()


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("node", help="the per-host agent: run this host's network under systemd (Type=notify)")
    parser.add_argument("--config", required=True, help="the node's TOML config (name, data_dir, topology, run_dir)")
    parser.set_defaults(handler=node)


def node(args: argparse.Namespace) -> int:
    try:
        config = NodeConfig.load(args.config)
        os.makedirs(config.data_dir, mode=0o700, exist_ok=True)
        ensure_usable_data_dir(config.data_dir)
        topology = starting_topology(config)
        check_host(config, topology)
        stale = clear_stale_run_dir(config.run_dir)
    except (ConfigError, TopologyError, KeysError, DataDirError, OSError, RunDirInUse) as exc:
        print(f"neurox node: {exc}", flush=True)
        return EXIT_CONFIG
    if stale:
        print(f"neurox node {config.label}: removed {len(stale)} sockets and files a previous run left in "
              f"{config.run_dir}", flush=True)
    notifier = Notifier.from_environment()
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    front = config.host is None or config.host == front_host(topology)
    edges = network_children(topology, config.data_dir, config.host)  # each part knows on which host it runs
    service = service_children(config.data_dir, config.service.on_host(topology, config.host))
    try:
        network = Network(topology, config.data_dir, run_dir=config.run_dir, preload=PRELOAD + OPS_PRELOAD,
                          extensions=edges + service, host=config.host, keys_dir=config.keys_dir)
    except DataDirError as exc:
        print(f"neurox node: {exc}", flush=True)
        return EXIT_CONFIG
    try:
        metrics = _serve_metrics(config, network)
    except OSError as exc:
        print(f"neurox node: cannot serve metrics on {config.metrics_address}:{config.metrics_port}: {exc.strerror}",
              flush=True)
        network.stop()
        return EXIT_CONFIG
    local = sum(len(topology.layer_named(name).neurons) for name in layers_on(topology, config.host))
    notifier.status(f"{config.label}: starting {local} neurons")
    try:
        network.start()
    except TreeError as exc:
        notifier.status(f"{config.label}: failed to start: {exc}")
        print(f"neurox node: {exc}", flush=True)
        if metrics is not None:
            metrics.close()
        return EXIT_TREE_FAILED
    run_file = write_run_file(network)
    gateway = None
    try:
        try:
            gateway = _start_gateway(config, network)
        except zmq.ZMQError as exc:
            print(f"neurox node {config.label}: cannot serve the control gateway: {exc}", flush=True)
            code = EXIT_CONFIG
        else:
            print(f"neurox node {config.label}: up; control {network.control}"
                  + (f", MessengerIn {network.messenger_in}" if front else "")
                  + (f", gateway {gateway.endpoint}" if gateway else ""), flush=True)
            code = watch(config, network, notifier, stop)
    finally:
        notifier.stopping(f"{config.label}: stopping, flushing every neuron's state")
        if gateway is not None:
            gateway.close()
        network.stop()
        if metrics is not None:
            metrics.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(run_file)
        print(f"neurox node {config.label}: " + ("stopped" if code == 0 else "stopped after the failure"), flush=True)
        notifier.close()
    return code


def _start_gateway(config: NodeConfig, network: Network) -> Gateway | None:
    """Spread over hosts: every control socket of this host over TCP, under CURVE, through one port
    (neurox.ops._gateway; docs/deployment.md says why a gateway)."""
    if config.host is None:
        return None
    root = control_tcp(network.topology, config.host)
    events, events_control = events_tcp(network.topology, config.host)
    gateway = Gateway(zmq.Context.instance(), network.run_dir, network.data_dir, gateway_endpoint(root),
                      CurveKeys.load(config.keys_dir, config.host),
                      {"host": config.host, "network": config.name, "root": root, "events": events,
                       "events_control": events_control})
    gateway.start()
    return gateway


def _serve_metrics(config: NodeConfig, network: Network) -> MetricsServer | None:
    """``/metrics`` for Prometheus from this process, reading the Supervisor service (if configured)."""
    if config.metrics_port is None:
        return None
    server = serve_metrics(service_source(zmq.Context.instance(), network.run_dir), config.metrics_port,
                           config.metrics_address)
    print(f"neurox node {config.label}: metrics on http://{config.metrics_address}:{server.port}/metrics", flush=True)
    return server


def watch(config: NodeConfig, network: Network, notifier: Notifier, stop: threading.Event) -> int:
    """Tell systemd READY=1, then STATUS= and (while healthy) WATCHDOG=1 every tick until SIGTERM
    (0) or the root supervisor's exit (1).

    The root's exit is noticed at the next tick rather than the moment it happens: the tick is
    there for the watchdog anyway, and a SIGTERM still ends the wait at once.
    """
    tick = min(config.status_interval_s, notifier.watchdog or config.status_interval_s)
    health = Health.for_node(config, network, timeout=max(0.1, min(1.0, tick / 4)))
    try:
        notifier.ready(_status(config, health))
        while not stop.wait(tick):
            if not network.tree.alive:
                failure = network.tree.failure()
                notifier.status(f"{config.label}: {failure}")
                print(f"neurox node {config.label}: {failure}", flush=True)
                return EXIT_TREE_FAILED
            if health.root_answers():
                notifier.watchdog_ping()
                notifier.status(_status(config, health))
            else:
                notifier.status(f"{config.label}: the root supervisor does not answer")
        return 0
    finally:
        health.close()


def _status(config: NodeConfig, health: Health) -> str:
    try:
        alive, total = health.neurons()
    except ControlError as exc:
        return f"{config.label}: the root supervisor does not answer ({exc})"
    return f"{config.label}: {alive}/{total} neurons alive" + peer_summary(health.peers_answering())


def peer_summary(answers: dict[str, bool]) -> str:
    """The STATUS= tail naming the other hosts: "; peers h2 up, h3 unreachable" ("" on one host)."""
    if not answers:
        return ""
    return "; peers " + ", ".join(f"{host} {'up' if up else 'unreachable'}" for host, up in answers.items())
