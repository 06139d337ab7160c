"""``neurox run``: the embedded default -- the supervised diamond learning the digits, live.

Starts the network on this host (state in ``--data-dir``, kept across runs), streams a dataset into
it for learning with prequential scoring, prints progress every second, keeps MessengerIn open so
``neurox ask`` works meanwhile, and stops politely (state flushed) on Ctrl-C, SIGTERM, after
``--duration`` or ``--epochs``: it prints ``stopped`` and exits 0. A network that died (its root
killed, or given up at its restart intensity) exits 1 with one line saying why; what keeps a run from
starting (a bad data file, topology or option) exits 2 with one line, the data directory untouched.
"""
from __future__ import annotations

import argparse
import os
import random
import signal
import threading
import time

import zmq

from ..ext import (MISSING, PRELOAD, RUN_BATCH, RUN_WINDOW, SCALE_MODES, TASKS, Dataset, DatasetError, Stream,
                   check_learnable, load_dataset, network_children, scale_config, text_encoder)
from ..neuron import (DEFAULT_RAMP, SHAPES, DataDirError, Network, Topology, TopologyError, ensure_usable_data_dir,
                      live_topology, load_shape, neuron_control, topology_path, wipe_data_dir)
from ..ops import PRELOAD as OPS_PRELOAD, serve_metrics, service_children, service_source
from ..runtime import ControlError, call
from ..supervisor_tree import TreeError
from ._console import Console
from ._discovery import DEFAULT_DATA_DIR, write_run_file


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("run", help="run a network that learns online (the 1-2-3-2-1 diamond on the digits by default)")
    parser.add_argument("--topology", help=f"a shipped shape ({', '.join(SHAPES)}: neurox/neuron/NAME.toml) or a "
                                           "TOML topology file (default: diamond, the 1-2-3-2-1)")
    parser.add_argument("--data", help="a CSV (or .csv.gz, .tsv) or NPZ dataset to learn from (default: the bundled "
                                       "8x8 digits)")
    parser.add_argument("--target", help="the target column (name or index) of --data (default: the last)")
    parser.add_argument("--task", choices=TASKS, default="auto",
                        help="classification or regression; auto (default): text or at most 30 distinct whole "
                             "numbers are classes, other numbers are regressed (the start line says which and why)")
    parser.add_argument("--missing", choices=MISSING, default="error",
                        help="a row with an empty, NaN or infinite cell: error (default: name it and stop) or drop")
    parser.add_argument("--scale", choices=SCALE_MODES,
                        help="how the network scales its inputs, online: standard (running mean and standard "
                             "deviation; the default), minmax, none, or frozen (standard, then fixed after "
                             "--frozen-after samples); default: the topology's [input] scale")
    parser.add_argument("--frozen-after", type=int, metavar="N", help="samples before --scale frozen stops moving "
                                                                      "(default: 1000)")
    parser.add_argument("--data-dir", default=DEFAULT_DATA_DIR, help="where neurons keep their LevelDBs (default: %(default)s)")
    parser.add_argument("--fresh", action="store_true", help="discard the state saved in --data-dir and start anew")
    parser.add_argument("--epochs", type=int, default=0, help="passes over the data, 0 for until stopped (default)")
    parser.add_argument("--duration", type=float, help="stop after this many seconds")
    parser.add_argument("--window", type=int, default=RUN_WINDOW, help="packets in flight (default: %(default)s)")
    parser.add_argument("--ramp", type=int, default=DEFAULT_RAMP,
                        help="slow start: one packet in flight at first, one more per this many samples answered "
                             "up to 8, then one more per sample answered (doubling every round trip) up to --window; "
                             "0: the whole window at once (default: %(default)s)")
    parser.add_argument("--batch", type=int, default=RUN_BATCH, help="samples per packet (default: %(default)s)")
    parser.add_argument("--rate", type=float, help="samples per second to feed (default: as fast as it takes them)")
    parser.add_argument("--chaos", type=float, metavar="SECONDS", help="SIGKILL a random neuron this often")
    parser.add_argument("--metrics-port", type=int, metavar="PORT",
                        help="serve the network's metrics for Prometheus on http://ADDRESS:PORT/metrics")
    parser.add_argument("--metrics-address", default="127.0.0.1", metavar="ADDRESS",
                        help="address of the metrics endpoint (default: %(default)s)")
    parser.add_argument("--no-service", action="store_true",
                        help="do not start the Supervisor service (probes and the TUI then ask every process)")
    parser.set_defaults(handler=run)


