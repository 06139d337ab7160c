"""The built-in outputs against real files, real HTTP on loopback and real sockets: JSON lines (with
log rotation and a full disk), an HTTP POST with retries, back-off and a bounded queue, a ZeroMQ PUB."""
import contextlib
import json
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import msgpack
import numpy as np
import pytest
import zmq

from _extutil import ext_call, network_with, read_jsonl, wait_metric, wait_until
from neurox.ext import InputError, Client, digits, sample_records
from neurox.neuron import INPUT, encode_forward, inbox_endpoint
from neurox.runtime import pack

pytestmark = pytest.mark.timeout(120)


def ask_many(network, ids) -> list[dict]:
    client = Client(network.messenger_in)
    try:
        return [client.ask(message_hash_id=i, vector=digits().features[n % 1797].tolist(), target=int(
            digits().targets[n % 1797])) for n, i in enumerate(ids)]
    finally:
        client.close()


def joined(network, outputs) -> dict:
    """Ask until one answer reaches every output in ``outputs`` (their SUBs join the outputs bus late,
    docs/protocol.md): from then on each gets every answer. Their metrics then."""
    for n in range(20):
        seen = {name: ext_call(network, name)["received"] for name in outputs}
        ask_many(network, [f"w{n}"])
        with contextlib.suppress(AssertionError):
            return wait_until(lambda: (now := {name: ext_call(network, name) for name in outputs}) and all(
                now[name]["received"] > seen[name] for name in outputs) and now, 1.0)
    raise AssertionError(f"an answer never reached every one of {outputs}")


def test_records_split_an_answer_per_sample_and_refuse_what_is_not_one():
    answer = {"packet": 7, "rows": 2, "width": 2, "output": [0.1, 0.9, 0.8, 0.2], "loss": 0.5, "label": [1, 0],
              "text": ["b", "a"], "targets": [1, 1], "message_hash_id": ["x", "y"], "source": "eye"}
    first, second = sample_records(answer)
    assert {k: first[k] for k in first if k != "t"} == {"source": "eye", "message_hash_id": "x", "packet": 7, "row": 0,
                                                        "label": 1, "text": "b", "target": 1, "loss": 0.5,
                                                        "output": [0.1, 0.9]}
    assert second["output"] == [0.8, 0.2] and second["message_hash_id"] == "y" and second["row"] == 1
    single = sample_records({"packet": 1, "rows": 1, "width": 1, "output": [3.0], "message_hash_id": "q"})
    assert single[0]["message_hash_id"] == "q" and "label" not in single[0] and single[0]["source"] is None
    for bad in ({}, {"rows": 2, "width": 2, "output": [1.0]}, {"rows": 1, "width": 1, "output": [1.0], "label": 3},
                {"rows": "x", "width": 1, "output": []}):
        with pytest.raises(InputError) as caught:
            sample_records(bad)
        assert caught.value.error == "bad_result"


def test_json_lines_follow_rotation_filter_sources_and_survive_a_full_disk(tmp_path, no_stray_processes):
    out = tmp_path / "logs" / "answers.jsonl"
    extensions = [{"name": "answers", "module": "jsonl", "path": str(out)},
                  {"name": "only_eye", "module": "jsonl", "path": str(tmp_path / "eye.jsonl"), "sources": ["eye"]},
                  {"name": "full", "module": "jsonl", "path": "/dev/full"}]
    with network_with(tmp_path, extensions) as network:
        before = joined(network, ("answers", "only_eye", "full"))
        replies = ask_many(network, [f"a{i}" for i in range(20)])
        records = wait_until(lambda: len(lines := [r for r in read_jsonl(out) if r["message_hash_id"][0] == "a"]) >= 20
                             and lines, what="20 lines")
        os.rename(out, tmp_path / "logs" / "answers.jsonl.1")  # logrotate
        wait_metric(network, "answers", "reopened", 1)
        ask_many(network, [f"b{i}" for i in range(5)])
        rotated = wait_until(lambda: len(read_jsonl(out)) >= 5 and read_jsonl(out), what="5 lines in a new file")
        metrics = {n: ext_call(network, n) for n in ("answers", "only_eye", "full")}
        full_pid = ext_call(network, "full", "status")["pid"]
        ask_many(network, ["c0"])
        wait_metric(network, "full", "lost", before["full"]["lost"] + 26)
        assert ext_call(network, "full", "status")["pid"] == full_pid, "a full disk crashes nothing"
        full = ext_call(network, "full")
    assert [r["message_hash_id"] for r in records] == [f"a{i}" for i in range(20)]
    assert [r["message_hash_id"] for r in rotated] == [f"b{i}" for i in range(5)]
    for reply, record in zip(replies, records):
        assert record["source"] == "messenger_in" and record["label"] == reply["label"]
        assert record["output"] == pytest.approx(reply["output"]) and record["target"] is not None
    assert metrics["only_eye"]["skipped"] - before["only_eye"]["skipped"] == 25
    assert not (tmp_path / "eye.jsonl").read_text()
    assert full["write_errors"] >= 1 and full["lost"] - before["full"]["lost"] == 26
    assert full["bad_frames_by_kind"]["write_failed"] >= 1


