"""Prometheus: the network's metrics at ``/metrics``, read from the Supervisor service's picture.

:class:`NetworkCollector` is a ``prometheus_client`` custom collector: at every scrape it asks the
service for its ``picture`` (one request) and turns it into metric families -- it keeps no state of
its own, so what Prometheus sees is exactly what the service holds. :func:`serve_metrics` serves it
over HTTP from a thread of the node agent (``neurox node``) or of ``neurox run --metrics-port``.

Names follow Prometheus's conventions: ``neurox_`` first, base units (``_seconds``, ``_bytes``,
``_ratio``), ``_total`` on counters. Labels: ``host`` everywhere (the host's name in the picture);
``layer`` and ``neuron`` on a neuron's series; ``path`` and ``type`` on other processes; ``extension``
on an extension's. Every family is declared in :data:`FAMILIES` (the Grafana dashboard's test checks its
queries against it); docs/operations.md lists them with their meaning.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import zmq
from prometheus_client import start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from ..runtime import HISTOGRAM_BOUNDS, ControlError, rss_bytes
from ._client import ServiceClient
from ._service import service_endpoint

HOST_SILENT_AFTER_S = 5.0
NEURON = ("host", "layer", "neuron")
PROCESS = ("host", "path", "type")

# family name (as exposed, counters with _total) -> (type, help, labels)
FAMILIES: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "neurox_service_up": ("gauge", "1 if the Supervisor service answered this scrape, else 0.", ()),
    "neurox_service_events_total": ("counter", "Events the Supervisor service took from the event buses.", ()),
    "neurox_service_reports_total": ("counter", "Neuron reports the Supervisor service took from the event buses.", ()),
    "neurox_host_up": ("gauge", "1 if the host's event bus was heard from in the last 5 seconds.", ("host",)),
    "neurox_neurons": ("gauge", "Neurons by state (running, silent, restarting, down, stopped, unknown).",
                       ("host", "state")),
    "neurox_loss": ("gauge", "Mean loss of the last 1000 answers that were learnt from (from the outputs bus).",
                    ("host",)),
    "neurox_accuracy_ratio": ("gauge", "Prequential accuracy of recent scored answers, as an extension counts it.",
                              ("host", "extension")),
    "neurox_extension_loss": ("gauge", "Mean loss of the answers to an input extension's samples, when it reports one.",
                              ("host", "extension")),
    "neurox_neuron_up": ("gauge", "1 if the neuron runs and reported within the last seconds, else 0.", NEURON),
    "neurox_neuron_start_time_seconds": ("gauge", "When the running neuron process started (Unix time).", NEURON),
    "neurox_neuron_report_age_seconds": ("gauge", "Seconds since the neuron's last report.", NEURON),
    "neurox_neuron_forward_packets_total": ("counter", "Packets the neuron computed forward.", NEURON),
    "neurox_neuron_samples_total": ("counter", "Samples (rows) the neuron computed forward.", NEURON),
    "neurox_neuron_backward_packets_total": ("counter", "Packets whose gradients came back and were learnt from.",
                                             NEURON),
    "neurox_neuron_weight_updates_total": ("counter", "Updates of the neuron's weights.", NEURON),
    "neurox_neuron_missed_inputs_total": ("counter", "Inputs that missed the join deadline (taken as zeros).", NEURON),
    "neurox_neuron_missed_gradients_total": ("counter", "Gradients that missed the join deadline.", NEURON),
    "neurox_neuron_late_parts_total": ("counter", "Parts of packets that came after their join was done.", NEURON),
    "neurox_neuron_expired_passes_total": ("counter", "Forward passes kept for learning whose gradient never came.",
                                           NEURON),
    "neurox_neuron_dropped_sends_total": ("counter", "Frames dropped because a link's queue was full.", NEURON),
    "neurox_neuron_flush_errors_total": ("counter", "LevelDB flushes that failed.", NEURON),
    "neurox_neuron_bad_frames_total": ("counter", "Frames and control requests the neuron rejected.", NEURON),
    "neurox_neuron_flushes_total": ("counter", "LevelDB flushes of the neuron's state.", NEURON),
    "neurox_neuron_pending_joins": ("gauge", "Packets waiting for the rest of their inputs.", NEURON),
    "neurox_neuron_pending_gradients": ("gauge", "Packets waiting for the rest of their gradients.", NEURON),
    "neurox_neuron_kept_passes": ("gauge", "Forward passes kept until their gradients come back.", NEURON),
    "neurox_neuron_resident_memory_bytes": ("gauge", "Resident memory of the neuron process.", NEURON),
    "neurox_neuron_last_flush_duration_seconds": ("gauge", "How long the neuron's last LevelDB flush took.", NEURON),
    "neurox_neuron_last_flush_timestamp_seconds": ("gauge", "When the neuron last flushed (Unix time).", NEURON),
    "neurox_neuron_learning_rate": ("gauge", "The neuron's configured learning rate.", NEURON),
    "neurox_neuron_learning": ("gauge", "1 if the neuron learns, 0 if learning is paused.", NEURON),
    "neurox_neuron_persistence_degraded": ("gauge", "1 while the neuron cannot write its LevelDB (it serves from "
                                           "memory and retries), else 0.", NEURON),
    "neurox_neuron_weight_mean": ("gauge", "Mean of the neuron's weights.", NEURON),
    "neurox_neuron_weight_stddev": ("gauge", "Standard deviation of the neuron's weights.", NEURON),
    "neurox_neuron_restarts_total": ("counter", "Restarts of the neuron by its supervisor.", NEURON),
    "neurox_neuron_deaths_total": ("counter", "Exits of the neuron its supervisor did not ask for, by kind.",
                                   (*NEURON, "reason")),
    "neurox_neuron_replacements_total": ("counter", "Replacements that started from other weights, by method.",
                                         (*NEURON, "method")),
    "neurox_neuron_state": ("gauge", "1 for the neuron's current state (awake, meditative, maintenance).",
                            (*NEURON, "state")),
    "neurox_neuron_neurotransmitter_level": ("gauge", "Neurotransmitter level the neuron last received.",
                                             (*NEURON, "transmitter")),
    "neurox_neuron_gain": ("gauge", "The neuron's gain as set by its neuromodulators.", NEURON),
    "neurox_neuron_learning_rate_factor": ("gauge", "Factor on the learning rate set by neuromodulators.", NEURON),
    "neurox_neuron_exploration": ("gauge", "Exploration set by neuromodulators.", NEURON),
    "neurox_process_up": ("gauge", "1 if the process (a supervisor or a worker other than a neuron) runs.", PROCESS),
    "neurox_process_resident_memory_bytes": ("gauge", "Resident memory of the process.", PROCESS),
    "neurox_process_restarts_total": ("counter", "Restarts of the process by its supervisor.", PROCESS),
    "neurox_process_deaths_total": ("counter", "Exits of the process its supervisor did not ask for, by kind.",
                                    (*PROCESS, "reason")),
    "neurox_supervisor_restarts_in_period": ("gauge", "Restarts the supervisor counts against its intensity now.",
                                             ("host", "path")),
    "neurox_supervisor_max_restarts": ("gauge", "Restarts allowed in one period before the supervisor gives up.",
                                       ("host", "path")),
    "neurox_supervisor_period_seconds": ("gauge", "The period of the supervisor's restart intensity.",
                                         ("host", "path")),
    "neurox_extension_operations_total": ("counter", "What an extension counted (requests, replies, errors ...).",
                                          ("host", "extension", "operation")),
    "neurox_extension_in_flight": ("gauge", "Requests an extension holds, waiting for their answers.",
                                   ("host", "extension")),
    "neurox_request_latency_seconds": ("histogram", "Seconds from a request's arrival at MessengerIn to its answer "
                                                    "going back from there.", ("host", "extension")),
    "neurox_neuron_processing_seconds": ("histogram", "Seconds from a packet's arrival at the neuron to its send.",
                                         NEURON),
}

NEURON_COUNTERS = {"forwards": "neurox_neuron_forward_packets_total", "samples": "neurox_neuron_samples_total",
                   "backwards": "neurox_neuron_backward_packets_total",
                   "updates": "neurox_neuron_weight_updates_total",
                   "missed_inputs": "neurox_neuron_missed_inputs_total",
                   "missed_gradients": "neurox_neuron_missed_gradients_total",
                   "late": "neurox_neuron_late_parts_total", "expired": "neurox_neuron_expired_passes_total",
                   "dropped_sends": "neurox_neuron_dropped_sends_total",
                   "flush_errors": "neurox_neuron_flush_errors_total", "bad_frames": "neurox_neuron_bad_frames_total"}
NEURON_GAUGES = {"pending_joins": "neurox_neuron_pending_joins", "pending_gradients": "neurox_neuron_pending_gradients",
                 "kept": "neurox_neuron_kept_passes", "rss_bytes": "neurox_neuron_resident_memory_bytes"}
EXTENSION_KINDS = ("input", "output", "extension")


def _family(name: str) -> Metric:
    kind, text, labels = FAMILIES[name]
    if kind == "counter":
        return CounterMetricFamily(name.removesuffix("_total"), text, labels=labels)
    if kind == "histogram":
        return HistogramMetricFamily(name, text, labels=labels)
    return GaugeMetricFamily(name, text, labels=labels)


class _Families(dict):
    """The families of one scrape, made on first use."""

    def add(self, name: str, labels: tuple, value) -> None:
        if isinstance(value, bool):
            value = int(value)
        if not isinstance(value, (int, float)):
            return
        family = self.get(name)
        if family is None:
            family = self[name] = _family(name)
        family.add_metric([str(v) for v in labels], float(value))

    def add_histogram(self, name: str, labels: tuple, histogram) -> None:
        """A wire-form histogram (``neurox.runtime.Histogram.to_dict``) as cumulative ``le`` buckets;
        one with other buckets than NeuroX's is left out."""
        if not isinstance(histogram, dict) or histogram.get("bounds") != list(HISTOGRAM_BOUNDS):
            return
        counts = histogram.get("counts", [])
        if len(counts) != len(HISTOGRAM_BOUNDS) + 1:
            return
        buckets, seen = [], 0
        for bound, n in zip((*map(repr, HISTOGRAM_BOUNDS), "+Inf"), counts):
            seen += n
            buckets.append((bound, seen))
        family = self.get(name)
        if family is None:
            family = self[name] = _family(name)
        family.add_metric([str(v) for v in labels], buckets, float(histogram.get("sum", 0.0)))


