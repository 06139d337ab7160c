"""The Supervisor service against real networks: its picture, its queries and their errors, deaths,
several hosts, its own restart, and the probes and the TUI's observer using it (or not)."""
import asyncio
import json
import os
import pathlib
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import msgpack
import pytest
import zmq

from _netutil import neuron_call
from _opsutil import all_reporting, network_with_service, promtool_check, service_of, wait_until
from neurox.neuron._topology import DIAMOND_TOML
from neurox.ops import Peer, ServiceClient, ServiceConfig, service_endpoint
from neurox.ops._picture import SILENT_AFTER_S, HostView, Picture
from neurox.neuron import load_topology
from neurox.runtime import ControlError, create_keys, pack
from neurox.supervisor_tree import SupervisorClient, control_endpoint
from neurox.tui import Endpoints
from neurox.tui._observer import Observer


def probe(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "neurox.cli", "probe", *args], capture_output=True, text=True,
                          timeout=60)


@pytest.mark.timeout(120)
def test_the_service_keeps_the_picture_of_a_live_network(tmp_path, no_stray_processes):
    topology = load_topology()
    with network_with_service(topology, tmp_path, ServiceConfig(host="alpha")) as network:
        answer = all_reporting(network)
        assert answer["host"] == "alpha" and answer["counts"] == {"running": 9}
        rows = {r["id"]: r for r in answer["neurons"]}
        assert set(rows) == set(topology.neurons())
        for neuron_id, row in rows.items():
            own = neuron_call(network, neuron_id, "status")
            assert row["pid"] == own["pid"] and row["layer"] == own["layer"] and row["host"] == "alpha"
            assert row["control"] == control_endpoint(network.run_dir, f"root/{own['layer']}/{neuron_id}")
            assert row["report_age_s"] < 3 and row["uptime_s"] > 0
        with service_of(network) as service:
            detail = service.neuron_metrics("L2.n1")
            tree = service.tree()
            events = service.recent_events(limit=1000)
            status = service.status()
        assert detail["status"]["learning_rate"] == neuron_call(network, "L2.n1", "status")["learning_rate"]
        assert {"forwards", "samples", "rss_bytes", "weights"} <= set(detail["metrics"])
        assert detail["history"] and detail["restarts"] == 0 and detail["deaths_by_reason"] == {}
        paths = [r["path"] for r in tree["rows"]]
        assert paths[0] == "root" and tree["local"] == "alpha"
        assert {f"root/{topology.layer_of(n).name}/{n}" for n in topology.neurons()} <= set(paths)
        assert {"root/L0", "root/reshaper", "root/messenger_in", "root/messenger_out", "root/service"} <= set(paths)
        assert all(r["state"] == "running" and isinstance(r["pid"], int) for r in tree["rows"])
        # the history from before the service subscribed is there too: every neuron's start
        started = {e["id"] for e in events if e["event"] == "child_started"}
        assert set(topology.neurons()) <= started
        assert not [e for e in events if e["event"] == "neuron_report"]  # reports are state, not history
        assert status["neurons"] == 9 and status["reports"] > 0 and status["hosts"][0]["walk_error"] is None

        # every worker the service polls answers its metrics, the reshaper too (it used to refuse the op: a bad
        # frame on the first screen of every `neurox run`)
        def reshaper_metrics():
            with service_of(network) as service:
                row = next(r for r in service.tree(detail=True)["rows"] if r["path"] == "root/reshaper")
            return row["status"].get("metrics")
        metrics = wait_until(reshaper_metrics, what="the reshaper's metrics in the picture")
        assert metrics["changes"] == {} and metrics["bad_frames"] == 0, metrics


