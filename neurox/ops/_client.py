"""Asking the Supervisor service from a tool (``neurox probe``, the Prometheus collector, the bot).

One method per control op (docs/protocol.md, "Supervisor service"); errors arrive as
:class:`~neurox.runtime.ControlError` with the service's atom in ``.error`` (``not_found``,
``ambiguous``, ``bad_request``) or ``timeout``.
"""
from __future__ import annotations

import os

import zmq

from ..runtime import ControlClient, ControlError
from ._service import service_endpoint

PING_TIMEOUT_S = 0.5


class ServiceClient:
    """A client of one Supervisor service (not thread-safe: one per thread)."""

    def __init__(self, ctx: zmq.Context, endpoint: str, timeout: float = 3.0):
        self.endpoint = endpoint
        self.client = ControlClient(ctx, endpoint, timeout)

    @classmethod
    def find(cls, ctx: zmq.Context, run_dir: str, timeout: float = 3.0) -> "ServiceClient | None":
        """The service of the network in ``run_dir`` if it runs and answers ``ping``, else None (at once
        when its socket does not exist: a network started without the service)."""
        endpoint = service_endpoint(run_dir)
        if not os.path.exists(endpoint[len("ipc://"):]):
            return None
        client = cls(ctx, endpoint, timeout)
        try:
            client.client.call("ping", timeout=min(timeout, PING_TIMEOUT_S))
        except ControlError:
            client.close()
            return None
        return client

    def call(self, op: str, **args):
        return self.client.call(op, **{k: v for k, v in args.items() if v is not None})

    def neuron_status(self, host: str | None = None, layer: str | None = None) -> dict:
        return self.call("neuron_status", host=host, layer=layer)

    def neuron_metrics(self, neuron_id: str, host: str | None = None) -> dict:
        return self.call("neuron_metrics", id=neuron_id, host=host)

    def tree(self, host: str | None = None, detail: bool = False) -> dict:
        return self.call("tree", host=host, detail=detail)

    def recent_events(self, limit: int = 100, prefix: str = "", host: str | None = None) -> list[dict]:
        return self.call("recent_events", limit=limit, prefix=prefix, host=host)

    def picture(self) -> dict:
        return self.call("picture")

    def latency(self, host: str | None = None) -> dict:
        """Request latency and neurons' processing time as histograms (``Picture.latency``)."""
        return self.call("latency", host=host)

    def status(self) -> dict:
        return self.call("status")

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> "ServiceClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