class NetworkCollector(Collector):
    """A custom collector: ``source()`` returns the service's ``picture`` (or raises ControlError)."""

    def __init__(self, source: Callable[[], dict]):
        self.source = source

    def describe(self) -> list:
        return []  # the families depend on what the network reports: nothing to describe up front

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("neurox_service_up", FAMILIES["neurox_service_up"][1])
        try:
            picture = self.source()
        except (ControlError, zmq.ZMQError):
            up.add_metric([], 0.0)
            yield up
            return
        up.add_metric([], 1.0)
        yield up
        yield from families_of(picture).values()


def families_of(picture: dict) -> dict[str, Metric]:
    """Every metric family for one picture (a pure function of it)."""
    f = _Families()
    now = picture.get("t", time.time())
    counts = picture.get("counts", {})
    f.add("neurox_service_events_total", (), counts.get("events", 0))
    f.add("neurox_service_reports_total", (), counts.get("reports", 0))
    local_hosts = set()
    for host in picture.get("hosts", []):
        heard = host.get("heard_s_ago")
        f.add("neurox_host_up", (host["host"],), heard is not None and heard < HOST_SILENT_AFTER_S)
        if host.get("loss") is not None:
            f.add("neurox_loss", (host["host"],), host["loss"])
        if host.get("local"):
            local_hosts.add(host["host"])
    states: dict[tuple, int] = {}
    for process in picture.get("processes", []):
        if process["kind"] == "neuron":
            key = (process["host"], process["state"])
            states[key] = states.get(key, 0) + 1
            _neuron(f, process, now)
        else:
            _process(f, process, process["host"] in local_hosts)
    for (host, state), n in sorted(states.items()):
        f.add("neurox_neurons", (host, state), n)
    return f


