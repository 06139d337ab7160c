"""Watching and acting on a running network, without Textual: the TUI's core (pyzmq's asyncio layer).

Kept free of any UI import (a test checks it), so the same observer can serve another front end.

A snapshot is one ``tree`` request to the network's Supervisor service when it runs (docs/operations.md):
what every process last said of itself, however many there are. Without the service, or while it does
not answer, the observer asks every process itself, and tries the service again a little later.

A host of a network spread over hosts is watched from anywhere through its control gateway
(``Endpoints.through``): every process is then named by its path, asked through the gateway under
CURVE, and the events come from the host's bus over TCP.
"""
from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from dataclasses import dataclass

import zmq
import zmq.asyncio

from ..ops import service_endpoint
from ..runtime import ControlError, call_async, unpack_map
from ..supervisor_tree import control_endpoint

MESSENGER_PATH = "root/messenger_in"
SERVICE_RETRY_S = 10.0
"""After the service failed to answer, snapshots are taken directly for this long."""


class ObserverError(Exception):
    """The network did not answer, or answered with an error."""


@dataclass(frozen=True)
class Endpoints:
    control: str
    events: str
    reshaper: str
    service: str | None = None
    """The Supervisor service's control endpoint (an ipc one), if the network may have one."""
    remote: object | None = None
    """A ``neurox.ops._gateway.Remote``: then ``control`` and ``reshaper`` are paths asked through it."""
    events_curve: dict | None = None
    messenger: str | None = None
    """MessengerIn's control endpoint (or path, remotely): its ``scaling`` is the input scaling shown."""

    @classmethod
    def through(cls, remote, ctx: zmq.Context | None = None, timeout: float = 3.0) -> "Endpoints":
        """A remote host's endpoints, from its gateway's ``endpoints`` answer (ObserverError if it is silent)."""
        client = remote.client(ctx or zmq.Context.instance(), "gateway", timeout)
        try:
            found = client.call("endpoints")
        except ControlError as exc:
            raise ObserverError(f"the gateway {remote.gateway} did not answer: {exc}") from None
        finally:
            client.close()
        return cls("root", found["events"], "root/reshaper", None, remote, remote.curve, MESSENGER_PATH)

    @classmethod
    def from_data_dir(cls, data_dir: str) -> "Endpoints":
        try:
            with open(os.path.join(data_dir, "run.json")) as f:
                found = json.load(f)
        except (OSError, ValueError):
            raise ObserverError(f"no running network found in {data_dir}") from None
        run_dir = found.get("run_dir")
        service = service_endpoint(run_dir) if run_dir else None
        messenger = control_endpoint(run_dir, MESSENGER_PATH) if run_dir else None
        return cls(found["control"], found["events"], found["reshaper"], service, messenger=messenger)


@dataclass(frozen=True)
class ProcessRow:
    """One process of the tree as the observer last saw it."""

    path: str
    depth: int
    kind: str
    pid: int | str
    status: dict
    local: bool = True
    """On this host (its pid is one of this machine's), not seen through a gateway."""

    @property
    def name(self) -> str:
        return self.path.rsplit("/", 1)[-1]

    @property
    def is_neuron(self) -> bool:
        return self.kind == "worker" and "layer" in self.status and not self.status.get("twin_of")  # not a pool twin

    @property
    def neuron_layer(self) -> str | None:
        """The layer of a neuron -- its supervisor's id, whether that sits under the root or under a region's
        supervisor -- also while it is down; None for any other process (the root's own workers, and the
        twins in the maintenance pool, which the tree shows but which are not the network's)."""
        if self.kind != "worker" or self.depth < 2 or self.status.get("twin_of"):
            return None
        return self.path.rsplit("/", 2)[-2]


def layer_of(row: ProcessRow, rows: list[ProcessRow]) -> str | None:
    """The layer a selected row stands for: a neuron's, or a layer supervisor's own (the supervisors that
    hold neurons); None for the root, a region's supervisor and the root's own workers."""
    if row.kind == "worker":
        return row.neuron_layer
    holds_neurons = any(r.neuron_layer is not None and r.path.rsplit("/", 1)[0] == row.path for r in rows)
    return row.name if holds_neurons else None


