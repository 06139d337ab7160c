"""/metrics for Prometheus: a live learning network through the collector, ``neurox node`` and
``neurox run --metrics-port`` serving it, ``promtool check metrics`` accepting every scrape, and the
Grafana dashboard querying only what is exported."""
import json
import os
import pathlib
import re
import signal
import socket
import subprocess
import sys
import urllib.request

import pytest
import zmq
from prometheus_client.parser import text_string_to_metric_families

from _netutil import learn, neuron_call
from _opsutil import all_reporting, network_with_service, promtool_check, service_of, wait_until
from neurox.ext import Dataset, digits
from neurox.neuron import load_topology
from neurox.ops import FAMILIES, serve_metrics, service_source
from neurox.ops._prometheus import NetworkCollector, families_of
from neurox.runtime import ControlError, Histogram

DASHBOARD = pathlib.Path(__file__).parent.parent / "grafana" / "neurox-dashboard.json"
ONLY_WHEN_REPORTED = {"neurox_neuron_neurotransmitter_level", "neurox_neuron_gain", "neurox_neuron_exploration",
                      "neurox_neuron_learning_rate_factor", "neurox_neuron_state", "neurox_process_deaths_total",
                      "neurox_extension_loss"}
"""Families that appear only when something reports them (the brain's neuromodulation, an input
extension's loss) or happens (a supervisor or a worker dying): checked on a picture that has them,
not on the live scrape."""


def _histogram(*seconds: float) -> dict:
    h = Histogram()
    for s in seconds:
        h.observe(s)
    return h.to_dict()


PROCESSING, LATENCY = _histogram(5e-5, 5e-4, 20.0), _histogram(0.004, 0.005, 0.005)


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        assert response.status == 200
        return response.read().decode()


def samples(text: str) -> dict[str, list]:
    """{sample name: [(labels, value)]} of an exposition."""
    found: dict[str, list] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found.setdefault(sample.name, []).append((sample.labels, sample.value))
    return found


def types(text: str) -> dict[str, str]:
    return dict(re.findall(r"^# TYPE (\S+) (\S+)$", text, re.MULTILINE))


def dashboard_metrics() -> set[str]:
    doc = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in doc["panels"] for t in p.get("targets", [])]
    exprs += [v["definition"] for v in doc["templating"]["list"] if "definition" in v]
    return {name for expr in exprs for name in re.findall(r"\bneurox_[a-z0-9_]+", expr)}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def assert_promtool_accepts(text: str) -> None:
    done = promtool_check(text)
    assert done.returncode == 0 and not (done.stdout + done.stderr).strip(), done.stdout + done.stderr