class Receiver:
    """A real HTTP server on loopback that answers POSTs with a scripted list of statuses (then 200)."""

    def __init__(self, statuses=(), headers=None):
        self.statuses = list(statuses)
        self.headers = headers or {}
        self.bodies: list[dict] = []
        self.attempts: list[tuple[float, int]] = []
        self.auth: list[str | None] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                receiver.attempts.append((time.monotonic(), status))
                receiver.auth.append(self.headers.get("Authorization"))
                if status == 200:
                    receiver.bodies.append(json.loads(body))
                self.send_response(status)
                for key, value in receiver.headers.get(status, {}).items():
                    self.send_header(key, value)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/ingest"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05})
        self.thread.start()

    def records(self) -> list[dict]:
        return [r for body in self.bodies for r in body["records"]]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


@pytest.fixture
def receiver():
    made = []

    def make(*args, **kwargs) -> Receiver:
        made.append(Receiver(*args, **kwargs))
        return made[-1]

    yield make
    for r in made:
        r.close()


def test_http_post_retries_with_growing_back_off_until_delivered(tmp_path, no_stray_processes, receiver):
    flaky = receiver([503, 500, 502, 429], headers={429: {"Retry-After": "0.6"}})
    token = tmp_path / "token"
    token.write_text("to-the-receiver")
    extensions = [{"name": "post", "module": "http_post", "url": flaky.url, "batch": 50, "backoff_s": 0.1,
                   "retries": 6, "token_file": str(token)}]
    with network_with(tmp_path, extensions) as network:
        ask_many(network, [f"r{i}" for i in range(10)])
        metrics = wait_metric(network, "post", "delivered", 10)
    assert [r["message_hash_id"] for r in flaky.records()] == [f"r{i}" for i in range(10)], "all, in order, once"
    assert all(body["source"] == "post" for body in flaky.bodies)
    assert metrics["retried"] == 4 and metrics["dropped_failed"] == metrics["dropped_full"] == 0, metrics
    times = [t for t, _ in flaky.attempts[:5]]
    gaps = [b - a for a, b in zip(times, times[1:])]
    # equal jitter: each wait is between half and all of 0.1, 0.2, 0.4 s; a 429's Retry-After (0.6 s) wins
    # (lower bounds: a loaded machine only makes the gaps longer)
    assert 0.05 <= gaps[0] < 1.0 and gaps[1] >= 0.1 and gaps[2] >= 0.2 and gaps[3] >= 0.6, gaps
    assert set(flaky.auth) == {"Bearer to-the-receiver"}


def test_http_post_drops_what_is_refused_or_cannot_be_delivered_and_counts_it(tmp_path, no_stray_processes,
                                                                              receiver):
    refusing = receiver([400] * 1000)
    dead = receiver()
    dead_url = dead.url
    dead.close()  # nothing listens there any more: connection refused
    extensions = [{"name": "refused", "module": "http_post", "url": refusing.url, "batch": 1},
                  {"name": "down", "module": "http_post", "url": dead_url, "batch": 1, "queue": 5, "retries": 2,
                   "backoff_s": 0.5}]
    with network_with(tmp_path, extensions) as network:
        started = time.monotonic()
        ask_many(network, [f"d{i}" for i in range(30)])
        asking_took = time.monotonic() - started
        refused = wait_metric(network, "refused", "dropped_refused", 30)
        down = wait_metric(network, "down", "dropped_full", 1)
        down_status = ext_call(network, "down", "status")
        down = wait_metric(network, "down", "dropped_failed", 1, timeout=30)
    assert refused["delivered"] == 0 and refused["retried"] == 0 and refused["posts"] == 30, refused
    assert down["dropped_full"] + down["queued"] == 30 and down["dropped_full"] >= 20, down
    assert "Connection refused" in down_status["last_error"], down_status
    assert asking_took < 10, "a dead receiver never slows the network"


