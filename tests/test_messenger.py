"""MessengerIn/Out: every request gets exactly one reply, to its sender; bad input crashes nothing."""
import os
import signal
import threading
import time

import numpy as np
import pytest
import zmq

from _netutil import neuron_call, running_network
from neurox.ext import Client, digits
from neurox.neuron import inbox_endpoint, load_topology
from neurox.runtime import pack, unpack_map
from neurox.supervisor_tree import SupervisorClient


def client_run(endpoint: str, requests: list[dict], replies: list, timeout: float = 30.0) -> None:
    """Pipeline every request on a raw DEALER (MessengerIn's own guarantee, no retrying client between),
    then collect replies until each has one or the time is up, and a moment more for any duplicate."""
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(endpoint)
    try:
        for request in requests:
            sock.send_multipart([b"", pack(request)])
        sent = [request["message_hash_id"] for request in requests]
        deadline = time.monotonic() + timeout
        while len(replies) < len(sent) and sock.poll(max(1, int((deadline - time.monotonic()) * 1000))):
            replies.append(unpack_map(sock.recv_multipart()[-1]))
        while sock.poll(300):
            replies.append(unpack_map(sock.recv_multipart()[-1]))
        replies.append(("sent", sent))
    finally:
        sock.close()


def run_clients(endpoint: str, clients: int, per_client: int, during=None) -> list[tuple[list, list]]:
    data = digits()
    results = []
    threads = []
    for c in range(clients):
        requests = [{"message_hash_id": f"c{c}-{i}", "vector": data.features[(c * per_client + i) % len(data.targets)].tolist(),
                     **({"target": int(data.targets[i % len(data.targets)])} if i % 2 else {})} for i in range(per_client)]
        replies: list = []
        results.append(replies)
        threads.append(threading.Thread(target=client_run, args=(endpoint, requests, replies)))
    for t in threads:
        t.start()
    if during:
        during()
    for t in threads:
        t.join(90)
    out = []
    for replies in results:
        sent = replies.pop()[1]
        out.append((sent, replies))
    return out


@pytest.mark.timeout(120)
def test_a_thousand_requests_from_several_clients_each_get_one_reply(tmp_path):
    with running_network(load_topology(), tmp_path) as network:
        results = run_clients(network.messenger_in, clients=4, per_client=250)
    total = 0
    for sent, replies in results:
        ids = [r["message_hash_id"] for r in replies]
        assert sorted(ids) == sorted(sent), "each sender gets exactly its own replies, once"
        assert all(r["ok"] and 0 <= r["label"] <= 9 for r in replies)
        total += len(replies)
    assert total == 1000


@pytest.mark.timeout(120)
def test_a_neuron_killed_mid_stream_costs_no_request_its_reply(tmp_path):
    with running_network(load_topology(), tmp_path, timeout_ms=2000) as network:
        def kill_two():
            time.sleep(0.05)
            for neuron in ("L2.n1", "L0.n0"):
                os.kill(neuron_call(network, neuron, "status")["pid"], signal.SIGKILL)
                time.sleep(0.05)
        results = run_clients(network.messenger_in, clients=4, per_client=250, during=kill_two)
    errors = 0
    for sent, replies in results:
        ids = [r["message_hash_id"] for r in replies]
        assert sorted(ids) == sorted(sent), "exactly one reply (answer or explicit error) per request"
        for reply in replies:
            assert reply["ok"] or reply["error"] in ("timeout", "busy"), reply
            errors += not reply["ok"]
    assert errors < 1000


@pytest.mark.timeout(60)
def test_bad_requests_get_clear_errors_and_nothing_crashes(tmp_path):
    with running_network(load_topology(), tmp_path) as network:
        pids = {n: neuron_call(network, n, "status")["pid"] for n in ("L0.n0", "L2.n1")}
        client = Client(network.messenger_in)
        cases = [
            ({"vector": [1.0, 2.0]}, "bad_input", "expected 64 values"),
            ({"text": "hello", "encoding": "ebcdic"}, "bad_input", "unknown text encoding"),
            ({"vector": ["x"] * 64}, "bad_input", "list of numbers"),
            ({"vector": [0.0] * 64, "target": 99}, "bad_input", "class index"),
            ({"vector": [float("nan")] * 64}, "non_finite", "NaN"),
            ({}, "bad_input", "'vector' or 'text'"),
        ]
        for request, error, detail in cases:
            reply = client.ask(**request)
            assert not reply["ok"] and reply["error"] == error and detail in reply["detail"], reply
        raw = client.sock
        raw.send_multipart([b"", b"\xc1\xff not msgpack"])
        assert unpack_map(raw.recv_multipart()[-1])["error"] == "malformed"
        raw.send_multipart([b"", pack({"message_hash_id": "big", "vector": [0.0] * 100_000})])
        assert unpack_map(raw.recv_multipart()[-1])["error"] == "oversized"
        raw.send_multipart([b"", pack(["not", "a", "map"])])
        assert unpack_map(raw.recv_multipart()[-1])["error"] == "wrong_type"  # the framing rule's atom
        # garbage, wrong shapes and unknown sources straight into neuron inboxes: counted drops
        push = zmq.Context.instance().socket(zmq.PUSH)
        push.setsockopt(zmq.LINGER, 2000)
        push.connect(inbox_endpoint(network.run_dir, "L2.n1"))
        for frame in (b"\x00garbage", pack([0, "L1.n0", [1], [1], b"\x00" * 12, [False], [b""]]),
                      pack([0, "nobody", [1], [1], b"\x00" * 64, [False], [b""]]), pack({"kind": 0}),
                      b"\x92" * 10_000):
            push.send(frame)
        push.close()
        deadline = time.monotonic() + 5
        while neuron_call(network, "L2.n1", "metrics")["bad_frames"] < 5 and time.monotonic() < deadline:
            time.sleep(0.05)
        metrics = neuron_call(network, "L2.n1", "metrics")
        assert metrics["bad_frames"] == 5, metrics["bad_frames_by_kind"]
        assert set(metrics["bad_frames_by_kind"]) >= {"malformed", "wrong_shape", "unknown_source", "wrong_type"}
        reply = client.ask(vector=digits().features[0].tolist())
        assert reply["ok"], "the network still answers"
        assert {n: neuron_call(network, n, "status")["pid"] for n in pids} == pids, "no process died"
        client.close()


