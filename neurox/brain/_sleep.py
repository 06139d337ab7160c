"""Maintenance ("sleep") of a network, decided purely: the schedule, whose turn it is, which dreams are
still in flight, and what a twin restarted in the pool still holds of its learning.

A network with a ``[maintenance]`` table alternates between working (``awake_s``, default 40 min)
and maintenance (``maintenance_s``, default 20 min); a signal or a control request starts a
maintenance phase at once. During maintenance the neurons go in turns, one group per turn (a layer's
neurons), into the ``maintenance`` state and are fine-tuned there on dreams: experience replayed by
the hippocampus and the configured educational dataset; then they go back to ``awake`` and the next
group's turn starts. The other neurons keep answering throughout.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Iterable, Literal

import msgspec

from ..runtime import typed


class SleepConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The ``[maintenance]`` table of a topology (every key optional), and its schema."""

    awake_s: Annotated[float, msgspec.Meta(gt=0)] = 2400.0
    maintenance_s: Annotated[float, msgspec.Meta(gt=0)] = 1200.0
    capacity: Annotated[int, msgspec.Meta(ge=1)] = 5000
    """Experiences the hippocampus keeps: as many of each class as of any other (class-balanced reservoir
    sampling), a uniform sample of everything learnt for targets that are not classes."""
    replay_per_s: Annotated[float, msgspec.Meta(gt=0)] = 200.0
    """Samples dreamt per second during a turn, replayed experience and education together."""
    education: str | None = None
    """A dataset file (``.csv`` or ``.npz``, as ``neurox run --data``) mixed into the dreams, half and half
    with replay (all of them while the hippocampus is still empty)."""
    turns: Literal["layer", "network"] = "network"
    """``network``: one turn in which every layer learns from the dreams at once (end-to-end); ``layer``:
    the layers take turns, each fine-tuned against the rest held fixed (block-coordinate descent). The
    whole network at once recovers more of what was forgotten (docs/brain.md)."""
    dream_queue: Annotated[int, msgspec.Meta(ge=1)] = 10000
    """Dreams a first-layer twin may have waiting before the next skip it (its feed socket's high-water mark):
    what a stalled twin would read late, when the joins above have long gone on without it, and what the
    worker holds for it meanwhile (a packet of dreams is ``8 * input_width * 4`` bytes and more)."""
    awake_replay: Annotated[int, msgspec.Meta(ge=0)] = 0
    """Awake replay: stored samples the hippocampus gives MessengerIn to learn beside each new sample,
    in the same packet, while the network learns a stream (0: none). Off by default: it doubles the rows
    of every packet learnt from, for what pays only when the stream leaves old classes behind."""
    host: str | None = None
    """In a network spread over hosts: the host the maintenance worker and its pool run on -- the
    maintenance host group -- (default: the front host, see ``_placement``)."""

    @classmethod
    def from_table(cls, table: dict) -> "SleepConfig":
        """The table decoded (ConfigError, a ValueError, naming ``maintenance.KEY`` if it does not fit)."""
        return typed(cls, table, at="maintenance")


@dataclass(frozen=True)
class Phase:
    """Where the rotation is: ``awake``, or ``maintenance`` with the group whose turn it is."""

    name: str
    turn: int = 0
    """Index of the group in maintenance (maintenance only)."""
    ends_at: float = 0.0
    """Monotonic time at which this phase or turn ends."""


def turn_groups(layers: list[tuple[str, list[str]]], turns: str) -> list[list[tuple[str, str]]]:
    """The groups that take turns in maintenance, as (layer, neuron) pairs: one per layer in network
    order, or (``network``) one of every neuron."""
    groups = [[(name, n) for n in neurons] for name, neurons in layers]
    return groups if turns == "layer" else [[pair for group in groups for pair in group]]


def start(now: float, config: SleepConfig) -> Phase:
    return Phase("awake", ends_at=now + config.awake_s)


def advance(phase: Phase, now: float, groups: int, config: SleepConfig, asked: bool = False) -> Phase:
    """The phase after ``phase`` at time ``now``: unchanged until it ends (or maintenance is ``asked``
    for while awake); the groups' turns split ``maintenance_s`` evenly; after the last, awake again."""
    turn_s = config.maintenance_s / max(groups, 1)
    if phase.name == "awake":
        if asked or now >= phase.ends_at:
            return Phase("maintenance", 0, now + turn_s)
        return phase
    if now < phase.ends_at:
        return phase
    if phase.turn + 1 < groups:
        return Phase("maintenance", phase.turn + 1, now + turn_s)
    return Phase("awake", ends_at=now + config.awake_s)