def _neuron(f: _Families, p: dict, now: float) -> None:
    labels = (p["host"], p.get("layer") or "", p["path"].rsplit("/", 1)[-1])
    status, metrics = p.get("status", {}), p.get("metrics", {})
    up = p["state"] == "running"
    f.add("neurox_neuron_up", labels, up)
    age = p.get("report_age_s")
    if age is not None:
        f.add("neurox_neuron_report_age_seconds", labels, age)
        if up and isinstance(status.get("uptime_s"), (int, float)):
            f.add("neurox_neuron_start_time_seconds", labels, now - age - status["uptime_s"])
    for key, name in NEURON_COUNTERS.items():
        f.add(name, labels, metrics.get(key))
    for key, name in NEURON_GAUGES.items():
        f.add(name, labels, metrics.get(key))
    f.add("neurox_neuron_flushes_total", labels, status.get("flushes"))
    if isinstance(status.get("last_flush_ms"), (int, float)):
        f.add("neurox_neuron_last_flush_duration_seconds", labels, status["last_flush_ms"] / 1000.0)
    f.add("neurox_neuron_last_flush_timestamp_seconds", labels, status.get("last_flush_t"))
    f.add("neurox_neuron_learning_rate", labels, status.get("learning_rate"))
    f.add("neurox_neuron_learning", labels, status.get("learning"))
    if "persistence" in status:
        f.add("neurox_neuron_persistence_degraded", labels, status["persistence"] == "degraded")
    weights = metrics.get("weights") or {}
    f.add("neurox_neuron_weight_mean", labels, weights.get("mean"))
    f.add("neurox_neuron_weight_stddev", labels, weights.get("std"))
    f.add("neurox_neuron_restarts_total", labels, p.get("restarts", 0))
    f.add_histogram("neurox_neuron_processing_seconds", labels, metrics.get("processing"))
    for reason, n in sorted(p.get("deaths", {}).items()):
        f.add("neurox_neuron_deaths_total", (*labels, reason), n)
    for method, n in sorted(p.get("replacements", {}).items()):
        f.add("neurox_neuron_replacements_total", (*labels, method), n)
    if isinstance(status.get("state"), str):
        f.add("neurox_neuron_state", (*labels, status["state"]), 1)
    chemistry = status.get("neuromodulators") or metrics.get("neuromodulators")
    if isinstance(chemistry, dict):
        for transmitter, level in sorted((chemistry.get("levels") or {}).items()):
            f.add("neurox_neuron_neurotransmitter_level", (*labels, transmitter), level)
        f.add("neurox_neuron_gain", labels, chemistry.get("gain"))
        f.add("neurox_neuron_learning_rate_factor", labels, chemistry.get("learning_rate_factor"))
        f.add("neurox_neuron_exploration", labels, chemistry.get("exploration"))


