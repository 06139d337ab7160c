"""``neurox exporter``: the Prometheus ``/metrics`` endpoint for a network already running on this host.

``neurox node`` (``metrics_port`` in its config) and ``neurox run --metrics-port`` serve the same
endpoint themselves; this is for a network started without it. It reads the network's Supervisor
service, found through ``run.json`` in ``--data-dir`` each scrape, so it follows the network across
restarts (``neurox_service_up 0`` while none runs).
"""
from __future__ import annotations

import argparse
import signal
import threading

import zmq

from ..ops import serve_metrics, service_source
from ..runtime import ControlError
from ._discovery import DEFAULT_DATA_DIR, find_network


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("exporter", help="serve a running network's metrics for Prometheus at /metrics")
    parser.add_argument("--data-dir", default=DEFAULT_DATA_DIR, help="the running network's data directory "
                                                                     "(default: %(default)s)")
    parser.add_argument("--port", type=int, default=9464, help="HTTP port (default: %(default)s)")
    parser.add_argument("--address", default="127.0.0.1", help="address to listen on (default: %(default)s)")
    parser.set_defaults(handler=exporter)


def exporter(args: argparse.Namespace) -> int:
    ctx = zmq.Context.instance()

    def picture() -> dict:
        network = find_network(args.data_dir)
        if "run_dir" not in network:
            raise ControlError("no_network", f"no running network in {args.data_dir}")
        return service_source(ctx, network["run_dir"])()

    try:
        server = serve_metrics(picture, args.port, args.address)
    except OSError as exc:
        print(f"neurox exporter: cannot listen on {args.address}:{args.port}: {exc.strerror}", flush=True)
        return 2
    print(f"neurox exporter: http://{args.address}:{server.port}/metrics for {args.data_dir}", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    server.close()
    return 0