@pytest.mark.timeout(120)
def test_a_killed_neuron_is_seen_down_restarted_and_counted(tmp_path, no_stray_processes):
    with network_with_service(load_topology(), tmp_path) as network:
        all_reporting(network)
        old_pid = neuron_call(network, "L2.n1", "status")["pid"]
        os.kill(old_pid, signal.SIGKILL)

        def replaced():
            with service_of(network) as service:
                found = service.neuron_metrics("L2.n1")
            return found if found["restarts"] == 1 and found["pid"] not in (old_pid, "restarting") \
                and found["report_age_s"] is not None and found["state"] == "running" else None
        found = wait_until(replaced, 15, "the service to see L2.n1 replaced")
        assert found["deaths_by_reason"] == {"crash": 1}
        assert found["pid"] == neuron_call(network, "L2.n1", "status")["pid"]
        with service_of(network) as service:
            exits = service.recent_events(prefix="child_exited")
        assert exits[-1]["id"] == "L2.n1" and exits[-1]["reason"]["signal"] == signal.SIGKILL

        def walked():  # the layer supervisor's own count comes with the next walk of the tree
            with service_of(network) as service:
                rows = {r["path"]: r for r in service.tree()["rows"]}
            return rows if rows["root/L2"]["restarts_in_period"] == 1 else None
        assert wait_until(walked, 5, "a walk after the restart")["root/L2/L2.n1"]["restarts"] == 1


@pytest.mark.timeout(120)
def test_a_stopped_neuron_is_shown_stopped_and_still_answered_about(tmp_path, no_stray_processes):
    with network_with_service(load_topology(), tmp_path) as network:
        all_reporting(network)
        layer = SupervisorClient(control_endpoint(network.run_dir, "root/L2"))
        try:
            assert layer.terminate_child("L2.n2") == "ok"

            def stopped():
                with service_of(network) as service:
                    found = service.neuron_metrics("L2.n2")
                return found if found["state"] == "stopped" else None
            found = wait_until(stopped, 10, "L2.n2 to be shown stopped")
            assert found["pid"] == "undefined" and found["uptime_s"] is None
            assert found["metrics"]["samples"] == 0  # its last report is still there to read
            with service_of(network) as service:
                counts = service.neuron_status()["counts"]
            assert counts == {"running": 8, "stopped": 1}
            layer.restart_child("L2.n2")
            all_reporting(network)
        finally:
            layer.close()


@pytest.mark.timeout(120)
def test_bad_queries_get_clear_errors_and_crash_nothing(tmp_path, no_stray_processes):
    with network_with_service(load_topology(), tmp_path) as network:
        all_reporting(network)
        with service_of(network) as service:
            pid = service.status()["pid"]
            cases = [({"op": "neuron_metrics"}, "bad_request", "neuron_metrics: id is required (accepted str of length >= 1)"),
                     ({"op": "neuron_metrics", "id": 7}, "bad_request",
                      "neuron_metrics: id has the wrong type: accepted str, got 7 (int)"),
                     ({"op": "neuron_metrics", "id": "L9.n9"}, "not_found", "known: L0.n0, L1.n0"),
                     ({"op": "neuron_metrics", "id": "L2.n1", "host": "elsewhere"}, "not_found", "no host 'elsewhere'"),
                     ({"op": "neuron_status", "host": 3}, "bad_request",
                      "neuron_status: host has the wrong type: accepted str, got 3 (int)"),
                     ({"op": "neuron_status", "layer": ["L2"]}, "bad_request",
                      "neuron_status: layer has the wrong type: accepted str, got ['L2'] (array)"),
                     ({"op": "tree", "detail": "yes"}, "bad_request", "tree: detail has the wrong type: accepted bool"),
                     ({"op": "tree", "colour": 1}, "bad_request", "tree: unknown key 'colour'; accepted: host, detail"),
                     ({"op": "recent_events", "limit": -1}, "bad_request", "recent_events: limit: accepted int >= 0, got -1"),
                     ({"op": "recent_events", "prefix": 5}, "bad_request", "recent_events: prefix has the wrong type"),
                     ({"op": "shutdown_everything"}, "unknown_op", "neuron_metrics")]
            for request, error, detail in cases:
                with pytest.raises(ControlError) as caught:
                    service.call(**request)
                assert caught.value.error == error and detail in caught.value.detail, request
            # garbage instead of a request
            sock = zmq.Context.instance().socket(zmq.DEALER)
            sock.setsockopt(zmq.LINGER, 0)
            sock.connect(service_endpoint(network.run_dir))
            for body in (b"\xc1\xc1 not msgpack", pack([1, 2, 3]), b"\x92"):
                sock.send_multipart([b"", body])
                assert sock.poll(3000)
                reply = msgpack.unpackb(sock.recv_multipart()[-1])
                assert reply["ok"] is False and reply["error"] in ("malformed", "wrong_type")
            sock.close()
            assert service.neuron_status(layer="L2")["counts"] == {"running": 3}
            assert service.status()["pid"] == pid  # the same process answered throughout
            assert service.call("metrics")["bad_frames"] == 12  # not_found is an answer, not a bad request