def _process(f: _Families, p: dict, local: bool) -> None:
    kind = "supervisor" if p["kind"] == "supervisor" else "worker"
    labels = (p["host"], p["path"], kind)
    status, metrics = p.get("status", {}), p.get("metrics", {})
    up = p["state"] == "running"
    f.add("neurox_process_up", labels, up)
    rss = metrics.get("rss_bytes")
    if rss is None and up and local and isinstance(p.get("pid"), int):
        rss = rss_bytes(p["pid"])
    f.add("neurox_process_resident_memory_bytes", labels, rss)
    f.add("neurox_process_restarts_total", labels, p.get("restarts", 0))
    for reason, n in sorted(p.get("deaths", {}).items()):
        f.add("neurox_process_deaths_total", (*labels, reason), n)
    if kind == "supervisor":
        f.add("neurox_supervisor_restarts_in_period", (p["host"], p["path"]), status.get("restarts_in_period"))
        f.add("neurox_supervisor_max_restarts", (p["host"], p["path"]), status.get("intensity"))
        f.add("neurox_supervisor_period_seconds", (p["host"], p["path"]), status.get("period"))
        return
    if status.get("kind") not in EXTENSION_KINDS:
        return
    name = p["path"].rsplit("/", 1)[-1]
    for key, value in sorted(metrics.items()):
        # an extension's counters are what its status shows besides its pid (the Extension base puts them there)
        if key in status and key not in ("pid", "uptime_s") and isinstance(value, int) and not isinstance(value, bool):
            f.add("neurox_extension_operations_total", (p["host"], name, key), value)
    f.add("neurox_extension_operations_total", (p["host"], name, "bad_frames"), metrics.get("bad_frames"))
    f.add("neurox_extension_in_flight", (p["host"], name), metrics.get("in_flight"))
    f.add_histogram("neurox_request_latency_seconds", (p["host"], name), metrics.get("request_latency"))
    accuracy = metrics.get("recent_accuracy", metrics.get("rolling_accuracy"))
    f.add("neurox_accuracy_ratio", (p["host"], name), accuracy)
    f.add("neurox_extension_loss", (p["host"], name), metrics.get("mean_loss"))


def service_source(ctx: zmq.Context, run_dir: str, timeout: float = 3.0) -> Callable[[], dict]:
    """A ``source`` for :class:`NetworkCollector`: the picture of the service in ``run_dir``, one
    client per call (scrapes come on threads of their own)."""
    endpoint = service_endpoint(run_dir)

    def picture() -> dict:
        client = ServiceClient(ctx, endpoint, timeout)
        try:
            return client.picture()
        finally:
            client.close()
    return picture


@dataclass
class MetricsServer:
    """The ``/metrics`` HTTP endpoint, served from a thread; :meth:`close` stops it."""

    server: object
    thread: object
    address: str

    @property
    def port(self) -> int:
        return self.server.server_port

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5.0)


def serve_metrics(source: Callable[[], dict], port: int, address: str = "127.0.0.1") -> MetricsServer:
    """Serve the collector on ``http://address:port/metrics`` (port 0: any free port; see ``.port``)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(NetworkCollector(source))
    server, thread = start_http_server(port, address, registry)
    return MetricsServer(server, thread, address)