def prepare(args: argparse.Namespace):
    """(dataset, topology) for a run, everything checked before the data directory is touched; SetupError
    with one line if the data, the topology or the network already in --data-dir cannot go together."""
    saved = topology_path(os.path.abspath(args.data_dir))
    live = None
    if not args.fresh and os.path.exists(saved):
        try:
            live = Topology.load(saved)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise SetupError(f"{saved}: not a topology NeuroX can read ({exc}); --fresh starts anew") from None
    try:
        shape = load_shape(args.topology)
        text = text_encoder(live or shape)  # a CSV's text columns: encoded as the network asks them
        dataset = load_dataset(args.data, args.target, args.task, args.missing, text)
        check_learnable(dataset, args.data)
        topology = shape.fit_to_data(dataset.width, dataset.outputs, dataset.classes is not None)
        if dataset.text_columns:
            topology.text = text.table()
        if args.scale is not None or args.frozen_after is not None:
            topology.input = {**topology.input, **({"scale": args.scale} if args.scale else {}),
                              **({"frozen_after": args.frozen_after} if args.frozen_after is not None else {})}
        scale_config(topology.input)
    except (DatasetError, TopologyError, OSError) as exc:
        raise SetupError(str(exc)) from None
    if dataset.classes is not None and len(dataset.classes) == topology.width_of(topology.layers[-1].neurons[0]):
        topology.output = {"decode": "label", "labels": list(dataset.classes)}
    if live is not None:
        _check_resumable(live, topology, dataset, args)
        live.input = topology.input if args.scale or args.frozen_after else live.input
        topology = live
    return dataset, topology


def _check_resumable(live: Topology, wanted: Topology, dataset: Dataset, args) -> None:
    end, new_end = (t.settings_of(t.layers[-1].neurons[0]) for t in (live, wanted))
    shape = lambda t, e: f"{t.input_width} inputs, {e['units']} {'classes' if e['activation'] == 'softmax' else 'outputs'}"  # noqa: E731
    if live.input_width != wanted.input_width or end["units"] != new_end["units"] or \
            end["activation"] != new_end["activation"]:
        raise SetupError(f"the network in {args.data_dir} has {shape(live, end)}; {args.data or 'the digits'} needs "
                         f"{shape(wanted, new_end)}: --fresh starts a new network for it (or another --data-dir)")