def _root_child_pid(network, child_id: str) -> int:
    client = SupervisorClient(network.control, timeout=5.0)
    try:
        return next(c["pid"] for c in client.which_children() if c["id"] == child_id)
    finally:
        client.close()


def _ask_all(endpoint: str, ids: list, rows: np.ndarray, out: dict, pace_s: float = 0.0) -> None:
    """One neurox.Client pipelining a request per id (at most 32 waiting), every final reply kept per id."""
    client = Client(endpoint, zmq.Context.instance(), deadline_s=60)
    try:
        for message_id, row in zip(ids, rows):
            while len(client.pending) >= 32:
                for reply in client.results(timeout=0.05):
                    out.setdefault(reply["message_hash_id"], []).append(reply)
            client.submit(message_id, vector=row.tolist(), timeout_ms=2000)
            time.sleep(pace_s)
        while client.pending:
            for reply in client.results(timeout=1.0):
                out.setdefault(reply["message_hash_id"], []).append(reply)
        out["stats"] = client.stats
    finally:
        client.close()


@pytest.mark.timeout(150)
def test_messenger_in_killed_twice_with_requests_in_flight_loses_nothing(tmp_path):
    """Two neurox.Clients stream requests; MessengerIn is SIGKILLed twice meanwhile. Every request gets
    exactly one reply, and it is an answer: the clients sent the same ids again to the replacement."""
    data = digits()
    with running_network(load_topology(), tmp_path, timeout_ms=2000) as network:
        outs = [{}, {}]
        ids = [[f"c{c}-{i}" for i in range(400)] for c in range(2)]
        threads = [threading.Thread(target=_ask_all, args=(network.messenger_in, ids[c], data.features[:400], outs[c],
                                                            0.004)) for c in range(2)]
        for thread in threads:
            thread.start()
        pids = []
        for _ in range(2):
            time.sleep(0.6)
            pids.append(_root_child_pid(network, "messenger_in"))
            os.kill(pids[-1], signal.SIGKILL)
        for thread in threads:
            thread.join(120)
        assert _root_child_pid(network, "messenger_in") not in pids, "MessengerIn was replaced"
    stats = [outs[c].pop("stats") for c in range(2)]
    for c in range(2):
        assert sorted(outs[c]) == sorted(ids[c]), f"client {c}: {len(set(ids[c]) - set(outs[c]))} never answered"
        assert all(len(replies) == 1 for replies in outs[c].values()), "a request answered twice"
        failed = [r[0] for r in outs[c].values() if not r[0]["ok"]]
        assert not failed, failed[:3]
    assert sum(s["resent_reconnect"] + s["resent_silence"] for s in stats) > 0, "the deaths caught requests in flight"


@pytest.mark.timeout(90)
def test_two_clients_using_the_same_ids_each_get_their_own_answers(tmp_path):
    """Ids are scoped by connection: two clients sending the same message_hash_ids at once each get one
    answer per request, the answer to their own vector (no learning, so answers are comparable)."""
    data = digits()
    rows = [data.features[:150], data.features[150:300]]
    with running_network(load_topology(), tmp_path) as network:
        expected: dict = {}
        _ask_all(network.messenger_in, [f"e{i}" for i in range(300)], data.features[:300], expected)
        expected.pop("stats")
        outs = [{}, {}]
        ids = [f"q-{i}" for i in range(150)]
        threads = [threading.Thread(target=_ask_all, args=(network.messenger_in, ids, rows[c], outs[c]))
                   for c in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
    for c in range(2):
        outs[c].pop("stats")
        assert sorted(outs[c]) == sorted(ids)
        for i, message_id in enumerate(ids):
            (reply,) = outs[c][message_id]
            assert reply["ok"], reply
            np.testing.assert_allclose(reply["output"], expected[f"e{c * 150 + i}"][0]["output"], atol=1e-5)


@pytest.mark.timeout(60)
def test_answers_go_from_the_end_neuron_straight_to_their_origin_while_messenger_out_is_stopped(tmp_path):
    """The end neuron returns each answer to its origin itself: with MessengerOut stopped (SIGSTOP), every
    request through MessengerIn is still answered, and the end neuron counts them returned."""
    data = digits()
    with running_network(load_topology(), tmp_path) as network:
        end = network.topology.layers[-1].neurons[0]
        before = neuron_call(network, end, "metrics")["returned"]
        messenger_out = _root_child_pid(network, "messenger_out")
        os.kill(messenger_out, signal.SIGSTOP)
        try:
            out: dict = {}
            _ask_all(network.messenger_in, [f"s{i}" for i in range(100)], data.features[:100], out)
            metrics = neuron_call(network, end, "metrics")
        finally:
            os.kill(messenger_out, signal.SIGCONT)
    out.pop("stats")
    assert sorted(out) == sorted(f"s{i}" for i in range(100))
    assert all(len(replies) == 1 and replies[0]["ok"] and replies[0]["label"] == int(np.argmax(replies[0]["output"]))
               for replies in out.values()), [r for r in out.values() if not r[0]["ok"]][:3]
    assert metrics["returned"] - before == 100 and metrics["dropped_returns"] == 0, metrics
