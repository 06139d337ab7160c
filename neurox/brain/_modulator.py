"""A region's neuromodulator: one supervised process per region, in the spirit of NEST's volume transmitter.

Neurons PUSH activity reports, and anyone (an agent, an environment) PUSHes rewards, to the region's
inbox; the modulator advances the five transmitter levels exactly (``_neurotransmitters``), turns each
reward into a reward prediction error and a dopamine burst, and PUBlishes ``[b"levels", map]`` every
``publish_interval_s`` -- and at once after rewards, so dopamine reaches the synapses while their
eligibility tags are fresh. The region's state (awake, meditative, maintenance) travels with the
levels; ``set_state`` on the modulator's control socket changes it for every neuron of the region.
The state and the reward expectations are kept in ``DATA_DIR/modulators/<region>`` (written when the
state changes and on a polite stop), so a replaced or restarted modulator goes on from them; levels
start again at rest, where they relax within seconds anyway. Frames and ops are in docs/protocol.md.

The neuron's side (its ``ModulatorLink``: a SUB to the levels, a PUSH for its reports) is in ``neurox.neuron``.
"""
from __future__ import annotations

import math
import os
import sys
import time
from dataclasses import asdict, fields

import zmq

from ..neuron import (DEFAULT_STATE, LEVELS_TOPIC, TRANSMITTERS, Part, Topology, check_state, front_only,
                      levels_endpoint, reports_endpoint, topology_path)
from ..runtime import BadFrames, FrameError, Process, Reply, make_socket, pack, typed_ops, unpack_map
from ._modulator_ops import MODULATOR_ARGS, Release, Reward, SetState
from ._neurotransmitters import (ChemistryError, ChemistryTable, Expectations, advance, drives, expect, phasic,
                                 region_chemistry)

MODULATOR_TARGET = "neurox.brain._modulator:run_modulator"
REPORT_MAX_BYTES = 4096
REPORTS_DRAIN = 1000
"""Reports taken per wake-up at most before the control socket and the levels get their turn."""
STALE_REPORTS = 3
"""A neuron's activity counts until it has missed this many report periods (it died or was removed)."""


def modulator_id(region: str) -> str:
    """The modulator's id in the supervision tree (a child of the root)."""
    return f"modulator.{region}"


def modulator_children(topology: Topology, data_dir: str) -> list[dict]:
    """One modulator per region that needs one (``Topology.modulated_regions``), as root children."""
    return [Modulator.child_spec(modulator_id(region), {"data_dir": data_dir, "region": region})
            for region in topology.modulated_regions()]


def check_chemistry(topology: Topology) -> None:
    """The ``[neurotransmitters]`` table, for every region that runs a modulator (ValueError naming the key)."""
    if not isinstance(topology.neurotransmitters, (dict, type(None))):
        raise ChemistryError("[neurotransmitters] must be a table")
    for region in topology.modulated_regions():
        if not region or "/" in region:
            raise ChemistryError(f"region {region!r} (a layer's region, or the network's name) needs a "
                                 f"neuromodulator, whose name must be non-empty and without '/'")
        region_chemistry(topology.neurotransmitters or {}, region)


CHEMISTRY = Part("chemistry", sections=("neurotransmitters",), schemas={"neurotransmitters": ChemistryTable},
                 check=check_chemistry,
                 children=front_only(modulator_children),
                 paths=lambda topology: [f"root/{modulator_id(r)}" for r in topology.modulated_regions()])
"""A neuromodulator per region that needs one (docs/brain.md)."""


def kept_path(data_dir: str, region: str) -> str:
    """Where a region's modulator keeps its state and reward expectations between runs."""
    return os.path.join(data_dir, "modulators", region)


EXPECTATION_KEYS = tuple(f.name for f in fields(Expectations))


