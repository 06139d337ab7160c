"""The release shapes: `test` (1-2-5-8-10-8-5-2-1) and `prod` (1-2-...-10-...-2-1) ship, place over hosts, and
the `test` shape learns, answers through MessengerIn/MessengerOut and survives a neuron's SIGKILL; the first
weights follow the ``init`` setting (issue 19.1). Request latency and processing time are kept (19.5)."""
import json
import os
import pathlib
import signal
import subprocess
import sys

import numpy as np
import pytest
import zmq

from _netutil import learn, neuron_call
from _opsutil import all_reporting, network_with_service, service_of, wait_until
from neurox.bench._learn import layer_params, layer_sources, reference_mlp, sample_order
from neurox.bench._learn_reference import ReferencePipeline, fresh_params
from neurox.ext import Client, ScaleConfig, digits
from neurox.neuron import (SHAPES, TopologyError, default_init, initial_weights, load_shape, load_topology,
                           parse_topology, topology_file)
from neurox.runtime import ControlClient
from neurox.supervisor_tree import control_endpoint

INVENTORY = pathlib.Path(__file__).resolve().parent.parent / "ansible" / "inventory"


def test_the_shipped_shapes_have_the_documented_layers():
    assert [len(l.neurons) for l in load_shape("prod").layers] == [*range(1, 11), *range(9, 0, -1)]
    assert [len(l.neurons) for l in load_shape("test").layers] == [1, 2, 5, 8, 10, 8, 5, 2, 1]
    assert (len(load_shape("prod").neurons()), len(load_shape("test").neurons())) == (100, 42)
    assert load_shape(None).neurons() == load_shape("diamond").neurons() == load_topology().neurons()
    assert topology_file("some/file.toml") == "some/file.toml" and set(SHAPES) == {"diamond", "prod", "test"}


@pytest.mark.parametrize("name, hosts", [("prod", 3), ("test", 2)])
def test_the_ansible_examples_spread_the_very_shipped_shape_over_hosts(name, hosts):
    shipped, spread = load_shape(name), load_topology(str(INVENTORY / f"{name}.toml"))
    assert [l.neurons for l in spread.layers] == [l.neurons for l in shipped.layers]
    assert [{k: v for k, v in l.settings.items() if k != "host"} for l in spread.layers] == \
        [l.settings for l in shipped.layers]
    assert spread.defaults == shipped.defaults and len(spread.hosts) == hosts
    placed = [l.settings["host"] for l in spread.layers]
    assert set(placed) == set(spread.hosts) and placed == sorted(placed), "consecutive layers share a host"
    inventory = (INVENTORY / f"{name}.yml").read_text()
    assert f'neurox_topology: "{{{{ inventory_dir }}}}/{name}.toml"' in inventory
    assert all(f"neurox_host_name: {h}" in inventory for h in spread.hosts)


def test_first_weights_follow_the_init_rule_and_the_default_follows_the_activation():
    assert (default_init("relu"), default_init("tanh"), default_init("softmax")) == ("he", "xavier", "xavier")
    expected = {"xavier": np.sqrt(2 / (400 + 100)), "he": np.sqrt(2 / 400), "normal": np.sqrt(1 / 400)}
    for rule, std in expected.items():
        weights, bias = initial_weights(400, 100, np.random.default_rng(0), rule)
        assert abs(weights.std() - std) < 0.03 * std and not bias.any(), rule
    doc = {"input_width": 4, "layer": [{"name": "A", "neurons": 1, "init": "he", "activation": "relu"},
                                        {"name": "B", "neurons": 1, "units": 2, "activation": "softmax"}]}
    topology = parse_topology(doc)
    assert topology.settings_of("A.n0")["init"] == "he" and "init" not in topology.settings_of("B.n0")
    with pytest.raises(TopologyError, match="init must be one of"):
        parse_topology({**doc, "defaults": {"init": "glorot"}})