@pytest.mark.timeout(180)
def test_one_service_watches_several_hosts(tmp_path, no_stray_processes):
    """Two networks stand for two hosts: host a's service subscribes to b's bus and walks b's tree too."""
    topology = load_topology()
    with network_with_service(topology, tmp_path / "b", service=False) as b:
        peer = Peer("b", b.events, b.control, b.tree.events_control)
        with network_with_service(topology, tmp_path / "a", ServiceConfig(host="a", peers=(peer,))) as a:
            all_reporting(a, host="a")
            all_reporting(a, host="b")
            with service_of(a) as service:
                answer = service.neuron_status()
                assert answer["counts"] == {"running": 18}
                assert {h["host"] for h in answer["hosts"]} == {"a", "b"}
                with pytest.raises(ControlError) as caught:
                    service.neuron_metrics("L2.n1")
                assert caught.value.error == "ambiguous" and "give a host" in caught.value.detail
                on_b = service.neuron_metrics("L2.n1", host="b")
                assert on_b["pid"] == neuron_call(b, "L2.n1", "status")["pid"] and on_b["host"] == "b"
                rows = service.tree(host="b")["rows"]
                assert rows[0]["path"] == "root" and {r["host"] for r in rows} == {"b"}
                assert "root/L2/L2.n1" in {r["path"] for r in rows}
            os.kill(on_b["pid"], signal.SIGKILL)

            def counted():
                with service_of(a) as service:
                    return service.neuron_metrics("L2.n1", host="b")["restarts"] == 1
            wait_until(counted, 15, "a's service to count the restart on b")
            with service_of(a) as service:
                assert service.neuron_metrics("L2.n1", host="a")["restarts"] == 0
                exits = service.recent_events(prefix="child_exited", host="b")
            assert exits and exits[-1]["host"] == "b"
            # the probes show both hosts
            done = probe("status", "--json", "--data-dir", str(tmp_path / "a"))
            assert done.returncode == 0 and {r["host"] for r in json.loads(done.stdout)} == {"a", "b"}


@pytest.mark.timeout(120)
def test_the_service_rebuilds_its_picture_after_it_is_killed(tmp_path, no_stray_processes):
    with network_with_service(load_topology(), tmp_path) as network:
        all_reporting(network)
        victim = neuron_call(network, "L1.n0", "status")["pid"]
        os.kill(victim, signal.SIGKILL)
        wait_until(lambda: neuron_call(network, "L1.n0", "status")["pid"] != victim, 10)
        with service_of(network) as service:
            service_pid = service.status()["pid"]
        os.kill(service_pid, signal.SIGKILL)

        def back():
            try:
                with service_of(network, timeout=1.0) as service:
                    return service.status()["pid"] != service_pid
            except ControlError:
                return False
        wait_until(back, 15, "the service to be restarted")
        answer = all_reporting(network)
        rows = {r["id"]: r for r in answer["neurons"]}
        assert rows["L1.n0"]["restarts"] == 1  # counted again from the bus's history


