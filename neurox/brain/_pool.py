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

A twin that dies is restarted by its supervisor with the arguments it first had: frozen, and from its own
DB or a fresh copy of the working neuron. What the turn set and what its learning is measured from the
worker owns, so the worker re-establishes them (``reconcile``): the turn's frozen state again, and the
weights it came back with as its copy if it is a fresh one (``twin_baseline``).

Every copy, turn and give-back is a batch of control calls all in flight together (``batch_call``), not
one call after another: the twins start one by one (their supervisor starts a child at a time), but
reading what they hold and giving it back costs about one round trip for a thousand neurons.
"""
from __future__ import annotations

import dataclasses
import os
import shutil

import numpy as np
import zmq

from ..neuron import (OUTPUT, OUTPUT_FRAME, FirstLayerFeed, Topology, array_from_wire, array_to_wire, decode_frame,
                      inbox_endpoint, neuron_spec)
from ..runtime import ControlError, FrameError, fan_out, make_socket
from ..supervisor_tree import ChildSpec, SupervisorClient, control_endpoint, supervisor_spec
from ._sleep import kept_its_learning, own_learning, restarted_twins, twin_baseline

POOL_ID = "maintenance_pool"
CALL_TIMEOUT_S = 5.0
BATCH = 200
"""Control calls in flight together (a socket each; a zmq context holds 1,023 sockets by default)."""
BATCH_TIMEOUT_S = 15.0
"""One deadline for a whole batch: each call waits only for its own neuron, in parallel with the others."""


def batch_call(ctx: zmq.Context, endpoints: dict[str, str], op: str, each: dict[str, dict] | None = None,
               **args) -> dict[str, object]:
    """``op`` to every endpoint (``{name: endpoint}``), ``BATCH`` in flight at a time, whatever host each
    is on: ``{name: result or ControlError}``. ``each``: a name's own arguments beside the common ones."""
    names, answers = list(endpoints), {}
    for first in range(0, len(names), BATCH):
        chunk = {name: endpoints[name] for name in names[first:first + BATCH]}
        answers.update(fan_out(ctx, chunk, op, BATCH_TIMEOUT_S, each=each, **args))
    return answers