def read_kept(path: str) -> tuple[str, Expectations]:
    """The kept state and expectations, or the defaults for what is not usable (said on stderr): a file
    from before the expectations' present form keeps its state, and its expectations start afresh."""
    try:
        with open(path, "rb") as f:
            saved = unpack_map(f.read())
        check_state(saved.get("state"))
    except FileNotFoundError:
        return DEFAULT_STATE, Expectations()
    except (OSError, FrameError, ValueError) as exc:
        print(f"modulator: ignoring {path} ({exc}); starting awake", file=sys.stderr, flush=True)
        return DEFAULT_STATE, Expectations()
    expected = saved.get("expected")
    if isinstance(expected, dict) and all(_number(expected.get(k)) for k in EXPECTATION_KEYS):
        return saved["state"], Expectations(**{k: float(expected[k]) for k in EXPECTATION_KEYS})
    print(f"modulator: {path} holds no usable expectations; they start afresh", file=sys.stderr, flush=True)
    return saved["state"], Expectations()


class Modulator(Process):
    """A callback module of the process behaviour: reports in (``handle_frame``), levels out (``handle_timer``)."""

    target = MODULATOR_TARGET

    def init(self, args: dict, env: dict) -> dict:
        self.region = args["region"]
        topology = Topology.load(topology_path(args["data_dir"]))
        self.chemistry = region_chemistry(topology.neurotransmitters or {}, self.region)
        self.rest = self.chemistry.resting_levels()
        self.levels = dict(self.rest)
        self.kept_path = kept_path(args["data_dir"], self.region)
        self.state, self.expected = read_kept(self.kept_path)
        self.rewards = 0
        self.pending_rpe, self.pending_rewards = 0.0, 0
        self.activity: dict[str, tuple[str, float, float]] = {}
        self.publishes = 0
        self.started_t = time.time()
        self.bad = BadFrames(f"modulator {self.region}")
        run_dir = env["run_dir"]
        self.inbox = make_socket(self.ctx, zmq.PULL, bind=reports_endpoint(run_dir, self.region))
        self.pub = make_socket(self.ctx, zmq.PUB, bind=levels_endpoint(run_dir, self.region), linger_ms=0)
        self.watch(self.inbox, drain=REPORTS_DRAIN)
        self.handlers.update(typed_ops(MODULATOR_ARGS, {"status": lambda r: self.status(), "metrics": lambda r: self.status(),
                                                        "set_state": self.set_state, "release": self.release,
                                                        "reward": self.reward}))
        self.advanced_at = self.next_publish = time.monotonic()
        return {"region": self.region}

    def handle_frame(self, source, frames: list[bytes]) -> None:
        for frame in frames:
            try:
                self._on_report(unpack_map(frame, REPORT_MAX_BYTES))
            except FrameError as exc:
                self.bad.note(exc.kind, exc.detail)

    def handle_timer(self, now: float) -> float:
        """Levels out every publish interval, and at once after rewards or a change by hand."""
        if self.pending_rewards or now >= self.next_publish:
            self._publish()
        return self.next_publish

    def terminate(self, reason) -> None:
        self._keep()

    # -- reports ----------------------------------------------------------------------------------
    def _on_report(self, report: dict) -> None:
        kind = report.get("kind")
        if kind == "activity":
            neuron, transmitter, activity = report.get("neuron"), report.get("transmitter"), report.get("activity")
            if not isinstance(neuron, str) or transmitter not in TRANSMITTERS or not _number(activity):
                raise FrameError("bad_report", "an activity report needs neuron (str), a transmitter and activity")
            self.activity[neuron] = (transmitter, float(activity), time.monotonic())
        elif kind == "reward":
            if not _number(report.get("reward")):
                raise FrameError("bad_report", "a reward report needs a finite number 'reward'")
            self._on_reward(float(report["reward"]))
        else:
            raise FrameError("bad_report", f"unknown report kind {kind!r}; known: activity, reward")

    def _on_reward(self, reward: float) -> None:
        """A dopamine burst (or dip) by the reward's prediction error and a norepinephrine burst by the
        disappointment, published right away."""
        self._advance()
        kinetics = self.chemistry.kinetics
        delta, disappointment, self.expected = expect(self.expected, reward, self.chemistry.expected_reward_rate)
        self.levels["dopamine"] = phasic(self.levels["dopamine"], kinetics["dopamine"], delta)
        self.levels["norepinephrine"] = phasic(self.levels["norepinephrine"], kinetics["norepinephrine"],
                                               disappointment)
        self.pending_rpe += delta
        self.pending_rewards += 1
        self.rewards += 1

    # -- levels -----------------------------------------------------------------------------------
    def _advance(self) -> None:
        now = time.monotonic()
        horizon = STALE_REPORTS * self.chemistry.publish_interval_s
        self.activity = {n: a for n, a in self.activity.items() if now - a[2] <= horizon}
        current = drives([(transmitter, activity) for transmitter, activity, _ in self.activity.values()])
        self.levels = advance(self.levels, self.chemistry, current, now - self.advanced_at)
        self.advanced_at = now

    def _publish(self) -> None:
        self._advance()
        self.publishes += 1
        message = {"region": self.region, "seq": self.publishes, "t": time.time(), "state": self.state,
                   "levels": self.levels, "rest": self.rest, "rpe": self.pending_rpe,
                   "rewards": self.pending_rewards, "rewards_total": self.rewards,
                   **self._expectations()}
        self.pub.send_multipart([LEVELS_TOPIC, pack(message)])
        self.pending_rpe, self.pending_rewards = 0.0, 0
        self.next_publish = time.monotonic() + self.chemistry.publish_interval_s

    def _keep(self) -> None:
        """Write the state and expectations atomically (a failure is said, and the work goes on)."""
        tmp = f"{self.kept_path}.tmp"
        try:
            os.makedirs(os.path.dirname(self.kept_path), exist_ok=True)
            with open(tmp, "wb") as f:
                f.write(pack({"state": self.state, "expected": asdict(self.expected)}))
            os.replace(tmp, self.kept_path)
        except OSError as exc:
            print(f"modulator {self.region}: could not keep its state ({exc})", file=sys.stderr, flush=True)

    # -- control ----------------------------------------------------------------------------------
    def status(self) -> dict:
        return {"region": self.region, "pid": os.getpid(), "uptime_s": time.time() - self.started_t,
                "state": self.state, "levels": self.levels, "rest": self.rest,
                **self._expectations(), "rewards": self.rewards,
                "reporters": len(self.activity), "publishes": self.publishes,
                "publish_interval_s": self.chemistry.publish_interval_s,
                **self.bad.counts()}

    def set_state(self, request: SetState) -> dict:
        state = request.state
        previous, self.state = self.state, state
        if state != previous:
            self._keep()
            self.emit("region_state", region=self.region, state=state, previous=previous)
        self.next_publish = time.monotonic()  # tell the neurons now
        return {"region": self.region, "state": state, "previous": previous}

    def release(self, request: Release) -> dict:
        """Add ``amount`` (may be negative; the level stays >= 0) of a transmitter at once, by hand."""
        transmitter, amount = request.transmitter, request.amount
        if not math.isfinite(amount):
            raise Reply("bad_request", f"release: amount: accepted a finite number, got {amount!r}")
        self._advance()
        self.levels[transmitter] = max(0.0, self.levels[transmitter] + float(amount))
        self.next_publish = time.monotonic()
        return {"levels": self.levels}

    def reward(self, request: Reward) -> dict:
        if not math.isfinite(request.reward):
            raise Reply("bad_request", f"reward: reward: accepted a finite number, got {request.reward!r}")
        self._on_reward(request.reward)
        return {"rewards": self.rewards, "expected_reward": self.expected.reward}

    def _expectations(self) -> dict:
        """E[r], the recent mean RPE and the recent RMS RPE, as published and in ``status``."""
        return {"expected_reward": self.expected.reward, "mean_rpe": self.expected.mean_rpe,
                "expected_surprise": math.sqrt(self.expected.rpe_power)}


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


run_modulator = Modulator.main
"""Process entry point (``MODULATOR_TARGET``)."""
