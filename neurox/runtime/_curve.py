"""ZeroMQ CURVE for every TCP socket: a key pair per host and an allow-list of public keys.

A keys directory (made by ``neurox keys`` or the Ansible role ``node``) holds::

    KEYS_DIR/HOST.key_secret    this host's key pair, zmq.auth's format (0600, the service user's)
    KEYS_DIR/allowed/NAME.key   the public keys allowed to connect: every host of the network and
                                any admin client; NAME.key of a host is also how peers find its
                                server key

A server socket gets CURVE only for its TCP binds (options are taken per bind, so the same socket
keeps its plain ipc bind for local peers). Every process serving CURVE runs a ZAP handler
(:class:`ZapHandler`) in its context that accepts exactly the allow-listed public keys: a peer with
another key, or without CURVE, never completes the handshake, so it can neither send nor read.
Secret keys are never printed: :class:`CurveKeys` hides them from ``repr``.
"""
from __future__ import annotations

import os
import threading
import weakref
from dataclasses import dataclass, field

import zmq
import zmq.auth
from zmq.utils import z85

ALLOWED_DIR = "allowed"
ZAP_ENDPOINT = "inproc://zeromq.zap.01"
ZAP_VERSION = b"1.0"


class KeysError(ValueError):
    """A keys directory that cannot be used (the message names the file)."""


@dataclass(frozen=True)
class CurveKeys:
    """This host's key pair and the public keys it lets in (z85-encoded bytes)."""

    public: bytes
    secret: bytes = field(repr=False)
    allowed: frozenset[bytes]
    keys_dir: str

    @classmethod
    def load(cls, keys_dir: str, name: str) -> "CurveKeys":
        secret_file = os.path.join(keys_dir, f"{name}.key_secret")
        try:
            public, secret = zmq.auth.load_certificate(secret_file)
        except (OSError, ValueError) as exc:
            raise KeysError(f"{secret_file}: {exc}") from None
        if secret is None:
            raise KeysError(f"{secret_file}: holds no secret key")
        return cls(public, secret, frozenset(allowed_keys(keys_dir).values()), keys_dir)

    def server_key(self, name: str) -> bytes:
        """The public key of host ``name`` (``allowed/NAME.key``): what a client checks the server by."""
        path = os.path.join(self.keys_dir, ALLOWED_DIR, f"{name}.key")
        try:
            return zmq.auth.load_certificate(path)[0]
        except (OSError, ValueError) as exc:
            raise KeysError(f"{path}: {exc}") from None

    def client_options(self, server_key: bytes) -> dict:
        """The ``curve`` argument of :class:`~neurox.runtime.ControlClient` for a server."""
        return {"public": self.public, "secret": self.secret, "server": server_key}


def allowed_keys(keys_dir: str) -> dict[str, bytes]:
    """Name -> public key of every ``allowed/*.key`` (an empty dict when there are none)."""
    directory = os.path.join(keys_dir, ALLOWED_DIR)
    if not os.path.isdir(directory):
        return {}
    keys = {}
    for entry in sorted(os.listdir(directory)):
        if entry.endswith(".key"):
            try:
                keys[entry[:-len(".key")]] = zmq.auth.load_certificate(os.path.join(directory, entry))[0]
            except (OSError, ValueError) as exc:
                raise KeysError(f"{directory}/{entry}: {exc}") from None
    return keys


def create_keys(keys_dir: str, name: str) -> tuple[str, str]:
    """Make ``NAME.key`` and ``NAME.key_secret`` in ``keys_dir`` (the secret 0600); the two paths."""
    os.makedirs(keys_dir, mode=0o750, exist_ok=True)
    old_umask = os.umask(0o077)
    try:
        public_file, secret_file = zmq.auth.create_certificates(keys_dir, name)
    finally:
        os.umask(old_umask)
    os.chmod(public_file, 0o644)
    return public_file, secret_file


def serve_curve(sock: zmq.Socket, keys: CurveKeys) -> None:
    """Make the socket's next binds CURVE servers that only allow-listed clients pass."""
    ZapHandler.ensure(sock.context, keys.allowed)
    sock.curve_secretkey = keys.secret
    sock.curve_publickey = keys.public
    sock.curve_server = True


def connect_curve(sock: zmq.Socket, options: dict) -> None:
    """Make the socket's next connects CURVE clients (``options`` as from ``client_options``)."""
    sock.curve_secretkey = options["secret"]
    sock.curve_publickey = options["public"]
    sock.curve_serverkey = options["server"]


def zap_reply(frames: list[bytes], allowed: frozenset[bytes]) -> list[bytes]:
    """The ZAP (RFC 27) reply to one request: 200 for an allow-listed CURVE key, 400 otherwise."""
    if len(frames) < 6:
        return [ZAP_VERSION, frames[1] if len(frames) > 1 else b"", b"500", b"malformed ZAP request", b"", b""]
    version, request_id, _domain, _address, _identity, mechanism, *credentials = frames
    if version != ZAP_VERSION:
        return [ZAP_VERSION, request_id, b"500", b"unsupported ZAP version", b"", b""]
    if mechanism == b"CURVE" and credentials and len(credentials[0]) == 32:
        public = z85.encode(credentials[0])
        if public in allowed:
            return [version, request_id, b"200", b"OK", public, b""]
    return [version, request_id, b"400", b"not allowed", b"", b""]


class ZapHandler(threading.Thread):
    """A context's ZAP handler: a daemon thread answering ``inproc://zeromq.zap.01``.

    Unlike zmq.auth's ThreadAuthenticator it needs no stop call: when the process terminates its
    context (as every NeuroX process does on its way out, with ``ctx.destroy()``) the thread's socket
    gets ``ETERM``, closes and the thread ends, so ``ctx.term()`` never waits for it.
    """

    _by_context: "weakref.WeakKeyDictionary[zmq.Context, ZapHandler]" = weakref.WeakKeyDictionary()
    _lock = threading.Lock()

    def __init__(self, ctx: zmq.Context, allowed: frozenset[bytes]):
        super().__init__(name="neurox-zap", daemon=True)
        self.allowed = allowed
        # Not ``ctx.socket``: a socket the context registers is closed by ``ctx.destroy()`` from the
        # main thread while this thread blocks in it, and then ``term`` never returns (zmq_close is not
        # thread-safe). Unregistered, it is closed here when ``term`` wakes the thread with ETERM.
        self.sock = zmq.Socket(ctx, zmq.REP)
        self.sock.linger = 0
        self.sock.bind(ZAP_ENDPOINT)

    @classmethod
    def ensure(cls, ctx: zmq.Context, allowed: frozenset[bytes]) -> "ZapHandler":
        """The context's handler, started on first use (before any CURVE bind can be reached)."""
        with cls._lock:
            handler = cls._by_context.get(ctx)
            if handler is None:
                handler = cls._by_context[ctx] = cls(ctx, allowed)
                handler.start()
            elif handler.allowed != allowed:
                raise KeysError("one process, two different allow-lists")
            return handler

    def run(self) -> None:
        try:
            while True:
                request = self.sock.recv_multipart()
                try:
                    reply = zap_reply(request, self.allowed)
                except Exception as exc:  # fail closed: the handler must stay bound, or libzmq lets anyone in
                    reply = [ZAP_VERSION, request[1] if len(request) > 1 else b"", b"500", str(exc).encode(), b"", b""]
                self.sock.send_multipart(reply)
        except zmq.ContextTerminated:
            pass
        finally:
            self.sock.close()
