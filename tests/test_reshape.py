"""Live reshaping: 1-2-3-2-1 -> 1-3-4-3-1 and back while requests stream and the network learns."""
import threading
import tomllib

import pytest
import zmq

from _netutil import learn, running_network
from neurox.ext import Client, digits
from neurox.neuron import Reshaping, load_topology, parse_topology
from neurox.runtime import ControlError, call


def stream_requests(endpoint: str, stop: threading.Event, outcome: dict) -> None:
    """Pipelined requests (half of them learning) until told to stop; records every reply per id."""
    data = digits()
    client = Client(endpoint, zmq.Context.instance())
    sent, replies, i = [], {}, 0
    try:
        while not stop.is_set():
            for _ in range(8):
                row = i % len(data.targets)
                sent.append(client.submit(vector=data.features[row].tolist(), timeout_ms=3000,
                                          **({"target": int(data.targets[row])} if i % 2 else {})))
                i += 1
            while client.pending:
                for reply in client.results(timeout=10):
                    replies[reply["message_hash_id"]] = replies.get(reply["message_hash_id"], 0) + 1
                    outcome["ok" if reply["ok"] else "errors"] = outcome.get("ok" if reply["ok"] else "errors", 0) + 1
        outcome["duplicates"] = client.stats["duplicates"]
    finally:
        client.close()
        outcome.update(sent=sent, replies=replies)


@pytest.mark.timeout(240)
def test_reshape_to_1_3_4_3_1_and_back_while_requests_stream(tmp_path):
    with running_network(load_topology(), tmp_path) as network:
        learn(network, digits(), epochs=1, window=2)
        stop, outcome = threading.Event(), {}
        streamer = threading.Thread(target=stream_requests, args=(network.messenger_in, stop, outcome))
        streamer.start()
        reshaping = Reshaping(network.reshaper)
        try:
            added = [reshaping.add_neuron(layer)["id"] for layer in ("L1", "L2", "L3")]
            assert [len(l["neurons"]) for l in reshaping.topology()["layers"]] == [1, 3, 4, 3, 1]
            for neuron in added:
                reshaping.remove_neuron(neuron)
            assert [len(l["neurons"]) for l in reshaping.topology()["layers"]] == [1, 2, 3, 2, 1]
            with pytest.raises(ControlError) as info:
                reshaping.add_neuron("L0")
            assert info.value.error == "fixed_layer"
            exported = reshaping.export()
            live = reshaping.topology()
            metrics = call(zmq.Context.instance(), network.reshaper, "metrics")
        finally:
            reshaping.close()
            stop.set()
            streamer.join(60)
        after = learn(network, digits(), epochs=1, window=2)
    assert outcome["replies"], "requests were answered during the reshaping"
    assert sorted(outcome["replies"]) == sorted(outcome["sent"]), "every request got a reply"
    assert max(outcome["replies"].values()) == 1 and outcome["duplicates"] == 0, "and only one"
    assert outcome.get("errors", 0) <= len(outcome["sent"]) // 20, outcome.get("errors")
    assert after.rolling_accuracy > 0.6, "learning continues"
    reparsed = parse_topology(tomllib.loads(exported))
    assert [layer.neurons for layer in reparsed.layers] == [layer["neurons"] for layer in live["layers"]]
    assert set(reparsed.links) == {tuple(link) for link in live["links"]}, "the export matches the live shape"
    assert metrics["changes"] == {"add_neuron": 3, "remove_neuron": 3} and metrics["refused"] == {"fixed_layer": 1}, metrics
