"""Watching and acting on a running network, without Textual: the TUI's core (pyzmq's asyncio layer).

Kept free of any UI import (a test checks it), so the same observer can serve another front end.
"""
from __future__ import annotations

import asyncio
import itertools
import json
import os
import signal
from dataclasses import dataclass

import zmq
import zmq.asyncio

from ..runtime import pack, unpack_map

_rids = itertools.count(1)


class ObserverError(Exception):
    """The network did not answer, or answered with an error."""


@dataclass(frozen=True)
class Endpoints:
    control: str
    events: str
    reshaper: str

    @classmethod
    def from_data_dir(cls, data_dir: str) -> "Endpoints":
        try:
            with open(os.path.join(data_dir, "run.json")) as f:
                found = json.load(f)
        except (OSError, ValueError):
            raise ObserverError(f"no running network found in {data_dir}") from None
        return cls(found["control"], found["events"], found["reshaper"])


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
        return self.kind == "worker" and "layer" in self.status


class Observer:
    def __init__(self, endpoints: Endpoints, timeout: float = 2.0):
        self.endpoints = endpoints
        self.timeout = timeout
        self.ctx = zmq.asyncio.Context()

    async def call(self, endpoint: str, op: str, **args):
        try:
            sock = self.ctx.socket(zmq.DEALER)
        except zmq.ZMQError as exc:  # the observer is closing
            raise ObserverError(str(exc)) from None
        sock.setsockopt(zmq.LINGER, 0)
        try:
            sock.connect(endpoint)
            await sock.send_multipart([b"", pack({"op": op, "rid": next(_rids), **args})])
            if not await sock.poll(int(self.timeout * 1000)):
                raise ObserverError(f"{endpoint} did not answer {op!r} within {self.timeout} s")
            reply = unpack_map((await sock.recv_multipart())[-1])
        except zmq.ZMQError as exc:
            raise ObserverError(str(exc)) from None
        finally:
            sock.close()
        if not reply.get("ok"):
            raise ObserverError(f"{reply.get('error')}: {reply.get('detail')}")
        return reply["result"]

    async def snapshot(self) -> list[ProcessRow]:
        """Every process of the tree, depth first, with what each says of itself (asked concurrently)."""
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
                _, body = await sub.recv_multipart()
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