def skipping(**extra) -> dict:
    return {"input_width": 64, "layer": [{"name": "A", "neurons": 1}, {"name": "B", "neurons": 2},
                                         {"name": "C", "neurons": 2},
                                         {"name": "D", "neurons": 1, "units": 10, "activation": "softmax"}], **extra}


def test_skip_links_join_whole_layers_forward_and_bad_ones_are_refused():
    topology = parse_topology(skipping(skip=[{"from": "A", "to": "D"}]))
    assert topology.inputs_of("D.n0") == ["A.n0", "C.n0", "C.n1"] and topology.outputs_of("A.n0") == ["B.n0", "B.n1", "D.n0"]
    assert layer_sources(topology) == [[-1], [0], [1], [0, 2]]
    assert len(load_shape("prod").inputs_of("L18.n0")) == 1 + 10 + 2
    for bad, message in (([{"from": "D", "to": "A"}], "at least one layer forward"),
                         ([{"from": "A", "to": "B"}], "at least one layer forward"),
                         ([{"from": "A", "to": "Z"}], "layers are"), ([{"from": "A"}], "to is required")):
        with pytest.raises(TopologyError, match=message):
            parse_topology(skipping(skip=bad))


@pytest.mark.timeout(60)
def test_a_skip_network_one_packet_at_a_time_is_the_one_process_reference():
    """The neurons' rules over skip links (replayed in one process) are the one-process reference's SGD."""
    topology, data = parse_topology(skipping(skip=[{"from": "A", "to": "D"}])), digits()
    params = fresh_params(topology)
    order = sample_order(300, 1, 1, seed=3)
    accuracy, _ = reference_mlp(data.features, data.targets, layer_params(topology, params), layer_sources(topology),
                                0.05, order, ScaleConfig("none"))  # the replay below is fed the rows as they are
    journals = {n: [["F", [p]] for p in range(300)] for n in topology.neurons()}
    for layer in topology.layers[:-1]:
        for n in layer.neurons:
            journals[n] = [step for p in range(300) for step in (["F", [p]], ["B", [p]])]
    answers = ReferencePipeline(topology, params, "delay", 1).replay(
        journals, {p: (data.features[rows], data.targets[rows]) for p, rows in enumerate(order)})
    hits = [answers[p].argmax() == data.targets[rows][0] for p, rows in enumerate(order)]
    assert np.mean(hits) == pytest.approx(accuracy, abs=1e-9) and accuracy > 0.4


def messenger_in_metrics(network) -> dict:
    client = ControlClient(zmq.Context.instance(), control_endpoint(network.run_dir, "root/messenger_in"), 5.0)
    try:
        return client.call("metrics")
    finally:
        client.close()