@pytest.mark.timeout(180)
def test_promtool_accepts_the_metrics_of_a_live_learning_network(tmp_path, no_stray_processes):
    topology = load_topology()
    topology.supervision["period_s"] = 3600.0  # the one restart below stays in the period until the scrape
    with network_with_service(topology, tmp_path) as network:
        all_reporting(network)
        data = digits()
        progress = learn(network, Dataset(data.features[:600], data.targets[:600], data.classes))
        assert progress.answered > 300
        for neuron in topology.neurons():
            neuron_call(network, neuron, "snapshot")  # a flush each, so flush latency is known
        own = neuron_call(network, "L4.n0", "metrics")["samples"]  # idle since learning
        old = neuron_call(network, "L2.n1", "status")["pid"]
        os.kill(old, signal.SIGKILL)

        def settled():
            with service_of(network) as service:
                found = service.neuron_metrics("L2.n1")
                answer = service.neuron_status()
                end = service.neuron_metrics("L4.n0")["metrics"]
                first = service.neuron_metrics("L0.n0")["status"]  # from a report sent after its snapshot
                rows = {r["path"]: r for r in service.tree(detail=True)["rows"]}
            out, layer = rows["root/messenger_out"], rows["root/L2"]  # the service walks the tree at its own pace
            return out["status"].get("metrics", {}).get("recent_accuracy") is not None and found["restarts"] == 1 \
                and layer["status"].get("restarts_in_period") == 1 and found["state"] == "running" and found["report_age_s"] is not None \
                and answer["counts"] == {"running": 9} and end["samples"] == own \
                and isinstance(first.get("last_flush_ms"), float)
        wait_until(settled, 15, "L2.n1 to be replaced and every report to be current")
        server = serve_metrics(service_source(zmq.Context.instance(), network.run_dir), 0)
        try:
            text = scrape(server.port)
        finally:
            server.close()
    assert_promtool_accepts(text)
    found, kinds = samples(text), types(text)
    assert kinds["neurox_neuron_samples_total"] == "counter" and kinds["neurox_neuron_resident_memory_bytes"] == "gauge"
    assert kinds["neurox_neuron_last_flush_duration_seconds"] == "gauge"

    def value(name: str, **labels) -> float:
        matching = [v for lbls, v in found[name] if all(lbls.get(k) == w for k, w in labels.items())]
        assert len(matching) == 1, (name, labels, found.get(name))
        return matching[0]

    assert value("neurox_service_up") == 1
    assert value("neurox_neurons", state="running") == 9
    assert value("neurox_neuron_samples_total", neuron="L4.n0", layer="L4") == own >= progress.answered
    assert value("neurox_neuron_restarts_total", neuron="L2.n1") == 1
    assert value("neurox_neuron_restarts_total", neuron="L2.n0") == 0
    assert value("neurox_neuron_deaths_total", neuron="L2.n1", reason="crash") == 1
    # replaced once, seeded from its siblings -- or, on a loaded machine where none answered in time, otherwise
    seeded = [(lbls["method"], v) for lbls, v in found["neurox_neuron_replacements_total"] if lbls["neuron"] == "L2.n1"]
    assert len(seeded) == 1 and seeded[0][1] == 1 and seeded[0][0] in ("siblings_mean", "own_last_flush", "fresh")
    assert 0 <= value("neurox_accuracy_ratio", extension="messenger_out") <= 1
    assert value("neurox_loss") > 0
    assert 0 < value("neurox_neuron_last_flush_duration_seconds", neuron="L0.n0") < 5
    assert value("neurox_neuron_resident_memory_bytes", neuron="L3.n1") > 10 * 2 ** 20
    assert value("neurox_process_up", path="root/L2", type="supervisor") == 1
    assert value("neurox_supervisor_restarts_in_period", path="root/L2") == 1
    assert value("neurox_supervisor_restarts_in_period", path="root/L3") == 0
    assert value("neurox_extension_operations_total", extension="messenger_in", operation="requests") == 0
    assert kinds["neurox_neuron_processing_seconds"] == kinds["neurox_request_latency_seconds"] == "histogram"
    assert 0.9 * own <= value("neurox_neuron_processing_seconds_count", neuron="L4.n0") <= own
    assert value("neurox_neuron_processing_seconds_bucket", neuron="L4.n0", le="+Inf") == \
        value("neurox_neuron_processing_seconds_count", neuron="L4.n0")
    assert value("neurox_request_latency_seconds_count", extension="messenger_in") == 0  # the stream asks nothing
    assert all(labels["host"] for name, rows in found.items() for labels, _ in rows if name.startswith("neurox_neuron"))
    exported = {s.removesuffix("_total") for s in found} | set(found)
    missing = {m for m in dashboard_metrics() - ONLY_WHEN_REPORTED if m not in exported}
    assert not missing, f"the dashboard queries metrics the live network does not export: {missing}"