@pytest.mark.timeout(150)
def test_probes_and_the_tui_observer_use_the_service_and_fall_back_without_it(tmp_path, no_stray_processes):
    topology = load_topology()
    neurons = {f"root/{topology.layer_of(n).name}/{n}" for n in topology.neurons()}
    with network_with_service(topology, tmp_path, ServiceConfig(host="here")) as network:
        all_reporting(network)
        target = ("--data-dir", str(tmp_path))
        rows = json.loads(probe("status", "--json", *target).stdout)
        assert neurons <= {r["path"] for r in rows} and {r["host"] for r in rows} == {"here"}
        direct = json.loads(probe("status", "--json", "--direct", *target).stdout)
        assert neurons <= {r["path"] for r in direct} and "host" not in direct[0]
        metrics = json.loads(probe("metrics", "L2.n1", *target).stdout)
        assert "forwards" in metrics and metrics["supervision"]["state"] == "running"
        done = probe("metrics", "L7.n7", *target)
        assert done.returncode == 1 and "not_found: no neuron 'L7.n7'" in done.stdout
        recent = [json.loads(line) for line in probe("events", "--recent", "50", "--count", "0", *target).stdout.splitlines()]
        assert recent and all(e["host"] == "here" and e["event"] != "neuron_report" for e in recent)
        assert json.loads(probe("service", *target).stdout)["host"] == "here"

        async def observe():
            observer = Observer(Endpoints.from_data_dir(str(tmp_path)))
            try:
                via_service = await observer.snapshot()
                assert observer.via_service
                seen = {r.path: r for r in via_service}
                assert neurons <= set(seen) and seen["root/L2/L2.n1"].is_neuron
                assert seen["root/L2/L2.n1"].status["metrics"]["rss_bytes"] > 0
                assert seen["root"].status["strategy"] == "one_for_one"
                # without the service: the same tree, asked of every process
                root = SupervisorClient(network.control)
                try:
                    root.terminate_child("service")
                finally:
                    root.close()
                direct_rows = await observer.snapshot()
                assert not observer.via_service and neurons <= {r.path for r in direct_rows}
            finally:
                observer.close()
        asyncio.run(observe())
        rows = json.loads(probe("status", "--json", *target).stdout)
        assert neurons <= {r["path"] for r in rows} and "host" not in rows[0]
        assert probe("service", *target).returncode == 3


def test_the_picture_tells_a_maintenance_twin_from_the_neuron_it_copies():
    picture = Picture([HostView("h", "ipc://x", local=True)])
    now = time.time()
    for source in ("root/L1", "root/maintenance_pool"):
        picture.on_event("h", {"event": "child_started", "source": source, "id": "L1.n0", "t": now, "pid": 11,
                               "type": "worker", "info": {"neuron": "L1.n0"}}, now)
    assert picture.find("L1.n0").path == "root/L1/L1.n0"  # one neuron, not "on several hosts"
    assert [v.path for v in picture.neurons()] == ["root/L1/L1.n0"]
    assert picture.processes[("h", "root/maintenance_pool/L1.n0")].kind == "twin"


def test_the_picture_does_not_let_late_words_resurrect_a_dead_neuron():
    picture = Picture([HostView("h", "ipc://x", local=True)])
    now = time.time()
    report = {"event": "neuron_report", "source": "root/L1/L1.n0", "id": "L1.n0", "t": now - 0.5,
              "status": {"pid": 11, "layer": "L1", "uptime_s": 3.0}, "metrics": {"samples": 5}}
    picture.on_event("h", report, now)
    picture.on_event("h", {"event": "child_exited", "source": "root/L1", "id": "L1.n0", "t": now, "pid": 11,
                           "reason": {"kind": "crash", "signal": 9}}, now)
    picture.on_event("h", {**report, "t": now - 0.1}, now)  # sent before the death, delivered after it
    view = picture.find("L1.n0")
    assert view.state == "down" and view.deaths["crash"] == 1
    picture.on_event("h", {"event": "child_restarted", "source": "root/L1", "id": "L1.n0", "t": now + 0.01,
                           "pid": 12, "type": "worker", "info": {"neuron": "L1.n0"}}, now)
    assert view.state == "running" and view.pid == 12 and view.restarts == 1
    later = now + SILENT_AFTER_S + 1
    assert picture.neuron_row(view, later)["state"] == "silent"  # alive by its supervisor, but quiet
    # a walk prunes what is gone and keeps the start order
    picture.on_supervisor_status("h", "root", {"pid": 1, "children": [
        {"id": "L1", "pid": 2, "type": "supervisor", "control": "ipc://y"}]}, now)
    picture.on_supervisor_status("h", "root/L1", {"pid": 2, "children": []}, now)
    assert [r["path"] for r in picture.tree(None, now)] == ["root", "root/L1"]
    with pytest.raises(LookupError, match="no neuron 'L1.n0'"):
        picture.find("L1.n0")


