"""Maintenance and dreaming: the hippocampus that keeps experience, and the sleep it replays it in.

One worker under the network's root when the topology has a ``[maintenance]`` table. It is

- the **hippocampus**: every origin that sends a sample to learn from (the training stream,
  MessengerIn with a target) also pushes it here; a reservoir keeps a uniform sample of all of them,
  ``capacity`` experiences, so old tasks stay represented as new ones arrive;
- the **sleep schedule**: ``awake_s`` of work, then ``maintenance_s`` of maintenance (the pure
  rotation in ``neurox/brain/_sleep.py``), or maintenance at once on SIGUSR1 or ``sleep_now``;
- **awake replay** (``awake_replay`` > 0): every ``RECALL_EVERY_S`` it pushes a sample of what it keeps
  of the classes the stream has left behind (``old_slots``; ``RECALL_SHARE`` rows at most) to
  MessengerIn (``recall_endpoint``), which learns ``awake_replay`` of them beside each new sample in the stream's own packets (``neurox/ext/_recall.py``);
- the **dreams**: during maintenance the network's neurons are copied into the maintenance pool
  (``_pool``: twins in a supervisor subtree and data plane of their own), the layers take turns there
  learning from replayed experience mixed half and half with the ``education`` dataset, at
  ``replay_per_s``, and each layer takes back what its twins learnt at the end of its turn, while the
  working network keeps answering its clients, untouched. At most ``DREAMS_IN_FLIGHT`` packets of dreams
  are in the pool at a time; one that has not come out of its end by its deadline counts as lost
  (``DreamsInFlight``) and makes room for the next. Every ``RECONCILE_EVERY_S`` it sets up again the
  twins restarted meanwhile (``Pool.reconcile``): the turn's frozen state, and what their learning is
  measured from.
"""
from __future__ import annotations

import os
import signal
import time

import msgspec
import numpy as np
import zmq

from ..neuron import Part, Topology, maintenance_host, neuron_control, topology_path
from ..neuron import experiences_endpoint
from ..runtime import BadFrames, ControlError, FrameError, Process, call, ipc_endpoint, make_socket, pack, unpack_map
from ..supervisor_tree import ChildSpec, control_endpoint
from ._pool import POOL_ID, Pool, pool_spec
from ._sleep import (DreamsInFlight, Phase, SleepConfig, advance as advance_sleep, balanced_victim, dream_deadline_s,
                     start as start_sleep, turn_groups)

DREAM_BATCH = 8
DREAMS_IN_FLIGHT = 4
TICK_S = 0.05
LESSON_TIMEOUT_S = 30.0
"""MessengerIn reads and scales the education file when maintenance begins: a large CSV takes a while."""
EXPERIENCES_DRAIN = 256
"""Experiences kept per wake-up at most before the control socket gets its turn."""
RECALL_EVERY_S = 1.0
RECALL_SHARE = 512
"""Stored samples pushed to MessengerIn at most each time (all of them if it keeps fewer)."""
RECONCILE_EVERY_S = 1.0
"""How often the pool's twins are checked for restarts during maintenance (one ``which_children``): a
restarted twin stays frozen until then."""


def recall_endpoint(run_dir: str) -> str:
    """Where MessengerIn takes the hippocampus's memory for awake replay (it binds a PULL; the maintenance
    worker PUSHes to it)."""
    return ipc_endpoint(run_dir, "hippocampus.recall")


def maintenance_children(topology: Topology, data_dir: str, host: str | None = None) -> list[ChildSpec | dict]:
    """The maintenance pool and its worker as children of the network's root, if the topology asks for
    them (the worker after the pool, so it stops first and takes its twins down itself). On a network
    spread over hosts, only on the maintenance host."""
    if topology.maintenance is None or (host is not None and host != maintenance_host(topology)):
        return []
    return [pool_spec(topology), Maintenance.child_spec("maintenance", {"data_dir": data_dir})]


def dream_deadline(topology: Topology) -> float:
    """How long a dream may take through the pool's twins, from their layers' join deadlines (``dream_deadline_s``)."""
    return dream_deadline_s([float(topology.settings_of(layer.neurons[0])["join_timeout_ms"]) for layer in topology.layers])


def check_sleep(topology: Topology) -> None:
    if topology.maintenance is not None:
        SleepConfig.from_table(topology.maintenance)


