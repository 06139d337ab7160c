"""``neurox run``: the embedded default -- the supervised diamond learning the digits, live.

Starts the network on this host (state in ``--data-dir``, kept across runs), streams a dataset into
it for learning with prequential scoring, prints progress every second, keeps MessengerIn open so
``neurox ask`` works meanwhile, and stops politely (state flushed) on Ctrl-C or after ``--duration``.
"""
from __future__ import annotations

import argparse
import os
import random
import signal
import threading
import time

import zmq

from ..ext import DEFAULT_BATCH, DEFAULT_WINDOW, PRELOAD, DatasetError, Stream, load_dataset, network_children
from ..neuron import (DataDirError, Network, TopologyError, ensure_usable_data_dir, live_topology, load_topology,
                      neuron_control, wipe_data_dir)
from ..ops import PRELOAD as OPS_PRELOAD, serve_metrics, service_children, service_source
from ..runtime import ControlError, call, unpack_map
from ..supervisor_tree import TreeError
from ._discovery import DEFAULT_DATA_DIR, write_run_file



def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("run", help="run a network that learns online (the 1-2-3-2-1 diamond on the digits by default)")
    parser.add_argument("--topology", help="a TOML topology file (default: the 1-2-3-2-1 diamond)")
    parser.add_argument("--data", help="a CSV or NPZ dataset to learn from (default: the bundled 8x8 digits)")
    parser.add_argument("--target", help="the target column (name or index) of --data (default: the last)")
    parser.add_argument("--data-dir", default=DEFAULT_DATA_DIR, help="where neurons keep their LevelDBs (default: %(default)s)")
    parser.add_argument("--fresh", action="store_true", help="discard the state saved in --data-dir and start anew")
    parser.add_argument("--epochs", type=int, default=0, help="passes over the data, 0 for until stopped (default)")
    parser.add_argument("--duration", type=float, help="stop after this many seconds")
    parser.add_argument("--window", type=int, default=DEFAULT_WINDOW, help="packets in flight (default: %(default)s)")
    parser.add_argument("--batch", type=int, default=DEFAULT_BATCH, help="samples per packet (default: %(default)s)")
    parser.add_argument("--rate", type=float, help="samples per second to feed (default: as fast as it takes them)")
    parser.add_argument("--chaos", type=float, metavar="SECONDS", help="SIGKILL a random neuron this often")
    parser.add_argument("--metrics-port", type=int, metavar="PORT",
                        help="serve the network's metrics for Prometheus on http://ADDRESS:PORT/metrics")
    parser.add_argument("--metrics-address", default="127.0.0.1", metavar="ADDRESS",
                        help="address of the metrics endpoint (default: %(default)s)")
    parser.add_argument("--no-service", action="store_true",
                        help="do not start the Supervisor service (probes and the TUI then ask every process)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    try:
        dataset = load_dataset(args.data, args.target)
        topology = load_topology(args.topology).fit_to_data(dataset.width, dataset.outputs, dataset.classes is not None)
    except (DatasetError, TopologyError, OSError) as exc:
        print(f"neurox run: {exc}")
        return 2
    if dataset.classes is not None and len(dataset.classes) == topology.width_of(topology.layers[-1].neurons[0]):
        topology.output = {"decode": "label", "labels": list(dataset.classes)}
    data_dir = os.path.abspath(args.data_dir)
    try:
        if args.fresh:
            wipe_data_dir(data_dir)
        ensure_usable_data_dir(data_dir)
        topology = live_topology(topology, data_dir, resume=not args.fresh)
    except (DataDirError, OSError) as exc:
        print(f"neurox run: {exc if isinstance(exc, DataDirError) else f'{data_dir}: {exc.strerror}'}")
        return 2
    if args.no_service and args.metrics_port is not None:
        print("neurox run: --metrics-port reads the Supervisor service; it cannot go with --no-service")
        return 2
    service = [] if args.no_service else service_children(data_dir)
    network = Network(topology, data_dir, extensions=network_children(topology, data_dir) + service,
                      preload=PRELOAD + OPS_PRELOAD)
    metrics = None
    if args.metrics_port is not None:
        try:
            metrics = serve_metrics(service_source(zmq.Context.instance(), network.run_dir), args.metrics_port,
                                    args.metrics_address)
        except OSError as exc:
            print(f"neurox run: cannot serve metrics on {args.metrics_address}:{args.metrics_port}: {exc.strerror}")
            network.stop()
            return 2
        print(f"metrics for Prometheus: http://{args.metrics_address}:{metrics.port}/metrics", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    started = time.monotonic()
    print(f"starting {len(network.topology.neurons())} neurons ({_shape(network.topology)}) ...", flush=True)
    try:
        network.start()
    except TreeError as exc:
        print(f"neurox run: the network did not start: {exc}", flush=True)
        return 1
    run_file = write_run_file(network)
    print(f"up in {time.monotonic() - started:.1f} s. MessengerIn: {network.messenger_in}\n"
          f"  try: neurox ask --data-dir {args.data_dir} --random    (Ctrl-C stops, state is flushed)", flush=True)
    ctx = zmq.Context.instance()
    watcher = _Watcher(ctx, network)
    chaos = _Chaos(ctx, network, args.chaos) if args.chaos else None
    stream = Stream(ctx, network.run_dir, network.topology, dataset, window=args.window, batch=args.batch,
                    rate=args.rate)
    deadline = None if args.duration is None else started + args.duration

    def should_stop() -> bool:
        if chaos:
            chaos.tick()
        return stop.is_set() or (deadline is not None and time.monotonic() > deadline) or not network.tree.alive

    def report(p) -> None:
        accuracy = f"acc {p.accuracy:.3f} (last 1000: {p.rolling_accuracy:.3f})" if p.accuracy is not None else \
            f"loss {p.mean_loss:.4f}" if p.mean_loss is not None else "no answers yet"
        print(f"epoch {p.epoch + 1}  samples {p.answered:>8,}  {accuracy}  {p.samples_per_s:,.0f} samples/s  "
              f"neurons {watcher.alive()}/{len(network.topology.neurons())} alive  restarts {watcher.restarts}  "
              f"lost {p.lost}", flush=True)

    try:
        epochs = args.epochs or 10 ** 9
        final = stream.run(epochs, on_progress=report, should_stop=should_stop)
        report(final)
    finally:
        stream.close()
        watcher.close()
        if metrics is not None:
            metrics.close()
        print("stopping (flushing every neuron's state) ...", flush=True)
        network.stop()
        if os.path.exists(run_file):
            os.unlink(run_file)
    failure = network.tree.failure()
    if failure is not None:
        print(f"neurox run: {failure}", flush=True)
        return 1
    print("stopped", flush=True)
    return 0


def _shape(topology) -> str:
    return "-".join(str(len(layer.neurons)) for layer in topology.layers)


class _Watcher:
    """Counts neurons alive and restarts from the event bus (no polling of every neuron)."""

    def __init__(self, ctx: zmq.Context, network: Network):
        self.sub = ctx.socket(zmq.SUB)
        self.sub.setsockopt(zmq.LINGER, 0)
        self.sub.connect(network.events)
        for topic in (b"child_exited", b"child_restarted"):
            self.sub.setsockopt(zmq.SUBSCRIBE, topic)
        self.total = len(network.topology.neurons())
        self.down: set[str] = set()
        self.restarts = 0

    def alive(self) -> int:
        while self.sub.poll(0):
            topic, body = self.sub.recv_multipart()
            event = unpack_map(body)
            if topic == b"child_exited":
                self.down.add(event["id"])
            else:
                self.down.discard(event["id"])
                self.restarts += 1
        return self.total - len(self.down)

    def close(self) -> None:
        self.sub.close()


class _Chaos:
    """Kills a random neuron every ``period`` seconds so replacement can be watched."""

    def __init__(self, ctx: zmq.Context, network: Network, period: float):
        self.ctx, self.network, self.period = ctx, network, period
        self.next = time.monotonic() + period

    def tick(self) -> None:
        if time.monotonic() < self.next:
            return
        self.next += self.period
        topology = self.network.topology
        neuron = random.choice(topology.neurons())
        try:
            pid = call(self.ctx, neuron_control(self.network.run_dir, topology, neuron), "status", timeout=1.0)["pid"]
        except ControlError:
            return
        os.kill(pid, signal.SIGKILL)
        print(f"chaos: killed {neuron} (pid {pid})", flush=True)