def test_a_service_config_with_mistakes_is_refused_with_the_key_named():
    good = ServiceConfig.from_mapping({"host": "a", "peers": [{"name": "b", "events": "tcp://10.0.0.2:7101"}]})
    assert good.peers == (Peer("b", "tcp://10.0.0.2:7101"),)
    for doc, words in [({"hots": "a"}, "unknown key 'hots'"), ({"history": 0}, "[service]: history: accepted int >= 1, got 0"),
                       ({"bind": ["7110"]}, "bind is a list of endpoints"), ({"enabled": "yes"}, "enabled"),
                       ({"peers": [{"name": "b"}]}, "[service]: peers[0]: events is required"),
                       ({"enabled": "yes"}, "[service]: enabled has the wrong type: accepted bool, got 'yes'"),
                       ({"peers": [{"name": "b", "events": "tcp://x:1", "port": 1}]}, "[service]: peers[0]: unknown key 'port'; accepted: name, events, control, events_control"),
                       ({"host": "a", "peers": [{"name": "a", "events": "tcp://x:1"}]}, "must be unique")]:
        with pytest.raises(ValueError, match=words.replace("[", r"\[").replace("]", r"\]")):
            ServiceConfig.from_mapping(doc)


SPREAD_LAYERS = {"L0": "h1", "L1": "h2", "L2": "h1", "L3": "h1", "L4": "h1"}


def free_base() -> int:
    """A base port whose ports (BASE..BASE+3, the layers', and BASE+999 for /metrics) are free on
    both loopback addresses, and BASE+1000's too (the second host's)."""
    for _ in range(50):
        base = random.randrange(10000, 30000, 2000)  # below the kernel's ephemeral ports
        wanted = [("127.0.0.1", base + k) for k in (0, 1, 2, 3, 100, 300, 301, 302, 400, 401, 500, 999)]
        wanted += [("127.0.0.2", base + 1000 + k) for k in (0, 1, 2, 3, 200, 201)]
        try:
            for address, port in wanted:
                with socket.socket() as probe:
                    probe.bind((address, port))
        except OSError:
            continue
        return base
    raise AssertionError("no free ports for the spread network")