SLEEP = Part("sleep", sections=("maintenance",), schemas={"maintenance": SleepConfig}, check=check_sleep,
             requires=("messengers",),
             children=lambda topology, data_dir, host, options: maintenance_children(topology, data_dir, host),
             reserves=("maintenance", POOL_ID),
             paths=lambda t: [f"root/{POOL_ID}/{n}" for n in t.neurons()] if t.maintenance is not None else [])
"""The hippocampus, the sleep schedule and the pool of twins, if the topology has ``[maintenance]``; it
asks MessengerIn how inputs are scaled, so it starts after the messengers."""


class Hippocampus:
    """A class-balanced reservoir of (input row, target) experiences (``balanced_victim``): each class
    seen keeps an equal share, a uniform sample of that class; targets that are not classes (a list of
    values) count as one class, so they are a uniform sample of everything shown."""

    def __init__(self, capacity: int, width: int, rng: np.random.Generator):
        self.rows = np.zeros((capacity, width), dtype=np.float32)
        self.raw = np.full((capacity, width), np.nan, dtype=np.float32)
        """Each experience as it came, before MessengerIn scaled it (NaN where its origin did not say)."""
        self.targets: list = []
        self.slots: dict = {}
        """class -> the places its experiences are kept in."""
        self.seen = 0
        self.seen_of: dict = {}
        self.last_seen: dict = {}
        """class -> ``seen`` when it last came (awake replay leaves the classes of the moment out)."""
        self.rng = rng

    @property
    def size(self) -> int:
        return len(self.targets)

    def keep(self, rows: np.ndarray, targets: list, raw: np.ndarray | None = None) -> None:
        raws = raw if raw is not None else np.full_like(rows, np.nan)
        for row, target, as_came in zip(rows, targets, raws):
            label = target if isinstance(target, (int, str)) else ()  # never None: None means "nowhere"
            seen_of_label = self.seen_of.get(label, 0)
            counts = {c: len(places) for c, places in self.slots.items()}
            victim = balanced_victim(counts, label, seen_of_label, len(self.rows), float(self.rng.random()))
            if victim == "add":
                slot = len(self.targets)
                self.targets.append(target)
            elif victim is not None:
                places = self.slots[victim]
                slot = places.pop(int(self.rng.integers(len(places))))
                self.targets[slot] = target
            if victim is not None:
                self.rows[slot] = row
                self.raw[slot] = as_came
                self.slots.setdefault(label, []).append(slot)
            self.seen_of[label] = seen_of_label + 1
            self.seen += 1
            self.last_seen[label] = self.seen

    def classes(self) -> dict:
        """Experiences kept per class (``status``)."""
        return {str(c): len(places) for c, places in self.slots.items() if places}

    def recall(self, n: int) -> tuple[np.ndarray, list]:
        picks = self.rng.integers(0, self.size, n)
        return self.rows[picks], [self.targets[i] for i in picks]

    def share(self, most: int) -> tuple[np.ndarray, np.ndarray, list]:
        """What it keeps of the classes the stream has left behind (``old_slots``; rows as learnt, rows as
        they came, targets), or ``most`` of it drawn without replacement: the memory awake replay draws from."""
        slots = old_slots(self.slots, self.last_seen, self.seen, len(self.rows))
        picks = slots if len(slots) <= most else np.sort(self.rng.choice(slots, most, replace=False))
        return self.rows[picks], self.raw[picks], [self.targets[i] for i in picks]


def old_slots(slots: dict, last_seen: dict, seen: int, recent: int) -> np.ndarray:
    """The places of the experiences of every class not shown among the last ``recent`` (the memory's
    capacity), in order; all places if every class kept was. What the stream shows now it teaches
    anyway: a recalled row of those classes would only add to the newest classes' share of the
    updates (class-incremental learning's recency bias) and take a place from a class that
    nothing else recalls. On a stream where every class keeps coming, every class is recent: all."""
    old = [s for label, places in slots.items() if seen - last_seen.get(label, 0) >= recent for s in places]
    chosen = old or [s for places in slots.values() for s in places]
    return np.sort(np.asarray(chosen, dtype=np.int64))