class Observer:
    def __init__(self, endpoints: Endpoints, timeout: float = 2.0):
        self.endpoints = endpoints
        self.timeout = timeout
        self.ctx = zmq.asyncio.Context()
        self.service_retry_at = 0.0
        self.via_service = False
        """Whether the last snapshot came from the Supervisor service."""

    @property
    def remote(self) -> bool:
        return self.endpoints.remote is not None

    async def call(self, endpoint: str, op: str, **args):
        """One request to an endpoint, or -- through a gateway -- to the process at a path."""
        curve = None
        if self.remote and not endpoint.startswith(("ipc://", "tcp://")):
            args, endpoint, curve = {**args, "path": endpoint}, self.endpoints.remote.gateway, self.endpoints.remote.curve
        try:
            return await call_async(self.ctx, endpoint, op, self.timeout, curve=curve, **args)
        except ControlError as exc:
            raise ObserverError(str(exc)) from None

    async def snapshot(self) -> list[ProcessRow]:
        """Every process of the tree, depth first, with what each says of itself: from the service if it
        runs, else asked of every process (concurrently)."""
        rows = await self._from_service()
        self.via_service = rows is not None
        return rows if rows is not None else await self._walk()

    async def _from_service(self) -> list[ProcessRow] | None:
        endpoint = self.endpoints.service
        if endpoint is None or time.monotonic() < self.service_retry_at \
                or not os.path.exists(endpoint.removeprefix("ipc://")):
            return None
        try:
            tree = await self.call(endpoint, "tree", detail=True)
        except ObserverError:
            self.service_retry_at = time.monotonic() + SERVICE_RETRY_S
            return None
        rows = []
        for row in tree["rows"]:
            if row["host"] != tree["local"]:
                continue  # another host's processes: this observer acts on its own host (the reshaper is local)
            status = row.get("status") or {}
            if row["state"] == "silent":
                status = {**status, "error": "no report for a while"}
            elif not isinstance(row["pid"], int):
                status = {}
            rows.append(ProcessRow(row["path"], row["depth"], row["type"], row["pid"], status))
        return rows

    async def _walk(self) -> list[ProcessRow]:
        root = await self.call(self.endpoints.control, "status")
        rows = [ProcessRow("root", 0, "supervisor", root["pid"], root, not self.remote)]
        await self._visit(root, "root", 1, rows)
        return rows

    async def _visit(self, status: dict, path: str, depth: int, rows: list[ProcessRow]) -> None:
        children = status.get("children", [])
        op = {"supervisor": "status", "worker": "status"}
        if self.remote:  # each child by its path, through the gateway
            children = [{**c, "control": f"{path}/{c['id']}"} for c in children]
        statuses = await asyncio.gather(*[self._status_or_error(c, op[c["type"]]) for c in children])
        for child, child_status in zip(children, statuses):
            row = ProcessRow(f"{path}/{child['id']}", depth, child["type"], child["pid"], child_status, not self.remote)
            rows.append(row)
            if child["type"] == "supervisor" and "children" in child_status:
                await self._visit(child_status, row.path, depth + 1, rows)

    async def _status_or_error(self, child: dict, op: str) -> dict:
        if not isinstance(child["pid"], int):
            return {}
        try:
            status = await self.call(child["control"], op)
            if child["type"] == "worker":  # every worker answers metrics too
                status = {**status, "metrics": await self.call(child["control"], "metrics")}
            return status
        except ObserverError as exc:
            return {"error": str(exc)}

    async def events(self):
        """Lifecycle events as they happen (an endless async generator)."""
        sub = self.ctx.socket(zmq.SUB)
        sub.setsockopt(zmq.LINGER, 0)
        sub.setsockopt(zmq.SUBSCRIBE, b"")
        if self.endpoints.events_curve:
            _curve(sub, self.endpoints.events_curve)
        sub.connect(self.endpoints.events)
        try:
            while True:
                topic, body = await sub.recv_multipart()
                if topic != b"neuron_report":  # the periodic reports are for the service, not the event log
                    yield unpack_map(body)
        except zmq.ZMQError:
            return  # the observer was closed
        finally:
            sub.close()

    async def scaling(self) -> dict | None:
        """MessengerIn's input scaling (``neurox probe state scaling``), or None if it does not answer."""
        if self.endpoints.messenger is None:
            return None
        try:
            return await self.call(self.endpoints.messenger, "scaling")
        except ObserverError:
            return None

    async def reshape(self, op: str, **args):
        return await self.call(self.endpoints.reshaper, op, **args)

    @staticmethod
    def kill(pid: int) -> None:
        """SIGKILL a process of the tree (its supervisor will replace it)."""
        os.kill(pid, signal.SIGKILL)

    def close(self) -> None:
        self.ctx.destroy(linger=0)


def _curve(sock: zmq.Socket, curve: dict) -> None:
    """Make the socket's next connect a CURVE client (``Remote.curve``: public, secret, server)."""
    sock.curve_publickey, sock.curve_secretkey, sock.curve_serverkey = curve["public"], curve["secret"], curve["server"]
