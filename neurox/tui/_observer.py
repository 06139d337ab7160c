"""Watching and acting on a running network, without Textual: the TUI's core (pyzmq's asyncio layer).

Kept free of any UI import (a test checks it), so the same observer can serve another front end.

A snapshot is one ``tree`` request to the network's Supervisor service when it runs (docs/operations.md):
what every process last said of itself, however many there are. Without the service, or while it does
not answer, the observer asks every process itself, and tries the service again a little later.
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

    @classmethod
    def from_data_dir(cls, data_dir: str) -> "Endpoints":
        try:
            with open(os.path.join(data_dir, "run.json")) as f:
                found = json.load(f)
        except (OSError, ValueError):
            raise ObserverError(f"no running network found in {data_dir}") from None
        service = service_endpoint(found["run_dir"]) if "run_dir" in found else None
        return cls(found["control"], found["events"], found["reshaper"], service)


@dataclass(frozen=True)
class ProcessRow:
    """One process of the tree as the observer last saw it."""

    path: str
    depth: int
    kind: str
    pid: int | str
    status: dict

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

    async def call(self, endpoint: str, op: str, **args):
        try:
            return await call_async(self.ctx, endpoint, op, self.timeout, **args)
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
        rows = [ProcessRow("root", 0, "supervisor", root["pid"], root)]
        await self._visit(root, "root", 1, rows)
        return rows

    async def _visit(self, status: dict, path: str, depth: int, rows: list[ProcessRow]) -> None:
        children = status.get("children", [])
        op = {"supervisor": "status", "worker": "status"}
        statuses = await asyncio.gather(*[self._status_or_error(c, op[c["type"]]) for c in children])
        for child, child_status in zip(children, statuses):
            row = ProcessRow(f"{path}/{child['id']}", depth, child["type"], child["pid"], child_status)
            rows.append(row)
            if child["type"] == "supervisor" and "children" in child_status:
                await self._visit(child_status, row.path, depth + 1, rows)

    async def _status_or_error(self, child: dict, op: str) -> dict:
        if not isinstance(child["pid"], int):
            return {}
        try:
            status = await self.call(child["control"], op)
            if child["type"] == "worker" and child["id"] != "reshaper":  # neurons and extensions: counters too
                status = {**status, "metrics": await self.call(child["control"], "metrics")}
            return status
        except ObserverError as exc:
            return {"error": str(exc)}

    async def events(self):
        """Lifecycle events as they happen (an endless async generator)."""
        sub = self.ctx.socket(zmq.SUB)
        sub.setsockopt(zmq.LINGER, 0)
        sub.setsockopt(zmq.SUBSCRIBE, b"")
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

    async def reshape(self, op: str, **args):
        return await self.call(self.endpoints.reshaper, op, **args)

    @staticmethod
    def kill(pid: int) -> None:
        """SIGKILL a process of the tree (its supervisor will replace it)."""
        os.kill(pid, signal.SIGKILL)

    def close(self) -> None:
        self.ctx.destroy(linger=0)