class Maintenance(Process):
    """A callback module of the process behaviour: experiences in (``handle_frame``), the sleep schedule
    and the dreams in ``handle_timer``; a polite stop gives the turn's learning back first (``terminate``)."""

    target = "neurox.brain._maintenance:run_maintenance"

    def init(self, args: dict, env: dict) -> dict:
        self.data_dir = args["data_dir"]
        self.run_dir = env["run_dir"]
        topology = Topology.load(topology_path(self.data_dir))
        self.config = SleepConfig.from_table(topology.maintenance or {})
        self.rng = np.random.default_rng(0)
        self.hippocampus = Hippocampus(self.config.capacity, topology.input_width, self.rng)
        self.lesson: tuple[np.ndarray, list] | None = None
        """The education's rows and targets in the network's units, as of the start of this maintenance."""
        self.experiences = make_socket(self.ctx, zmq.PULL, bind=experiences_endpoint(self.run_dir))
        self.watch(self.experiences, drain=EXPERIENCES_DRAIN)
        self.pool = Pool(self.ctx, self.run_dir, self.data_dir, self.config.dream_queue)
        self.pool.clear()  # twins a crashed predecessor left behind
        self.bad = BadFrames("maintenance")
        self.phase = start_sleep(time.monotonic(), self.config)
        self.groups: list[list[tuple[str, str]]] = []
        """The layers' neurons as they were when maintenance began: one group per turn."""
        self.group: list[tuple[str, str]] = []
        self.asked = False
        self.dreams = DreamsInFlight(dream_deadline(topology))
        self.counters = {"dreamt": 0, "replayed": 0, "educated": 0, "turns": 0, "cycles": 0, "given_back": 0,
                         "shared": 0, "dreams_refused": 0, "dreams_lost": 0, "dreams_late": 0,
                         "twins_restarted": 0, "twin_learning_lost": 0}
        self.refusing: set[str] = set()
        """The first twins whose full queue refused a dream in this maintenance (each reported once)."""
        self.next_dream = self.next_reconcile = 0.0
        self.recall = make_socket(self.ctx, zmq.PUSH, connect=recall_endpoint(self.run_dir), hwm=2) if (
            self.config.awake_replay) else None
        self.next_recall = 0.0
        signal.signal(signal.SIGUSR1, self._on_sleep_signal)
        self.handlers.update({"status": lambda r: self.status(), "sleep_now": lambda r: self._ask(),
                           "wake": lambda r: self._wake()})
        return {}

    def _on_sleep_signal(self, *_):
        self.asked = True

    def _ask(self) -> dict:
        self.asked = True
        return {"phase": self.phase.name}

    def _wake(self) -> dict:
        if self.phase.name == "maintenance":  # the rest of the turns are skipped: awake from now
            self._end_maintenance()
            self.phase = start_sleep(time.monotonic(), self.config)
            self.emit("maintenance_ended", cycles=self.counters["cycles"], early=True)
        return {"phase": self.phase.name}

    def status(self) -> dict:
        return {"pid": os.getpid(), "phase": self.phase.name, "turn": self.phase.turn,
                "in_maintenance": [n for _, n in self.group], "in_pool": sorted(self.pool.copies),
                "dream_loss": float(np.mean(self.pool.losses)) if self.pool.losses else None,
                "remaining_s": max(0.0, self.phase.ends_at - time.monotonic()), "dreams_in_flight": len(self.dreams),
                "stored": self.hippocampus.size, "seen": self.hippocampus.seen,
                "stored_per_class": self.hippocampus.classes(), "config": msgspec.structs.asdict(self.config),
                "bad_frames": self.bad.total, **self.counters}

    # -- the loop ------------------------------------------------------------------------------
    def handle_frame(self, source, frames: list[bytes]) -> None:
        for frame in frames:
            try:
                message = unpack_map(frame)
                rows = np.frombuffer(message["rows"], "<f4").reshape(message["shape"])
                raw = np.frombuffer(message["raw"], "<f4").reshape(message["shape"]) if "raw" in message else None
                targets = list(message["targets"])
                if rows.ndim != 2 or rows.shape[1] != self.hippocampus.rows.shape[1] or len(targets) != len(rows):
                    raise FrameError("wrong_shape", f"rows {rows.shape} with {len(targets)} targets")
            except FrameError as exc:
                self.bad.note(exc.kind, exc.detail)
            except (KeyError, TypeError, ValueError) as exc:
                self.bad.note("wrong_type", str(exc))
            else:
                self.hippocampus.keep(rows, targets, raw)

    def handle_timer(self, now: float) -> float:
        """The schedule, the dreams and awake replay; awake again at the next dream's time when one may go
        (so dreams go at ``replay_per_s``: every ``TICK_S`` they could not pass 20 packets a second),
        else after ``TICK_S``, to see what came out of the pool."""
        if self.pool.open:
            self._count_dreams(now)
            if now >= self.next_reconcile:
                self._reconcile()
                self.next_reconcile = now + RECONCILE_EVERY_S
        self._tick(now)
        if self.recall is not None and now >= self.next_recall:
            self._share()
            self.next_recall = now + RECALL_EVERY_S
        tick = time.monotonic() + TICK_S
        return min(tick, self.next_dream) if self.pool.open and len(self.dreams) < DREAMS_IN_FLIGHT else tick

    def _count_dreams(self, now: float) -> None:
        """The dreams that came out of the pool leave those in flight; those overdue are counted lost
        (reported at most once a second)."""
        self.counters["dreams_late"] += self.dreams.came_out(self.pool.returned())[1]
        self.counters["dreams_lost"] += len(self.dreams.overdue(now))
        self._report_lost(now)

    def _report_lost(self, now: float, final: bool = False) -> None:
        if new := self.dreams.report(now, final):
            self.emit("maintenance_dream_lost", new=new, lost=self.counters["dreams_lost"],
                      deadline_s=self.dreams.deadline_s)

    def _share(self) -> None:
        """Push the memory to MessengerIn for awake replay (dropped if it is not taking: the next one follows)."""
        if not self.hippocampus.size:
            return
        rows, raw, targets = self.hippocampus.share(RECALL_SHARE)
        try:
            self.recall.send(pack({"rows": np.ascontiguousarray(rows, "<f4").tobytes(), "shape": list(rows.shape),
                                   "raw": np.ascontiguousarray(raw, "<f4").tobytes(), "targets": targets,
                                   "per_row": self.config.awake_replay}), zmq.NOBLOCK)
            self.counters["shared"] += 1
        except zmq.Again:
            pass

    def terminate(self, reason) -> None:
        """A polite stop gives the turn's learning back first, then stops the twins (after a crash the next
        worker's start clears them)."""
        if reason.kind == "crash":
            return
        if self.phase.name == "maintenance":
            self._end_maintenance()
        self.pool.close()

    def _tick(self, now: float) -> None:
        if self.asked or now >= self.phase.ends_at:  # only then can the phase change
            groups = self.groups if self.phase.name == "maintenance" else self._groups()
            phase = advance_sleep(self.phase, now, len(groups), self.config, self.asked)
            self.asked = False
            if phase != self.phase:
                self._change(self.phase, phase, groups)
                self.phase = phase
        if self.pool.open and now >= self.next_dream and len(self.dreams) < DREAMS_IN_FLIGHT:
            self._dream(now)
            self.next_dream = now + DREAM_BATCH / self.config.replay_per_s

    def _groups(self) -> list[list[tuple[str, str]]]:
        """The groups that take turns (``turn_groups``): (layer, neuron) pairs."""
        topology = Topology.load(topology_path(self.data_dir), validate=False)
        return turn_groups([(layer.name, list(layer.neurons)) for layer in topology.layers], self.config.turns)

    def _change(self, old: Phase, new: Phase, groups: list) -> None:
        self._give_back()
        if new.name == "maintenance":
            if old.name == "awake":
                self._begin_maintenance(groups)
            self.group = groups[new.turn] if new.turn < len(groups) else []
            self._move(self.group, "maintenance")
            self.pool.train([n for _, n in self.group])
            self.counters["turns"] += 1
            self.emit("maintenance_turn", turn=new.turn, neurons=[n for _, n in self.group])
        else:
            self._end_maintenance()
            self.counters["cycles"] += 1
            self.emit("maintenance_ended", cycles=self.counters["cycles"], early=False)

    def _begin_maintenance(self, groups: list) -> None:
        """Copy every neuron into the pool, frozen; the groups then take turns learning there."""
        self.groups = groups
        topology = Topology.load(topology_path(self.data_dir), validate=False)
        self.dreams = DreamsInFlight(dream_deadline(topology))
        self.lesson = self._lesson()
        failures = self.pool.start(topology, {n: neuron_control(self.run_dir, topology, n)
                                              for group in groups for _, n in group})
        for neuron, error in failures:
            self.emit("maintenance_move_failed", id=neuron, state="maintenance", error=error)
        self.emit("maintenance_started", stored=self.hippocampus.size, pool=sorted(self.pool.copies))

    def _lesson(self) -> tuple[np.ndarray, list] | None:
        """The education in the network's units, scaled as MessengerIn scales what it learns now: it
        reads the file and scales it (its ``education`` op), so the brain needs neither the dataset
        reader nor the scaler of the layer above. None (dreams replay experience alone, and an event
        says why) if there is none or MessengerIn cannot give it."""
        if self.config.education is None:
            return None
        try:
            lesson = call(self.ctx, control_endpoint(self.run_dir, "root/messenger_in"), "education", LESSON_TIMEOUT_S,
                          path=self.config.education)
            rows = np.frombuffer(lesson["rows"], "<f4").reshape(lesson["shape"])
        except ControlError as exc:
            self.emit("maintenance_education_failed", error=exc.error, detail=str(exc))
            return None
        return rows, list(lesson["targets"])

    def _reconcile(self, training: list[tuple[str, str]] | None = None) -> None:
        """Set up again the twins restarted since the last look (``Pool.reconcile``) for this turn (or
        ``training``'s); counted and reported."""
        records = self.pool.reconcile({n for _, n in (self.group if training is None else training)})
        if records:
            self.counters["twins_restarted"] += len(records)
            self.counters["twin_learning_lost"] += sum(1 for r in records if not r["restored"])
            self.emit("maintenance_twins_restarted", twins=records, restarted=self.counters["twins_restarted"])

    def _give_back(self) -> None:
        """The group whose turn ends takes back what its twins learnt (those restarted set up first), and
        is awake again."""
        if self.group:
            self._reconcile([])
            records = self.pool.give_back([n for _, n in self.group])
            self.counters["given_back"] += sum(1 for r in records if "moved" in r)
            self.emit("maintenance_returned", neurons=records)
        self._move(self.group, "awake")
        self.group = []

    def _end_maintenance(self) -> None:
        self._give_back()
        self.pool.clear()
        self.groups = []
        self._report_lost(time.monotonic(), final=True)
        self.refusing.clear()

    def _move(self, group: list[tuple[str, str]], state: str) -> None:
        if not group:
            return
        topology = Topology.load(topology_path(self.data_dir), validate=False)
        for _, neuron in group:
            try:
                call(self.ctx, neuron_control(self.run_dir, topology, neuron), "set_state", 2.0, state=state)
            except ControlError as exc:  # dead meanwhile: its replacement follows its region's state
                self.emit("maintenance_move_failed", id=neuron, state=state, error=exc.error)

    def _dream(self, now: float) -> None:
        """One packet of dreams: replayed experience, and education when there is some. A packet no first
        twin took (all full: ``Pool.dream``) is not counted, and none is in flight for it."""
        replay_n = DREAM_BATCH // 2 if self.lesson is not None else DREAM_BATCH
        rows, targets, counts = [], [], {}
        if self.hippocampus.size:
            replayed, recalled = self.hippocampus.recall(replay_n)
            rows.append(replayed)
            targets += recalled
            counts["replayed"] = replay_n
        if self.lesson is not None:
            lesson_rows, lesson_targets = self.lesson
            picks = self.rng.integers(0, len(lesson_targets), DREAM_BATCH - replay_n)
            rows.append(lesson_rows[picks])
            targets += [lesson_targets[i] for i in picks]
            counts["educated"] = len(picks)
        if not rows:
            return
        packet, refused = self.pool.dream(np.concatenate(rows), targets)
        self.counters["dreams_refused"] += len(refused)
        if new := sorted(set(refused) - self.refusing):
            self.refusing.update(new)
            self.emit("maintenance_dream_refused", ids=new, refused=self.counters["dreams_refused"])
        if len(refused) < self.pool.first_twins:  # taken by some: it comes out of the pool's end
            self.dreams.send(packet, now)
            for name, count in {**counts, "dreamt": len(targets)}.items():
                self.counters[name] += count


run_maintenance = Maintenance.main
"""Process entry point (``Maintenance.target``)."""
