"""The webhook over real HTTP on loopback: samples and batches accepted (202) and answered through an
output extension; bad JSON, wrong shapes, unknown labels, oversized bodies, missing or wrong tokens
refused with a clear JSON message and counted; nothing crashes."""
import http.client
import json
import socket

import pytest

from _extutil import ext_call, network_with, read_jsonl, wait_metric, wait_until
from neurox.ext import digits

pytestmark = pytest.mark.timeout(120)


def post(url: str, body, headers: dict | None = None, method: str = "POST", raw: bool = False):
    """(status, headers, JSON answer) of one request on a fresh connection."""
    host, port, path = _split(url)
    conn = http.client.HTTPConnection(host, port, timeout=10)
    try:
        data = body if raw else json.dumps(body).encode()
        conn.request(method, path, body=data, headers={"Content-Type": "application/json", **(headers or {})})
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), json.loads(response.read() or b"null")
    finally:
        conn.close()


def _split(url: str):
    rest = url.split("://", 1)[1]
    hostport, path = rest.split("/", 1)
    host, port = hostport.rsplit(":", 1)
    return host, int(port), "/" + path


def exchange(url: str, request: str) -> str:
    """Send ``request`` (``{path}`` filled in) as it is, without a body; all the server answers before it
    closes the connection."""
    host, port, path = _split(url)
    with socket.create_connection((host, port), timeout=10) as sock:
        sock.sendall(request.format(path=path).encode())
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    return reply.decode()


def vector(i: int) -> list:
    return digits().features[i].tolist()


def test_samples_and_batches_are_accepted_and_answered(tmp_path, no_stray_processes):
    out = tmp_path / "answers.jsonl"
    extensions = [{"name": "hook", "module": "webhook", "port": 0},
                  {"name": "answers", "module": "jsonl", "path": str(out), "sources": ["hook"]}]
    with network_with(tmp_path, extensions) as network:
        url = ext_call(network, "hook", "status")["url"]
        status, _, answer = post(url, {"vector": vector(0), "target": 0, "message_hash_id": "first"})
        assert (status, answer) == (202, {"ok": True, "accepted": 1, "ids": ["first"]})
        batch = {"samples": [{"vector": vector(i), "target": str(int(digits().targets[i]))} for i in range(1, 9)]
                 + [{"text": "hello"}]}
        status, _, answer = post(url, batch)
        assert status == 202 and answer["accepted"] == 9 and len(set(answer["ids"])) == 9, answer
        metrics = wait_metric(network, "hook", "answered", 10)
        assert metrics["accepted"] == 10 and metrics["scored"] == 9 and metrics["bad_frames"] == 0, metrics
        records = wait_until(lambda: len(read_jsonl(out)) >= 10 and read_jsonl(out), what="10 JSON lines")
    ids = ["first", *answer["ids"]]
    assert sorted(r["message_hash_id"] for r in records) == sorted(ids)
    by_id = {r["message_hash_id"]: r for r in records}
    assert by_id["first"]["target"] == 0 and "target" not in by_id[answer["ids"][-1]]
    assert all(r["source"] == "hook" for r in records)