def balanced_victim(counts: dict, label, seen_of_label: int, capacity: int, draw: float):
    """Where an experience of class ``label`` goes in a class-balanced reservoir, after Chrysakis &
    Moens 2020 (CBRS): ``"add"`` (a free place), the class one of whose experiences it replaces, or
    None (nowhere). ``counts`` are the experiences stored per class, ``seen_of_label`` how many of this
    class were shown before it, ``draw`` uniform in [0, 1).

    While not full, it is kept. Once full, a class that is not among the largest takes the place of an
    experience of a largest class, so every class seen ends with an equal share however long each
    lasted and whenever it came (a uniform reservoir over five tasks in order lets a short early one
    dwindle); a class among the largest replaces one of its own with the reservoir's probability
    (stored / seen of that class), so what it keeps stays a uniform sample of it. One class only:
    plain reservoir sampling."""
    if sum(counts.values()) < capacity:
        return "add"
    largest = max(counts.values())
    own = counts.get(label, 0)
    if own < largest:
        return max(counts, key=lambda c: (counts[c], str(c)))
    return label if draw * (seen_of_label + 1) < own else None


DREAM_MARGIN_S = 1.0
"""What a dream's way through the pool may take beside its joins' deadlines: the twins' compute and
queues, a twin's restart, a loaded machine."""
LOST_REPORT_EVERY_S = 1.0


def dream_deadline_s(join_timeouts_ms: list[float], margin_s: float = DREAM_MARGIN_S) -> float:
    """How long a dream may take to come out of the pool's end before it counts as lost, from the join
    deadlines (``join_timeout_ms``) of the layers in network order. Every layer after the first (the first
    has one input: nothing to wait for) may hold a packet up to its deadline for a part that never comes --
    a twin killed, restarting or stalled; its join then goes on without it -- and the next layer's join
    starts only once a part reaches it, so the deadlines add up along the network; ``margin_s`` covers the
    rest. Shorter, a dream only slow would count as lost (and come out late); longer, a lost one holds
    its place of the in-flight bound for longer."""
    return sum(join_timeouts_ms[1:]) / 1000.0 + margin_s


class DreamsInFlight:
    """The dreams sent into the pool that have not come out of its end (packet id -> time sent), in the
    order sent. A dream lost in the pool -- a twin killed or restarted while it held it, a frame refused
    -- never comes out: one still in flight ``deadline_s`` after it was sent counts as lost and leaves,
    or each loss would hold a place of the worker's in-flight bound for the rest of the maintenance. One
    that comes out after that is matched by nothing (``late``): it never leaves twice."""

    def __init__(self, deadline_s: float):
        self.deadline_s = deadline_s
        self.sent: dict[int, float] = {}
        self.unreported = 0
        """Dreams counted lost since the last report."""
        self.next_report = 0.0

    def __len__(self) -> int:
        return len(self.sent)

    def send(self, packet: int, now: float) -> None:
        self.sent[packet] = now

    def came_out(self, packets: Iterable[int]) -> tuple[int, int]:
        """The packets that came out of the pool's end: (how many were in flight, how many were not --
        counted lost before, or never sent in this maintenance)."""
        back = late = 0
        for packet in packets:
            if self.sent.pop(packet, None) is None:
                late += 1
            else:
                back += 1
        return back, late

    def overdue(self, now: float) -> list[int]:
        """The dreams sent ``deadline_s`` ago or more, counted lost: they leave."""
        lost = []
        for packet, sent_at in self.sent.items():
            if now - sent_at < self.deadline_s:
                break
            lost.append(packet)
        for packet in lost:
            del self.sent[packet]
        self.unreported += len(lost)
        return lost

    def report(self, now: float, final: bool = False, every_s: float = LOST_REPORT_EVERY_S) -> int:
        """How many dreams counted lost to report now: those since the last report, at most once ``every_s``
        unless it is the ``final`` report (the maintenance ends); 0: nothing to report now."""
        if not self.unreported or (now < self.next_report and not final):
            return 0
        reported, self.unreported, self.next_report = self.unreported, 0, now + every_s
        return reported


def restarted_twins(known: dict[str, int], children: list[dict]) -> dict[str, int]:
    """The twins the pool supervisor runs under a pid other than the one the worker knows them by
    (``which_children``): ``{id: pid}``. A twin not running now (restarting, or given up) is not among them
    until it runs again; a child the worker does not know is not its twin."""
    return {child["id"]: child["pid"] for child in children
            if child["id"] in known and type(child["pid"]) is int and child["pid"] != known[child["id"]]}


def kept_its_learning(started: dict) -> bool:
    """Whether a restarted twin came back holding what it had learnt (its status's ``started``): restored
    from its own DB, its weights are the copy it started from plus what it learnt up to its last flush;
    else it is a fresh copy of the working neuron (policy ``replace``, or nothing flushed yet): what it
    had learnt is lost, and the working neuron's own learning since the twin's copy is in its weights."""
    return "restored" in started


def twin_baseline(copy: tuple, came_back: tuple, started: dict) -> tuple:
    """What a restarted twin's learning is measured from from now on: still the copy it started from if
    it kept its learning (``kept_its_learning``), else the weights it came back with -- measured from the
    old copy, the working neuron's online learning since then would be given back to it a second time."""
    return copy if kept_its_learning(started) else came_back


def own_learning(known_pid: int, status: dict) -> bool:
    """Whether a twin's weights minus its copy are its own learning, given its ``status`` read after its
    weights: the twin the worker knows (same pid), or one restarted since that kept its learning. A twin
    restarted since the worker last looked that came back as a copy gives back nothing."""
    return status["pid"] == known_pid or kept_its_learning(status["started"])