@pytest.mark.timeout(240)
def test_the_test_shape_learns_answers_and_survives_a_neuron_kill(tmp_path, no_stray_processes):
    data = digits()
    topology = load_shape("test")
    with network_with_service(topology, tmp_path) as network:
        all_reporting(network, timeout=60)
        progress = learn(network, data, epochs=1, window=8, seed=0)
        assert progress.answered == 1797 and progress.lost == 0
        assert progress.rolling_accuracy > 0.7, progress  # chance is 0.1; 0.89 measured (seed 0)

        client = Client(network.messenger_in, zmq.Context.instance(), deadline_s=20)
        try:
            rows = np.random.default_rng(1).choice(1797, 200, replace=False)
            sent, replies = [], []
            for i, row in enumerate(rows):
                sent.append(client.submit(vector=data.features[row].tolist(), timeout_ms=3000))
                if i == 50:  # mid-stream: a hidden neuron of the widest layer dies
                    victim = neuron_call(network, "L4.n3", "status")["pid"]
                    os.kill(victim, signal.SIGKILL)
                replies += client.results(timeout=0.002)
            while client.pending:
                replies += client.results(timeout=1.0)
            assert client.stats["duplicates"] == 0, "no request gets a second reply"
        finally:
            client.close()
        assert sorted(r["message_hash_id"] for r in replies) == sorted(sent)
        answered = {r["message_hash_id"]: r for r in replies if r["ok"]}
        assert all(r["error"] in ("timeout", "deadline") for r in replies if not r["ok"])
        assert len(answered) >= 150, f"{len(answered)} of 200 answered"
        truth = dict(zip(sent, data.targets[rows]))
        right = sum(int(r["label"]) == truth[m] for m, r in answered.items())
        assert right >= 0.6 * len(answered), f"{right} of {len(answered)} right"
        replaced = wait_until(lambda: neuron_call(network, "L4.n3", "status")["pid"] != victim, 15, "L4.n3 back")
        assert replaced

        latency = messenger_in_metrics(network)["request_latency"]
        assert latency["count"] == len(answered) and sum(latency["counts"]) == len(answered)
        assert 0 < latency["p50_s"] <= latency["p99_s"] <= 10.0
        processing = neuron_call(network, "L8.n0", "metrics")["processing"]
        assert processing["count"] >= 0.9 * 1797 and processing["p50_s"] < 1.0

        def summed():
            with service_of(network) as service:
                found = service.latency()
            return found if found["request"]["count"] == len(answered) else None
        found = wait_until(summed, 20, "the service to see every answered request")
        assert found["processing"]["count"] >= 1797 * len(topology.neurons()) * 0.9
        assert set(found["processing_by_layer"]) == {l.name for l in topology.layers}
        probed = subprocess.run([sys.executable, "-m", "neurox.cli", "probe", "metrics", "latency", "--data-dir",
                                 str(tmp_path)], capture_output=True, text=True, timeout=60)
        assert probed.returncode == 0, probed.stderr
        shown = json.loads(probed.stdout.splitlines()[-1])
        assert shown["request"]["count"] == len(answered) and shown["request"]["p99_s"] == found["request"]["p99_s"]


@pytest.mark.timeout(180)
def test_the_prod_shape_starts_and_answers(tmp_path, no_stray_processes):
    """The 100 neurons of `prod` start, and requests through MessengerIn come back from MessengerOut
    across its 19 layers and its skip links (how well it learns: `neurox bench learn --topology prod`)."""
    data = digits()
    with network_with_service(load_shape("prod"), tmp_path, service=False) as network:
        assert len(network.topology.neurons()) == 100
        client = Client(network.messenger_in, zmq.Context.instance(), deadline_s=20)
        try:
            replies = [client.ask(vector=data.features[i].tolist(), target=int(data.targets[i]))
                       for i in range(20)]
        finally:
            client.close()
        assert all(r["ok"] and 0 <= int(r["label"]) <= 9 and len(r["output"]) == 10 for r in replies), replies
        # the answers leave before the gradients are back: wait for L0's, which joins the end node's (over the
        # skip link) with those of L1 -- a join that would give up without one of them
        wait_until(lambda: neuron_call(network, "L0.n0", "metrics")["backwards"] == 20, 20, "L0 to learn from all 20")
        assert neuron_call(network, "L0.n0", "metrics")["missed_gradients"] == 0


@pytest.mark.timeout(90)
def test_the_shapes_bench_kills_a_neuron_mid_round_and_keeps_the_books(no_stray_processes):
    """`neurox bench shapes` (run on `prod` by hand: README, "Benchmarks"), here on the diamond, briefly: a
    hidden neuron dies mid-round, is replaced, and every request gets exactly one final reply."""
    done = subprocess.run([sys.executable, "-m", "neurox.cli", "bench", "shapes", "--topology", "diamond", "--epochs",
                           "0", "--requests", "30", "--kill-at", "10", "--json"], capture_output=True, text=True,
                          timeout=80)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.splitlines()[-1])
    assert (result["topology"], result["neurons"], result["victim"], result["kill_at"]) == ("diamond", 9, "L2.n1", 10)
    for books in (result["baseline"], result["killed"]):
        assert books["requests"] == 30 and books["lost"] == 0 and books["duplicates"] == 0, books
        assert books["answered"] + sum(books["errors"].values()) == 30, books
    assert result["replaced_s"] is not None and 0 < result["replaced_s"] < 30
    assert result["every_request_answered"] == (result["killed"]["answered"] == 30)