def run(args: argparse.Namespace) -> int:
    try:
        dataset, topology = prepare(args)
    except SetupError as exc:
        print(f"neurox run: {exc}")
        return 2
    if args.no_service and args.metrics_port is not None:
        print("neurox run: --metrics-port reads the Supervisor service; it cannot go with --no-service")
        return 2
    data_dir = os.path.abspath(args.data_dir)
    try:
        extensions = network_children(topology, data_dir) + ([] if args.no_service else service_children(data_dir))
    except TopologyError as exc:
        print(f"neurox run: {exc}")
        return 2
    try:
        if args.fresh:
            wipe_data_dir(data_dir)
        ensure_usable_data_dir(data_dir)
        topology = live_topology(topology, data_dir, resume=False)
    except (DataDirError, OSError) as exc:
        print(f"neurox run: {exc if isinstance(exc, DataDirError) else f'{data_dir}: {exc.strerror}'}")
        return 2
    try:
        network = Network(topology, data_dir, extensions=extensions, preload=PRELOAD + OPS_PRELOAD)
    except DataDirError as exc:
        print(f"neurox run: {exc}")
        return 2
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
    print(f"data: {_describe(args.data, dataset)}\n"
          f"inputs scaled by the network: {scale_config(network.topology.input).describe()} (online)", flush=True)
    print(f"starting {len(network.topology.neurons())} neurons ({_shape(network.topology)}) ...", flush=True)
    try:
        network.start()
    except TreeError as exc:
        print(f"neurox run: the network did not start: {exc}", flush=True)
        return 1
    run_file = write_run_file(network, {"path": None if args.data is None else os.path.abspath(args.data),
                                        "target": args.target, "task": dataset.task, "missing": args.missing,
                                        "text": network.topology.text})
    print(f"up in {time.monotonic() - started:.1f} s. MessengerIn: {network.messenger_in}\n"
          f"  try: neurox ask --data-dir {args.data_dir} --random    (Ctrl-C stops, state is flushed)", flush=True)
    ctx = zmq.Context.instance()
    console = Console(ctx, network.events, network.topology)
    chaos = _Chaos(ctx, network, args.chaos) if args.chaos else None
    stream = Stream(ctx, network.run_dir, network.topology, dataset, window=args.window, batch=args.batch,
                    rate=args.rate, ramp=args.ramp)
    deadline = None if args.duration is None else started + args.duration
    asked = threading.Event()
    """A stop someone asked for: a signal, --duration, or --epochs done."""

    def should_stop() -> bool:
        if chaos:
            chaos.tick()
        console.follow()
        if stop.is_set() or (deadline is not None and time.monotonic() > deadline):
            asked.set()
        return asked.is_set() or not network.tree.alive

    try:
        final = stream.run(args.epochs or 10 ** 9, on_progress=console.report, should_stop=should_stop)
        console.report(final)
        if network.tree.alive:
            asked.set()  # the epochs are done
    finally:
        stream.close()
        if metrics is not None:
            metrics.close()
        died = not asked.is_set()
        if not died:
            print("stopping (flushing every neuron's state) ...", flush=True)
        reason = network.stop()
        console.follow(now=float("inf"))
        console.close()
        if os.path.exists(run_file):
            os.unlink(run_file)
    if died:
        why = network.tree.failure() if network.tree.launcher_exit else why_it_died(reason, console.gave_up)
        print(f"neurox run: the network died: {why}", flush=True)
        return 1
    print("stopped", flush=True)
    return 0


class SetupError(Exception):
    """What keeps a run from starting, in one line."""


def why_it_died(root_exit, gave_up: dict | None) -> str:
    """One line from the root's exit reason and the last ``intensity_exceeded`` event seen, if any."""
    if root_exit is not None and root_exit.signal is not None:
        return f"the root supervisor was killed ({signal.Signals(root_exit.signal).name})"
    if gave_up is not None:
        return (f"{gave_up.get('source', 'a supervisor')} gave up: {gave_up.get('restarts')} restarts in "
                f"{gave_up.get('period')} s, over its restart intensity of {gave_up.get('intensity')}")
    return f"the root supervisor ended ({root_exit.describe() if root_exit else 'no exit reason'})"


def _describe(path: str | None, dataset: Dataset) -> str:
    texts = f" (text columns {', '.join(dataset.text_columns)} encoded into the row)" if dataset.text_columns else ""
    rows = f"{len(dataset.targets):,} rows x {dataset.width} features{texts}"
    dropped = f", {dataset.dropped:,} rows with a missing value dropped" if dataset.dropped else ""
    other = "regression" if dataset.task == "classification" else "classification"
    return (f"{path or 'the bundled digits'}: {rows}{dropped}; task: {dataset.task} ({dataset.reason}"
            f"{'' if path is None else f'; --task {other} to say otherwise'})")


def _shape(topology) -> str:
    return "-".join(str(len(layer.neurons)) for layer in topology.layers)


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