def test_bad_requests_get_clear_errors_are_counted_and_crash_nothing(tmp_path, no_stray_processes):
    token = tmp_path / "token"
    token.write_text("s3cret-token\n")
    extensions = [{"name": "hook", "module": "webhook", "port": 0, "token_file": str(token), "max_bytes": 4096,
                   "max_batch": 5}]
    auth = {"Authorization": "Bearer s3cret-token"}
    with network_with(tmp_path, extensions) as network:
        status = ext_call(network, "hook", "status")
        url, pid = status["url"], status["pid"]
        assert status["token"] is True
        cases = [  # (body, headers, method, raw) -> status, error, words in the detail
            ({"vector": vector(0)}, {}, "POST", False, 401, "unauthorized", "Bearer"),
            ({"vector": vector(0)}, {"Authorization": "Bearer wrong"}, "POST", False, 401, "unauthorized", "Bearer"),
            (b"{not json", auth, "POST", True, 400, "bad_json", "not JSON"),
            (b"\xff\xfe\x00", auth, "POST", True, 400, "bad_json", "not UTF-8"),
            ({"vector": [1.0, 2.0]}, auth, "POST", False, 400, "wrong_shape", "expected 64 values, got 2"),
            ({"vector": ["x"] * 64}, auth, "POST", False, 400, "bad_input", "list of numbers"),
            ({"vector": vector(0), "target": "eleven"}, auth, "POST", False, 400, "unknown_label", "'eleven'"),
            ({"vector": vector(0), "target": 10}, auth, "POST", False, 400, "unknown_label", "0..9"),
            ({"vectr": vector(0)}, auth, "POST", False, 400, "bad_input", "unknown keys ['vectr']"),
            ([1, 2, 3], auth, "POST", False, 400, "bad_input", "got list"),
            ({"samples": [{"vector": vector(0)}, {"vector": vector(1)[:10]}]}, auth, "POST", False, 400,
             "wrong_shape", "sample 1:"),
            ({"samples": [{"vector": vector(0)}] * 6}, auth, "POST", False, 400, "too_large", "max_batch (5)"),
            ({"samples": []}, auth, "POST", False, 400, "bad_input", "at least one sample"),
            ({"vector": [0.123456789] * 1000}, auth, "POST", False, 413, "too_large", "limit of 4096"),
            ({"vector": vector(0)}, {**auth, "Content-Type": "text/plain"}, "POST", False, 415,
             "unsupported_media_type", "text/plain"),
            ({"vector": vector(0)}, auth, "GET", False, 405, "method_not_allowed", "POST"),
        ]
        for body, headers, method, raw, want_status, error, words in cases:
            got, response_headers, answer = post(url, body, headers, method, raw)
            assert (got, answer["ok"], answer["error"]) == (want_status, False, error), (body, answer)
            assert words in answer["detail"], answer
        got, headers, answer = post(url.replace("/samples", "/nowhere"), {"vector": vector(0)}, auth)
        assert (got, answer["error"]) == (404, "not_found")
        assert post(url, {"vector": vector(0)}, {})[1]["WWW-Authenticate"].startswith("Bearer")
        # an oversized body is refused from its Content-Length, before it is sent
        head = "POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer s3cret-token\r\n"
        reply = exchange(url, head + "Content-Type: application/json\r\nContent-Length: 999999999\r\n\r\n")
        assert reply.startswith("HTTP/1.1 413") and '"too_large"' in reply, reply
        reply = exchange(url, head + "Transfer-Encoding: chunked\r\n\r\n")  # no Content-Length
        assert reply.startswith("HTTP/1.1 411") and '"length_required"' in reply, reply
        status, _, answer = post(url, {"vector": vector(3), "target": 3}, auth)
        assert status == 202, "still serving"
        metrics = wait_metric(network, "hook", "answered", 1)
        rejected = len(cases) + 4
        metrics = wait_metric(network, "hook", "bad_frames", rejected)
        assert metrics["bad_frames"] == rejected and metrics["accepted"] == 1, metrics
        assert metrics["bad_frames_by_kind"]["http_401_unauthorized"] == 3
        assert metrics["bad_frames_by_kind"]["http_413_too_large"] == 2
        assert ext_call(network, "hook", "status")["pid"] == pid, "nothing crashed"


def test_a_full_queue_answers_503_with_retry_after(tmp_path, no_stray_processes):
    extensions = [{"name": "hook", "module": "webhook", "port": 0, "queue": 5, "rate": 0.2}]  # one every 5 s
    with network_with(tmp_path, extensions) as network:
        url = ext_call(network, "hook", "status")["url"]
        assert post(url, {"samples": [{"vector": vector(i)} for i in range(5)]})[0] == 202
        wait_metric(network, "hook", "sent", 1)  # one goes at once, the next in 5 s
        assert post(url, {"vector": vector(5)})[0] == 202  # 5 waiting: full
        status, headers, answer = post(url, {"vector": vector(6)})
        assert (status, answer["error"], headers["Retry-After"]) == (503, "busy", "1"), answer
        assert post(url, {"samples": [{"vector": vector(i)} for i in range(6)]})[0] == 503, "all or nothing"
        wait_metric(network, "hook", "sent", 2)
        assert post(url, {"vector": vector(6)})[0] == 202, "room again once samples went out"
        assert ext_call(network, "hook")["bad_frames_by_kind"] == {"http_503_busy": 2}


def test_a_token_from_the_environment_and_a_bad_line_refused_early(tmp_path, no_stray_processes, monkeypatch):
    from neurox.ext import ExtensionError, network_children
    from neurox.neuron import load_topology
    topology = load_topology()
    topology.extensions = [{"name": "hook", "module": "webhook", "token_env": "NX_TEST_HOOK_TOKEN"}]
    monkeypatch.delenv("NX_TEST_HOOK_TOKEN", raising=False)
    with pytest.raises(ExtensionError, match="NX_TEST_HOOK_TOKEN .* unset"):
        network_children(topology, str(tmp_path))
    topology.extensions = [{"name": "hook", "module": "webhook", "port": "80"}]
    with pytest.raises(ExtensionError, match="'port': expected an integer"):
        network_children(topology, str(tmp_path))
    monkeypatch.setenv("NX_TEST_HOOK_TOKEN", "from-the-env")  # the launcher, and so the extension, inherit it
    with network_with(tmp_path, [{"name": "hook", "module": "webhook", "port": 0,
                                  "token_env": "NX_TEST_HOOK_TOKEN"}]) as network:
        url = ext_call(network, "hook", "status")["url"]
        assert post(url, {"vector": vector(0)})[0] == 401
        assert post(url, {"vector": vector(0)}, {"Authorization": "Bearer from-the-env"})[0] == 202