def test_neuromodulation_extensions_and_deaths_of_other_processes_are_exported_when_reported():
    picture = {"t": 1000.0, "counts": {"events": 3, "reports": 1},
               "hosts": [{"host": "a", "local": False, "heard_s_ago": 0.5, "loss": None}],
               "processes": [
                   {"host": "a", "path": "root/pfc/L1.n0", "kind": "neuron", "layer": "L1", "pid": 5,
                    "state": "running", "report_age_s": 0.2, "restarts": 0, "deaths": {}, "replacements": {},
                    "status": {"uptime_s": 10.0, "state": "meditative",
                               "neuromodulators": {"levels": {"dopamine": 0.4, "serotonin": 1.1}, "gain": 0.9,
                                                   "learning_rate_factor": 1.2, "exploration": 0.1}},
                    "metrics": {"samples": 7, "processing": PROCESSING}},
                   {"host": "a", "path": "root/messenger_in", "kind": "worker", "layer": None, "pid": 8,
                    "state": "running", "report_age_s": None, "restarts": 0, "deaths": {}, "replacements": {},
                    "status": {"kind": "input", "pid": 8, "requests": 3}, "metrics": {"requests": 3,
                                                                                      "request_latency": LATENCY}},
                   {"host": "a", "path": "root/eye", "kind": "worker", "layer": None, "pid": 9, "state": "running",
                    "report_age_s": None, "restarts": 0, "deaths": {}, "replacements": {},
                    "status": {"kind": "input", "pid": 9, "submitted": 40, "rejected": 1},
                    "metrics": {"submitted": 40, "bad_frames": 1, "in_flight": 2, "rolling_accuracy": 0.75,
                                "mean_loss": 0.5, "scored": 40}},
                   {"host": "a", "path": "root/modulator.pfc", "kind": "worker", "layer": None, "pid": "restarting",
                    "state": "down", "report_age_s": None, "restarts": 2, "deaths": {"crash": 2},
                    "replacements": {}, "status": {}, "metrics": {}}]}
    from prometheus_client import CollectorRegistry, generate_latest
    registry = CollectorRegistry(auto_describe=False)
    registry.register(NetworkCollector(lambda: picture))
    text = generate_latest(registry).decode()
    assert_promtool_accepts(text)
    found = samples(text)
    levels = {lbls["transmitter"]: v for lbls, v in found["neurox_neuron_neurotransmitter_level"]}
    assert levels == {"dopamine": 0.4, "serotonin": 1.1}
    assert found["neurox_neuron_state"] == [({"host": "a", "layer": "L1", "neuron": "L1.n0", "state": "meditative"}, 1.0)]
    assert found["neurox_neuron_gain"][0][1] == 0.9 and found["neurox_neuron_exploration"][0][1] == 0.1
    assert found["neurox_process_deaths_total"][0] == (
        {"host": "a", "path": "root/modulator.pfc", "type": "worker", "reason": "crash"}, 2.0)
    assert {tuple(sorted(lbls.items())): v for lbls, v in found["neurox_process_up"]} == {
        (("host", "a"), ("path", "root/eye"), ("type", "worker")): 1.0,
        (("host", "a"), ("path", "root/messenger_in"), ("type", "worker")): 1.0,
        (("host", "a"), ("path", "root/modulator.pfc"), ("type", "worker")): 0.0}
    eye = {"host": "a", "extension": "eye"}
    assert found["neurox_accuracy_ratio"] == [(eye, 0.75)] and found["neurox_extension_loss"] == [(eye, 0.5)]
    assert found["neurox_extension_in_flight"] == [(eye, 2.0)]
    assert sorted((lbls["operation"], v) for lbls, v in found["neurox_extension_operations_total"]
                  if lbls["extension"] == "eye") == [
        ("bad_frames", 1.0), ("submitted", 40.0)]
    assert {n for n in families_of(picture)} <= set(FAMILIES)
    assert types(text)["neurox_neuron_processing_seconds"] == "histogram"
    buckets = {lbls["le"]: v for lbls, v in found["neurox_neuron_processing_seconds_bucket"]}
    assert buckets["0.0001"] == 1 and buckets["0.001"] == 2 and buckets["10.0"] == 2 and buckets["+Inf"] == 3
    assert found["neurox_neuron_processing_seconds_count"][0][1] == 3
    assert abs(found["neurox_neuron_processing_seconds_sum"][0][1] - 20.00055) < 1e-9
    latency = {lbls["le"]: v for lbls, v in found["neurox_request_latency_seconds_bucket"]
               if lbls["extension"] == "messenger_in"}
    assert latency["0.001"] == 0 and latency["0.005623413"] == 3 and latency["+Inf"] == 3
    assert found["neurox_request_latency_seconds_count"] == [({"host": "a", "extension": "messenger_in"}, 3.0)]


def test_a_scrape_without_the_service_says_so_and_is_still_valid(tmp_path):
    def unreachable():
        raise ControlError("timeout", "no service")
    server = serve_metrics(unreachable, 0)
    try:
        text = scrape(server.port)
    finally:
        server.close()
    assert_promtool_accepts(text)
    assert samples(text) == {"neurox_service_up": [({}, 0.0)]}
    # the standalone exporter for a data directory where nothing runs
    port = free_port()
    exporter = subprocess.Popen([sys.executable, "-m", "neurox.cli", "exporter", "--data-dir", str(tmp_path),
                                 "--port", str(port)], stdout=subprocess.PIPE, text=True)
    try:
        assert "/metrics" in exporter.stdout.readline()
        assert samples(scrape(port)) == {"neurox_service_up": [({}, 0.0)]}
    finally:
        exporter.send_signal(signal.SIGTERM)
        exporter.communicate(timeout=20)
    assert exporter.returncode == 0