@pytest.mark.timeout(240)
def test_every_hosts_service_sees_the_whole_spread_network(tmp_path, no_stray_processes):
    """Two node agents on two loopback addresses, a diamond spread over them (CURVE between them):
    each host's service follows the other's bus and root over TCP, and holds all nine neurons."""
    base = free_base()
    text = pathlib.Path(DIAMOND_TOML).read_text() + f'\n[hosts]\nh1 = "127.0.0.1:{base}"\nh2 = "127.0.0.2:{base + 1000}"\n'
    for layer, host in SPREAD_LAYERS.items():
        text = text.replace(f'name = "{layer}"', f'name = "{layer}"\nhost = "{host}"')
    (tmp_path / "topology.toml").write_text(text)
    publics = {h: create_keys(str(tmp_path / h / "keys"), h)[0] for h in ("h1", "h2")}
    run_dirs = {}
    for host in ("h1", "h2"):
        os.makedirs(tmp_path / host / "keys" / "allowed")
        for other, public in publics.items():
            shutil.copy(public, tmp_path / host / "keys" / "allowed" / f"{other}.key")
        run_dirs[host] = f"/tmp/nx-spread-{os.getpid()}-{host}"
        metrics = f"metrics_port = {base + 999}\n" if host == "h1" else ""
        (tmp_path / host / "node.toml").write_text(
            f'name = "spread"\ndata_dir = "data"\ntopology = "../topology.toml"\nrun_dir = "{run_dirs[host]}"\n'
            f'host = "{host}"\nkeys_dir = "keys"\n{metrics}')
    env = {k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC")}
    agents = {}
    for h in ("h1", "h2"):
        with open(tmp_path / h / "agent.log", "w") as log:
            agents[h] = subprocess.Popen([sys.executable, "-m", "neurox.cli", "node", "--config",
                                          str(tmp_path / h / "node.toml")], stdout=log, stderr=subprocess.STDOUT, env=env)
    ctx = zmq.Context.instance()
    try:
        def whole(host: str):
            def seen():
                client = ServiceClient(ctx, service_endpoint(run_dirs[host]), 1.0)
                try:
                    answer = client.neuron_status()
                except ControlError:
                    return None
                finally:
                    client.close()
                hosts = {r["id"]: r["host"] for r in answer["neurons"] if r["state"] == "running"}
                return answer if len(hosts) == 9 else None
            return wait_until(seen, 90, f"{host}'s service to see all nine neurons")

        for host in ("h1", "h2"):
            answer = whole(host)
            placed = {r["id"]: r["host"] for r in answer["neurons"]}
            assert placed == {n: SPREAD_LAYERS[n.split(".")[0]] for n in placed}, placed
            assert answer["host"] == host and {h["host"] for h in answer["hosts"]} == {"h1", "h2"}
        with ServiceClient(ctx, service_endpoint(run_dirs["h1"])) as service:
            victim = service.neuron_metrics("L1.n0")
            assert victim["host"] == "h2" and victim["metrics"] is not None

        def both_trees_walked():  # h2's tree is walked over TCP at the service's own pace, after its reports
            with ServiceClient(ctx, service_endpoint(run_dirs["h1"])) as service:
                tree = {(r["host"], r["path"]) for r in service.tree()["rows"]}
            return ("h2", "root/L1/L1.n0") in tree and ("h1", "root/L4/L4.n0") in tree
        wait_until(both_trees_walked, 30, "h1's service to hold both hosts' trees")
        os.kill(victim["pid"], signal.SIGKILL)

        def restart_seen_from_h1():
            with ServiceClient(ctx, service_endpoint(run_dirs["h1"])) as service:
                found = service.neuron_metrics("L1.n0")
            return found if found["restarts"] == 1 and found["state"] == "running" else None
        wait_until(restart_seen_from_h1, 30, "h1's service to see the restart on h2")
        with urllib.request.urlopen(f"http://127.0.0.1:{base + 999}/metrics", timeout=10) as response:
            exposition = response.read().decode()
        done = promtool_check(exposition)
        assert done.returncode == 0, done.stdout + done.stderr
        assert 'neurox_neuron_restarts_total{host="h2",layer="L1",neuron="L1.n0"} 1.0' in exposition
        assert 'neurox_host_up{host="h2"} 1.0' in exposition
    except AssertionError as exc:
        logs = "\n".join(f"--- {h}:\n" + (tmp_path / h / "agent.log").read_text()[-3000:] for h in agents)
        raise AssertionError(f"{exc}\n{logs}") from None
    finally:
        for agent in agents.values():
            agent.send_signal(signal.SIGTERM)
        codes = {h: agent.wait(60) for h, agent in agents.items()}
        for run_dir in run_dirs.values():
            shutil.rmtree(run_dir, ignore_errors=True)
    assert codes == {"h1": 0, "h2": 0}, [(tmp_path / h / "agent.log").read_text()[-2000:] for h in agents]


def test_the_public_names_of_neurox_ops_are_exactly_the_intended_ones():
    import neurox.ops
    assert {n for n in dir(neurox.ops) if not n.startswith("_")} == {
        "fan_out", "ServiceClient", "STATES", "FAMILIES", "MetricsServer", "NetworkCollector", "serve_metrics",
        "service_source", "SERVICE_ID", "Peer", "ServiceConfig", "service_children", "service_endpoint",
        "TOKEN_ENV", "BotApi", "BotApiError", "BotConfig", "BotConfigError", "ChatOps", "NetworkAccess",
        "RedactingFormatter", "TelegramBot", "PRELOAD", "Gateway", "Remote", "gateway_endpoint"}


def test_a_walk_answered_before_a_death_does_not_undo_it():
    picture = Picture([HostView("h", "ipc://x", local=True)])
    asked = time.time()
    picture.on_event("h", {"event": "child_exited", "source": "root/L1", "id": "L1.n0", "t": asked + 0.01,
                           "pid": 11, "reason": {"kind": "crash"}}, asked + 0.01)
    # the layer's answer was made before the death (it still names pid 11), and arrives after it
    picture.on_supervisor_status("h", "root/L1", {"pid": 2, "children": [
        {"id": "L1.n0", "pid": 11, "type": "worker", "modules": ["neurox.neuron._process"], "control": "ipc://c"}]},
        asked + 0.02, asked)
    view = picture.processes[("h", "root/L1/L1.n0")]
    assert view.state == "down" and view.pid == "restarting" and view.kind == "neuron"
    # a later walk that sees the restarted child brings it back
    picture.on_supervisor_status("h", "root/L1", {"pid": 2, "children": [
        {"id": "L1.n0", "pid": 12, "type": "worker", "modules": ["neurox.neuron._process"], "control": "ipc://c"}]},
        asked + 1.0, asked + 0.9)
    assert view.state == "running" and view.pid == 12