def test_zmq_pub_publishes_every_record_to_subscribers(tmp_path, no_stray_processes):
    extensions = [{"name": "pub", "module": "zmq_pub", "bind": "tcp://127.0.0.1:*"},
                  {"name": "pub_json", "module": "zmq_pub", "bind": "tcp://127.0.0.1:*", "topic": "digits",
                   "encoding": "json"}]
    ctx = zmq.Context.instance()
    with network_with(tmp_path, extensions) as network:
        subs = {}
        for name, topic in (("pub", b"result"), ("pub_json", b"digits")):
            sub = ctx.socket(zmq.SUB)
            sub.setsockopt(zmq.LINGER, 0)
            sub.setsockopt(zmq.SUBSCRIBE, topic)
            sub.connect(ext_call(network, name, "status")["endpoint"])
            subs[name] = sub
        try:
            # a SUB joins a PUB late: ask until the first record comes through, then count from there
            wait_until(lambda: ask_many(network, ["warm-up"]) and all(s.poll(200) for s in subs.values()),
                       what="the subscriptions")
            for sub in subs.values():
                while sub.poll(200):
                    sub.recv_multipart()
            ask_many(network, [f"z{i}" for i in range(25)])
            got = {name: [sub.recv_multipart() for _ in range(25)] for name, sub in subs.items() if sub.poll(5000)}
        finally:
            for sub in subs.values():
                sub.close()
    assert {frames[0] for frames in got["pub"]} == {b"result"}
    assert [msgpack.unpackb(body)["message_hash_id"] for _, body in got["pub"]] == [f"z{i}" for i in range(25)]
    assert [json.loads(body)["message_hash_id"] for _, body in got["pub_json"]] == [f"z{i}" for i in range(25)]
    record = json.loads(got["pub_json"][0][1])
    assert record["source"] == "messenger_in" and len(record["output"]) == 10 and 0 <= record["label"] <= 9


def test_an_origin_with_strange_metas_crashes_no_output(tmp_path, no_stray_processes):
    """Any program may be an origin (docs/protocol.md): a tag of bytes and a source that is not a name
    reach the outputs, which write what they can and crash not."""
    out = tmp_path / "all.jsonl"
    extensions = [{"name": "all", "module": "jsonl", "path": str(out), "output": False},
                  {"name": "only_eye", "module": "jsonl", "path": str(tmp_path / "eye.jsonl"), "sources": ["eye"]},
                  {"name": "pub", "module": "zmq_pub", "bind": "tcp://127.0.0.1:*", "encoding": "json"}]
    with network_with(tmp_path, extensions) as network:
        pids = {n: ext_call(network, n, "status")["pid"] for n in ("all", "only_eye", "pub")}
        push = zmq.Context.instance().socket(zmq.PUSH)
        push.setsockopt(zmq.LINGER, 1000)
        push.connect(inbox_endpoint(network.run_dir, "L0.n0"))
        row = np.asarray([digits().features[0]], dtype="<f4")
        for n, meta in enumerate([{"source": [1, 2], "tag": b"\x00\xff"}, {"source": {"a": 1}, "tag": [None]},
                                  {"tag": 1.5}]):
            push.send(encode_forward(INPUT, [7_000_000 + n], [row], [False], [pack(meta)]))
        push.close()
        wait_metric(network, "all", "written", 3)
        wait_metric(network, "pub", "published", 3)
        assert wait_metric(network, "only_eye", "skipped", 3)["bad_frames"] == 0
        assert {n: ext_call(network, n, "status")["pid"] for n in pids} == pids, "nothing crashed"
    tags = [r["message_hash_id"] for r in read_jsonl(out)]
    assert tags == ["00ff", None, 1.5], "bytes as hex; a list is one tag per row"