@pytest.mark.timeout(180)
def test_the_node_agent_serves_metrics(tmp_path, no_stray_processes):
    port = free_port()
    config = tmp_path / "node.toml"
    config.write_text(f'name = "metered"\ndata_dir = "data"\nmetrics_port = {port}\n'
                      f'[service]\nhost = "node-a"\n')
    env = {k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC")}
    agent = subprocess.Popen([sys.executable, "-m", "neurox.cli", "node", "--config", str(config)],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    try:
        def all_up():
            try:
                text = scrape(port)
            except OSError:
                return None
            up = samples(text).get("neurox_neuron_up", [])
            return text if len(up) == 9 and all(v == 1 for _, v in up) else None
        text = wait_until(all_up, 60, "the node's /metrics to show 9 neurons up")
        assert_promtool_accepts(text)
        assert {lbls["host"] for lbls, _ in samples(text)["neurox_neuron_up"]} == {"node-a"}
    finally:
        agent.send_signal(signal.SIGTERM)
        out, _ = agent.communicate(timeout=60)
    assert agent.returncode == 0, out
    assert f"metrics on http://127.0.0.1:{port}/metrics" in out


@pytest.mark.timeout(180)
def test_neurox_run_offers_metrics_too(tmp_path, no_stray_processes):
    port = free_port()
    run = subprocess.Popen([sys.executable, "-m", "neurox.cli", "run", "--data-dir", str(tmp_path / "data"),
                            "--duration", "60", "--metrics-port", str(port)],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        def learning():
            try:
                found = samples(scrape(port))
            except OSError:
                return None
            return found if found.get("neurox_accuracy_ratio") and found.get("neurox_loss") else None
        found = wait_until(learning, 90, "accuracy and loss at /metrics")
        assert found["neurox_service_up"] == [({}, 1.0)]
        assert_promtool_accepts(scrape(port))
    finally:
        run.send_signal(signal.SIGINT)
        out, _ = run.communicate(timeout=90)
    assert run.returncode == 0 and f"http://127.0.0.1:{port}/metrics" in out, out
    done = subprocess.run([sys.executable, "-m", "neurox.cli", "run", "--data-dir", str(tmp_path / "data"),
                           "--no-service", "--metrics-port", str(port)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "cannot go with --no-service" in done.stdout


def test_the_grafana_dashboard_queries_only_exported_metrics():
    doc = json.loads(DASHBOARD.read_text())
    assert doc["uid"] and doc["title"] == "NeuroX"
    names = dashboard_metrics()
    assert names, "the dashboard has no NeuroX query"
    histograms = {n for n, (kind, _, _) in FAMILIES.items() if kind == "histogram"}
    unknown = {n for n in names if n not in FAMILIES
               and not any(n == f"{h}{suffix}" for h in histograms for suffix in ("_bucket", "_sum", "_count"))}
    assert not unknown, f"the dashboard queries metrics that are not exported: {sorted(unknown)}"
    panels = [p for p in doc["panels"] if p["type"] != "row"]
    assert all(p["targets"] and p["datasource"]["uid"] == "${datasource}" for p in panels)
    ids = [p["id"] for p in doc["panels"]]
    assert len(ids) == len(set(ids))
    # the brief's list: messages, samples, accuracy, loss, restarts, deaths, replacements, flush latency,
    # neurotransmitter levels and memory each have a panel
    for wanted in ("neurox_neuron_forward_packets_total", "neurox_neuron_samples_total", "neurox_accuracy_ratio",
                   "neurox_loss", "neurox_neuron_restarts_total", "neurox_neuron_deaths_total",
                   "neurox_neuron_replacements_total", "neurox_neuron_last_flush_duration_seconds",
                   "neurox_neuron_neurotransmitter_level", "neurox_neuron_resident_memory_bytes",
                   "neurox_request_latency_seconds_bucket", "neurox_neuron_processing_seconds_bucket"):
        assert wanted in names, wanted
