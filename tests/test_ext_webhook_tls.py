"""The webhook over HTTPS when given a certificate and key: samples accepted over TLS, a plain-HTTP or
failed handshake refused and counted, the server going on; a half-given or unreadable pair refused
before anything starts."""
import http.client
import json
import socket
import ssl
import subprocess

import pytest

from _extutil import ext_call, network_with, wait_metric
from neurox.ext import ExtensionError, digits, network_children
from neurox.neuron import load_topology

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def certificate(tmp_path):
    """A self-signed certificate for 127.0.0.1 and its key (PEM files)."""
    cert, key = tmp_path / "hook.crt", tmp_path / "hook.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True, timeout=60)
    return cert, key


def test_https_accepts_samples_and_refuses_plain_http(tmp_path, certificate, no_stray_processes):
    cert, key = certificate
    extensions = [{"name": "hook", "module": "webhook", "port": 0, "tls_cert": str(cert), "tls_key": str(key)}]
    with network_with(tmp_path, extensions) as network:
        status = ext_call(network, "hook", "status")
        assert status["url"].startswith("https://127.0.0.1:") and status["tls"] is True
        port = int(status["url"].rsplit(":", 1)[1].split("/")[0])
        trusted = ssl.create_default_context(cafile=str(cert))
        conn = http.client.HTTPSConnection("127.0.0.1", port, context=trusted, timeout=10)
        try:
            for i in range(3):  # one keep-alive connection, several requests
                conn.request("POST", "/samples", body=json.dumps({"vector": digits().features[i].tolist(),
                                                                  "target": int(digits().targets[i])}),
                             headers={"Content-Type": "application/json"})
                response = conn.getresponse()
                assert (response.status, json.loads(response.read())["accepted"]) == (202, 1)
            assert conn.sock.version() in ("TLSv1.2", "TLSv1.3")
        finally:
            conn.close()
        # plain HTTP to an HTTPS port: no answer but a closed connection, counted
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(b"POST /samples HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}")
            try:
                reply = sock.recv(4096)
            except ConnectionResetError:
                reply = b""
            assert b"HTTP/1.1" not in reply
        # a client that does not trust the certificate fails its handshake; the server goes on
        with pytest.raises(ssl.SSLError):
            with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
                ssl.create_default_context().wrap_socket(raw, server_hostname="127.0.0.1")
        metrics = wait_metric(network, "hook", "answered", 3)
        metrics = wait_metric(network, "hook", "bad_frames", 2)
        assert metrics["bad_frames_by_kind"].get("http_400_tls_handshake", 0) >= 2, metrics
        assert ext_call(network, "hook", "status")["pid"] == status["pid"]


def test_a_half_or_unreadable_certificate_is_refused_before_anything_starts(tmp_path, certificate):
    cert, key = certificate
    topology = load_topology()
    for line, words in (({"tls_cert": str(cert)}, "needs both tls_cert and tls_key"),
                        ({"tls_cert": str(key), "tls_key": str(key)}, "extension 'hook'"),
                        ({"tls_cert": str(tmp_path / "none.crt"), "tls_key": str(key)}, "extension 'hook'")):
        topology.extensions = [{"name": "hook", "module": "webhook", "port": 0, **line}]
        with pytest.raises(ExtensionError, match=words):
            network_children(topology, str(tmp_path))
