"""The maintenance pool: twins of the working neurons, in a supervisor subtree and data plane of their own.

During maintenance the network's learning moves out of the way of its work. The pool supervisor
(``root/maintenance_pool``) starts a twin of every neuron -- the same process, seeded with the working
neuron's current weights, its inbox and links in ``RUN_DIR/pool`` and its DB in ``DATA_DIR/pool`` -- so
the twins form a shadow of the network that dreams can flow through, forward and back, without touching
the working one. Twins start frozen (they pass gradients upstream but keep their weights). A group's
turn unfreezes its twins; at the end of the turn each working neuron of the group takes back what its
twin learnt (``set_params`` with ``add``: twin minus the copy it started from, added to whatever the
working neuron learnt online meanwhile) and the twin is frozen again. After the last turn the twins stop.
The working network is never stopped, drained or rewired: it keeps answering throughout.
"""
from __future__ import annotations

import dataclasses
import os
import shutil

import numpy as np
import zmq

from ..neuron import (OUTPUT, OUTPUT_FRAME, Topology, array_from_wire, array_to_wire, decode_frame, inbox_endpoint,
                      neuron_spec)
from ..runtime import ControlError, FrameError, call, make_socket
from ..supervisor_tree import ChildSpec, SupervisorClient, control_endpoint, supervisor_spec

POOL_ID = "maintenance_pool"
CALL_TIMEOUT_S = 5.0


def pool_spec(topology: Topology) -> ChildSpec:
    """The pool's supervisor: empty while the network is awake; one_for_one over the twins, each
    ``transient`` (a twin that crashes is restarted, from its own DB or the working neuron again)."""
    return supervisor_spec(POOL_ID, [], "one_for_one", int(topology.supervision["intensity"]),
                           float(topology.supervision["period_s"]))


class Pool:
    """The pool as the maintenance worker drives it: open, train a group, give it back, close."""

    def __init__(self, ctx: zmq.Context, run_dir: str, data_dir: str):
        self.ctx = ctx
        self.run_dir = run_dir
        self.data_dir = data_dir
        self.plane_dir = os.path.join(run_dir, "pool")
        self.store_dir = os.path.join(data_dir, "pool")
        self.supervisor = SupervisorClient(control_endpoint(run_dir, f"root/{POOL_ID}"), ctx, CALL_TIMEOUT_S * 4)
        self.copies: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        """Each twin's weights and bias as it started: what it learns is measured from them."""
        self.working: dict[str, str] = {}
        """Each twin's working neuron (its control endpoint)."""
        self.origin = None
        self.outputs: zmq.Socket | None = None
        self.losses: list[float] = []

    @property
    def open(self) -> bool:
        return self.origin is not None

    def twin_control(self, neuron: str) -> str:
        return control_endpoint(self.run_dir, f"root/{POOL_ID}/{neuron}")

    def start(self, topology: Topology, neurons: dict[str, str]) -> list[tuple[str, str]]:
        """Start a frozen twin of each neuron (id -> working control endpoint); returns the failures
        as (id, why): a twin that cannot start leaves a gap its neighbours fill with zeros."""
        self.clear()
        os.makedirs(self.plane_dir, exist_ok=True)
        self.outputs = make_socket(self.ctx, zmq.PULL, bind=inbox_endpoint(self.plane_dir, OUTPUT))
        from ..ext import Origin  # a layer above (see _maintenance)
        self.origin = Origin(self.ctx, self.plane_dir, topology, "dreams", remember=False, direct=True)
        failures = []
        for neuron, endpoint in neurons.items():
            args = {"neuron": neuron, "data_dir": self.data_dir, "twin_of": endpoint, "frozen": True,
                    "plane_dir": self.plane_dir, "store_dir": self.store_dir}
            spec = dataclasses.replace(neuron_spec(neuron, self.data_dir), args=args, restart="transient")
            try:
                self.supervisor.start_child(spec)
                params = self._call(self.twin_control(neuron), "get_params")
            except ControlError as exc:
                failures.append((neuron, exc.error))
                continue
            self.copies[neuron] = (array_from_wire(params["weights"]), array_from_wire(params["bias"]))
            self.working[neuron] = endpoint
        return failures

    def train(self, neurons: list[str]) -> None:
        """Their turn: these twins learn from the dreams (the others still pass gradients through)."""
        for neuron in neurons:
            if neuron in self.copies:
                self._call(self.twin_control(neuron), "set_params", frozen=False)

    def give_back(self, neurons: list[str]) -> list[dict]:
        """End of their turn: each working neuron adds what its twin learnt; the twin is frozen again.
        One record per neuron: how far its weights moved in the pool, or why it could not take them."""
        records = []
        for neuron in neurons:
            if neuron not in self.copies:
                continue
            record = {"id": neuron}
            try:
                params = self._call(self.twin_control(neuron), "set_params", frozen=True)
                params = self._call(self.twin_control(neuron), "get_params")
                weights0, bias0 = self.copies[neuron]
                weights, bias = array_from_wire(params["weights"]) - weights0, array_from_wire(params["bias"]) - bias0
                self._call(self.working[neuron], "set_params", add=True, weights=array_to_wire(weights), bias=array_to_wire(bias))
                record["moved"] = float(np.sqrt((weights ** 2).sum() + (bias ** 2).sum()))
            except ControlError as exc:  # reshaped (wrong_shape) or dead meanwhile: the online weights stay
                record["error"] = exc.error
            records.append(record)
        return records

    def dream(self, rows: np.ndarray, targets: list) -> None:
        self.origin.send(rows, targets, learn=True)

    def returned(self) -> int:
        """Packets that came out of the shadow network since the last call (their losses are kept)."""
        count = 0
        while True:
            try:
                frame = self.outputs.recv(zmq.NOBLOCK)
            except zmq.Again:
                return count
            try:
                message = decode_frame(frame, kinds=(OUTPUT_FRAME,))
            except FrameError:
                continue
            count += len(message[2])
            self.losses += [float(loss) for loss in message[6] if isinstance(loss, (int, float))]
            del self.losses[:-256]

    def clear(self) -> None:
        """Stop and remove every twin (also those a crashed predecessor of the worker left), and their DBs."""
        try:
            children = self.supervisor.which_children()
        except ControlError:
            children = []
        for child in children:
            try:
                self.supervisor.terminate_child(child["id"])
                self.supervisor.delete_child(child["id"])
            except ControlError:
                pass
        if self.origin is not None:
            self.origin.close()
            self.outputs.close(linger=0)
            self.origin = self.outputs = None
        self.copies.clear()
        self.working.clear()
        shutil.rmtree(self.store_dir, ignore_errors=True)

    def close(self) -> None:
        self.clear()
        self.supervisor.close()

    def _call(self, endpoint: str, op: str, **args) -> dict:
        return call(self.ctx, endpoint, op, CALL_TIMEOUT_S, **args)