def learnt(params: dict, started: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """What a twin learnt: its weights and bias now (``get_params``) minus those it started from."""
    return array_from_wire(params["weights"]) - started[0], array_from_wire(params["bias"]) - started[1]


def pool_spec(topology: Topology) -> ChildSpec:
    """The pool's supervisor: empty while the network is awake; one_for_one over the twins, each
    ``transient`` (a twin that crashes is restarted, from its own DB or the working neuron again, and
    the worker's ``Pool.reconcile`` sets it up for the turn again)."""
    return supervisor_spec(POOL_ID, [], "one_for_one", int(topology.supervision["intensity"]),
                           float(topology.supervision["period_s"]))


class Pool:
    """The pool as the maintenance worker drives it: open, train a group, give it back, close."""

    def __init__(self, ctx: zmq.Context, run_dir: str, data_dir: str, queue: int):
        self.ctx = ctx
        self.queue = queue
        """Dreams a first-layer twin may have waiting before the next skip it (``dream_queue``)."""
        self.run_dir = run_dir
        self.data_dir = data_dir
        self.plane_dir = os.path.join(run_dir, "pool")
        self.store_dir = os.path.join(data_dir, "pool")
        self.supervisor = SupervisorClient(control_endpoint(run_dir, f"root/{POOL_ID}"), ctx, CALL_TIMEOUT_S * 4)
        self.copies: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        """Each twin's weights and bias as it started: what it learns is measured from them."""
        self.working: dict[str, str] = {}
        """Each twin's working neuron (its control endpoint)."""
        self.pids: dict[str, int] = {}
        """Each twin's process as the worker last set it up: another pid is a twin restarted since."""
        self.feed: FirstLayerFeed | None = None
        self.outputs: zmq.Socket | None = None
        self.losses: list[float] = []

    @property
    def open(self) -> bool:
        return self.feed is not None

    def twin_control(self, neuron: str) -> str:
        return control_endpoint(self.run_dir, f"root/{POOL_ID}/{neuron}")

    def start(self, topology: Topology, neurons: dict[str, str]) -> list[tuple[str, str]]:
        """Start a frozen twin of each neuron (id -> working control endpoint); returns the failures
        as (id, why): a twin that cannot start leaves a gap its neighbours fill with zeros."""
        self.clear()
        os.makedirs(self.plane_dir, exist_ok=True)
        self.outputs = make_socket(self.ctx, zmq.PULL, bind=inbox_endpoint(self.plane_dir, OUTPUT))
        self.feed = FirstLayerFeed(self.ctx, self.plane_dir, topology, "dreams", hwm=self.queue)
        failures, started = [], []
        for neuron, endpoint in neurons.items():
            args = {"neuron": neuron, "data_dir": self.data_dir, "twin_of": endpoint, "frozen": True,
                    "plane_dir": self.plane_dir, "store_dir": self.store_dir}
            spec = dataclasses.replace(neuron_spec(neuron, self.data_dir), args=args, restart="transient")
            try:
                self.pids[neuron] = self.supervisor.start_child(spec)["pid"]
                started.append(neuron)
            except ControlError as exc:
                failures.append((neuron, exc.error))
        copies = batch_call(self.ctx, {n: self.twin_control(n) for n in started}, "get_params")
        for neuron, params in copies.items():
            if isinstance(params, ControlError):
                failures.append((neuron, params.error))
                del self.pids[neuron]
                continue
            self.copies[neuron] = (array_from_wire(params["weights"]), array_from_wire(params["bias"]))
            self.working[neuron] = neurons[neuron]
        return failures

    def train(self, neurons: list[str]) -> None:
        """Their turn: these twins learn from the dreams (the others still pass gradients through); a twin
        that does not answer stays frozen and gives back nothing."""
        batch_call(self.ctx, {n: self.twin_control(n) for n in neurons if n in self.copies}, "set_params", frozen=False)

    def give_back(self, neurons: list[str]) -> list[dict]:
        """End of their turn: each working neuron adds what its twin learnt; the twin is frozen again.
        One record per neuron: how far its weights moved in the pool, or why it could not take them --
        ``restarted``: its twin came back as a fresh copy after the worker last looked (``own_learning``,
        from its status read after its weights)."""
        twins = {n: self.twin_control(n) for n in neurons if n in self.copies}
        answers = batch_call(self.ctx, twins, "set_params", frozen=True)
        answers.update(batch_call(self.ctx, self._answering(twins, answers), "get_params"))
        after = batch_call(self.ctx, self._answering(twins, answers), "status")
        for neuron, status in after.items():
            answers[neuron] = status if isinstance(status, ControlError) else (
                answers[neuron] if own_learning(self.pids[neuron], status) else ControlError("restarted", neuron))
        moves = {n: learnt(answers[n], self.copies[n]) for n in twins if not isinstance(answers[n], ControlError)}
        answers.update(batch_call(self.ctx, {n: self.working[n] for n in moves}, "set_params", add=True, each={
            n: {"weights": array_to_wire(weights), "bias": array_to_wire(bias)} for n, (weights, bias) in moves.items()}))
        records = []
        for neuron in twins:  # reshaped (wrong_shape), dead or restarted meanwhile: the online weights stay
            if isinstance(answers[neuron], ControlError):
                records.append({"id": neuron, "error": answers[neuron].error})
            else:
                weights, bias = moves[neuron]
                records.append({"id": neuron, "moved": float(np.sqrt((weights ** 2).sum() + (bias ** 2).sum()))})
        return records

    def reconcile(self, training: set[str]) -> list[dict]:
        """Set up again the twins restarted since the worker last looked (``restarted_twins``): each
        frozen unless it is one of ``training`` (the turn's), and measured from the weights it came back
        with unless it kept its learning (``twin_baseline``). One record per twin set up: ``id``, ``pid``,
        ``restored`` (it kept its learning up to its last flush; else all it had learnt is lost),
        ``frozen``. A twin that does not answer, or restarts again meanwhile, is looked at again next time."""
        try:
            restarted = restarted_twins(self.pids, self.supervisor.which_children())
        except ControlError:
            return []
        twins = {n: self.twin_control(n) for n in restarted}
        statuses = batch_call(self.ctx, twins, "status")
        params = batch_call(self.ctx, self._answering(twins, statuses), "get_params")
        answers = batch_call(self.ctx, self._answering(twins, params), "set_params",
                             each={n: {"frozen": n not in training} for n in twins})
        records = []
        for neuron, answer in answers.items():  # one process answered all three: the same pid throughout
            if isinstance(answer, ControlError) or answer["pid"] != statuses[neuron]["pid"]:
                continue
            came_back = (array_from_wire(params[neuron]["weights"]), array_from_wire(params[neuron]["bias"]))
            self.copies[neuron] = twin_baseline(self.copies[neuron], came_back, answer["started"])
            self.pids[neuron] = answer["pid"]
            records.append({"id": neuron, "pid": answer["pid"], "restored": kept_its_learning(answer["started"]),
                            "frozen": answer["frozen"]})
        return records

    @staticmethod
    def _answering(endpoints: dict[str, str], answers: dict[str, object]) -> dict[str, str]:
        """The endpoints whose last answer was not an error."""
        return {n: e for n, e in endpoints.items() if n in answers and not isinstance(answers[n], ControlError)}

    def dream(self, rows: np.ndarray, targets: list) -> tuple[int, list[str]]:
        """One packet of dreams into the first layer's twins, never waiting: its packet id, and the twins
        whose queue is full (gone or stalled), skipped (``FirstLayerFeed.send``)."""
        return self.feed.send(rows, targets, learn=True)

    @property
    def first_twins(self) -> int:
        """How many twins the dreams enter by (the first layer's)."""
        return len(self.feed.starts)

    def returned(self) -> list[int]:
        """The ids of the packets that came out of the shadow network since the last call (their losses
        are kept)."""
        packets = []
        while True:
            try:
                frame = self.outputs.recv(zmq.NOBLOCK)
            except zmq.Again:
                return packets
            try:
                message = decode_frame(frame, kinds=(OUTPUT_FRAME,))
            except FrameError:
                continue
            packets += [packet for packet in message[2] if type(packet) is int]
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
        if self.feed is not None:
            self.feed.close()
            self.outputs.close(linger=0)
            self.feed = self.outputs = None
        self.copies.clear()
        self.working.clear()
        self.pids.clear()
        shutil.rmtree(self.store_dir, ignore_errors=True)

    def close(self) -> None:
        self.clear()
        self.supervisor.close()
