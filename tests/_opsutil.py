"""Helpers for the operations tests: a real network with its Supervisor service, and waiting on it."""
from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import time

import zmq

from neurox.cli._discovery import write_run_file
from neurox.ext import PRELOAD, messenger_children
from neurox.neuron import Network, Topology
from neurox.ops import PRELOAD as OPS_PRELOAD, ServiceClient, ServiceConfig, service_children, service_endpoint


@contextlib.contextmanager
def network_with_service(topology: Topology, data_dir, config: ServiceConfig | None = None, service: bool = True):
    """A started network (MessengerIn/Out and, unless ``service=False``, the Supervisor service) with
    its ``run.json`` written, stopped on the way out."""
    data_dir = str(data_dir)
    extensions = messenger_children(data_dir) + (service_children(data_dir, config) if service else [])
    network = Network(topology, data_dir, extensions=extensions, preload=PRELOAD + OPS_PRELOAD)
    network.start()
    try:
        write_run_file(network)
        yield network
    finally:
        network.stop()


def service_of(network: Network, timeout: float = 5.0) -> ServiceClient:
    return ServiceClient(zmq.Context.instance(), service_endpoint(network.run_dir), timeout)


def wait_until(predicate, timeout: float = 15.0, what: str = "the condition"):
    """Call ``predicate()`` until it returns something truthy (returned); AssertionError after ``timeout``."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(0.05)
    raise AssertionError(f"waited {timeout} s for {what}; last saw {last!r}")


def all_reporting(network: Network, host: str | None = None, timeout: float = 15.0) -> dict:
    """Wait until the service shows every neuron of ``network`` running and reporting; its answer."""
    expected = set(network.topology.neurons())

    def ready():
        with service_of(network) as service:
            answer = service.neuron_status(host=host)
        running = {r["id"] for r in answer["neurons"] if r["state"] == "running" and r["report_age_s"] is not None}
        return answer if expected <= running else None
    return wait_until(ready, timeout, "every neuron to report to the service")


def promtool() -> str:
    """promtool from the venv (tests/setup_tools.sh puts it there) or the PATH; it must be installed."""
    beside = os.path.join(os.path.dirname(sys.executable), "promtool")
    found = beside if os.access(beside, os.X_OK) else shutil.which("promtool")
    assert found, "promtool is not installed: run `bash tests/setup_tools.sh .venv` (make test does)"
    return found


def promtool_check(text: str) -> subprocess.CompletedProcess:
    return subprocess.run([promtool(), "check", "metrics"], input=text, capture_output=True, text=True, timeout=60)
