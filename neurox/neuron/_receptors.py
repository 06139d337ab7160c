"""What the chemistry does to this neuron: the levels it senses, their effects, dopamine's RPE, its state.

A neuron in a modulated region (docs/brain.md) subscribes to its region's modulator: every
publication carries the transmitter levels (and their resting levels), the rewards and the reward
prediction error since the last one, and the region's state. :class:`Receptors` keeps the latest,
derives the modulation (gain on the summed input, learning-rate factor, exploration temperature,
``_modulation.modulation``), and says what the neuron must act on: an RPE to credit (the
third factor of three-factor learning) or a new state of its region. The neuron's state
(``awake``, ``meditative``, ``maintenance``, ``_states``) lives here too: the region sets it, and so
can an operator by hand; the latest change wins. A neuron outside a modulated region senses resting
levels for ever: every effect is neutral.
"""
from __future__ import annotations

import numpy as np

from ..runtime import BadFrames, FrameError, unpack_map
from ._modulation import NEUTRAL, PUBLISH_INTERVAL_S, ModulatorLink, modulation, resting_levels
from ._states import DEFAULT_STATE, check_state


def open_receptors(ctx, run_dir: str, topology, neuron_id: str, transmitter: str, modulated: bool = True
                   ) -> Receptors:
    """The receptors of a neuron of ``topology``, linked to its region's modulator if the region has one
    (and ``modulated``: a twin of the maintenance pool reports to none)."""
    region = topology.region_of_layer(topology.layer_of(neuron_id))
    table = topology.neurotransmitters or {}
    link = None
    if modulated and region in topology.modulated_regions():
        interval = float(table.get("publish_interval_s", PUBLISH_INTERVAL_S))
        link = ModulatorLink(ctx, run_dir, region, neuron_id, transmitter, interval)
    return Receptors(region, resting_levels(table, region), link)


class Receptors:
    """Levels, modulation, RPE and state of one neuron; ``link`` to its region's modulator, if any."""

    def __init__(self, region: str, rest: dict[str, float], link: ModulatorLink | None):
        self.region = region
        self.levels, self.rest = dict(rest), dict(rest)
        self.modulation = NEUTRAL
        self.rpe, self.rewards, self.seq = 0.0, 0, 0
        self.state, self.state_source, self.region_state = DEFAULT_STATE, "default", None
        self.link = link

    @property
    def socket(self):
        """The SUB socket levels come on (None outside a modulated region)."""
        return None if self.link is None else self.link.levels

    def learning_rate(self, configured: float) -> float:
        return configured * self.modulation.learning_rate_factor

    def take(self, messages: list[list[bytes]], bad: BadFrames) -> list[tuple[float | None, str | None]]:
        """Apply publications (``[topic, body]`` each, oldest first); per publication, what to act on:
        an RPE to credit (or None) and a new state of the region (or None). Bad ones are counted."""
        effects = []
        for parts in messages:
            try:
                if len(parts) != 2:
                    raise FrameError("malformed", "a levels message is [topic, body]")
                effects.append(self._apply(unpack_map(parts[1])))
            except FrameError as exc:
                bad.note(exc.kind, exc.detail)
        return effects

    def _apply(self, published: dict) -> tuple[float | None, str | None]:
        try:
            levels = {k: float(v) for k, v in published["levels"].items()}
            rest = {k: float(v) for k, v in published["rest"].items()}
            rewards, rpe, state = int(published.get("rewards", 0)), float(published.get("rpe", 0.0)), published["state"]
            check_state(state)
            seq = int(published["seq"])
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise FrameError("bad_levels", str(exc)) from None
        self.levels, self.rest, self.seq = levels, rest, seq
        self.modulation = modulation(levels, rest)
        if rewards:
            self.rpe, self.rewards = rpe, self.rewards + rewards
        new_state = None
        if state != self.region_state:
            self.region_state = new_state = state
        return (rpe if rewards else None), new_state

    def set_state(self, state: str, source: str) -> bool:
        """This neuron's state from now on (``source``: ``region`` or ``manual``); True if it changed."""
        changed = state != self.state
        self.state, self.state_source = state, source
        return changed

    # -- activity reports to the modulator --------------------------------------------------------
    def note_outputs(self, y: np.ndarray) -> None:
        if self.link is not None:
            self.link.note_activity(float(np.abs(y).mean(axis=1).sum()), y.shape[0])

    @property
    def next_report(self) -> float | None:
        return None if self.link is None else self.link.next_report

    def report(self, now: float) -> None:
        if self.link is not None and now >= self.link.next_report:
            self.link.report(now)

    def status(self) -> dict:
        return {"region": self.region, "state": self.state, "state_source": self.state_source,
                "neuromodulators": self.chemistry()}

    def chemistry(self) -> dict:
        return {"levels": self.levels, "rest": self.rest, "gain": self.modulation.gain,
                "learning_rate_factor": self.modulation.learning_rate_factor,
                "exploration": self.modulation.exploration, "rpe": self.rpe,
                "rewards": self.rewards, "seq": self.seq, "modulated": self.link is not None}

    def close(self) -> None:
        if self.link is not None:
            self.link.close()
