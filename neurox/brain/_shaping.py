"""Self-reshaping and structural plasticity: what to change in a network's shape, decided purely.

The self-reshaper process (``_self_reshaper``) observes the network every round and asks these
functions what to do; it then does it through the reshaping API. Nothing here does I/O.

Rounds (``round_due``): every ``interval_samples`` samples the end learns, if set -- so a budget in samples
gets the same rounds on any machine -- else every ``interval_s`` seconds once the end has reported anew.

Policy (``docs/brain.md``, "Self-reshaping"):

- **widen the start node**: the start node (the first layer's one neuron, which the reshaper cannot add
  to) with fewer units than the end layer doubles its units (``widen_layer``, which keeps the network's
  function), one doubling per round, without waiting for a plateau -- all the input passes through it,
  so the answer can tell no more apart than it does;
- **widen a bottleneck**: an inner layer with fewer units in all than the end layer (fewer than the
  answer's classes) gets a neuron, the narrowest first, one per round, without waiting for a plateau --
  what one layer cannot tell apart no later layer can, so its width bounds the network's accuracy
  whatever the loss is doing;
- **grow**: while the loss has plateaued (its relative improvement over the last ``plateau_rounds``
  rounds is below ``plateau_tolerance``) and a layer's neurons saturate (mean share of units
  near the activation's bounds above ``saturation``), add a neuron to the most saturated such layer,
  at most one per round and up to ``max_neurons`` per layer -- the layer has too few units to
  represent what it is asked to;
- **shrink**: while the loss has plateaued below ``shrink_below`` (the task is mastered), the least
  saturated inner layer that can spare a neuron (keeping one, and as many units as the answer) gives up
  the one its successors listen to least (the smallest RMS of its outgoing links), one per round --
  units far from their bounds are spare capacity, and what the successors weigh least carries least;
  the next goes only once the loss is back under what it was at this one (``recovered``): what is left
  masters the task as well again, else the neuron was not spare and no other goes after it;
- **remove**: a neuron that stayed silent (mean |output| below ``silence``) for ``silent_rounds``
  rounds in a row is removed, if its layer keeps at least one neuron -- it carries nothing;
- **prune**: an incoming link whose weights' RMS stays below ``prune_below`` is removed, if both
  ends keep another link -- it carries almost nothing and costs a message per sample;
- **sprout**: a neuron with fewer than ``min_inputs`` incoming links gets a new link from a neuron
  of the previous layer it is not linked to yet, and as many new links as were pruned sprout between
  adjacent layers where there are none (synaptic turnover; the seeded ``rng`` picks them).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated

import msgspec
import numpy as np

from ..runtime import typed


class ShapingConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The ``[self_reshaping]`` table of a topology (every key optional), and its schema."""

    interval_s: Annotated[float, msgspec.Meta(gt=0)] = 5.0
    interval_samples: Annotated[int, msgspec.Meta(ge=1)] | None = None
    """Samples the end learns between rounds; when set it wins over ``interval_s``: what the network does
    in a number of samples is then the same however fast the machine computes them."""
    plateau_rounds: Annotated[int, msgspec.Meta(ge=1)] = 3
    plateau_tolerance: float = 0.02
    saturation: float = 0.3
    max_neurons: Annotated[int, msgspec.Meta(ge=1)] = 8
    silence: float = 0.01
    silent_rounds: Annotated[int, msgspec.Meta(ge=1)] = 3
    prune_below: float = 0.01
    min_inputs: int = 1
    shrink_below: float = 0.05
    """Below this loss, on a plateau, the network has mastered its task: the least saturated inner layer
    gives up a neuron (0: never)."""
    structural: bool = True
    """Prune and sprout links (structural plasticity) besides growing and removing neurons."""

    @classmethod
    def from_table(cls, table: dict) -> "ShapingConfig":
        """The table decoded (ConfigError, a ValueError, naming ``self_reshaping.KEY`` if it does not fit)."""
        return typed(cls, table, at="self_reshaping")


@dataclass(frozen=True)
class NeuronView:
    """What the self-reshaper saw of one neuron this round."""

    id: str
    layer: str
    activity: float
    """Mean |output| over recent samples (an exponential average kept by the neuron)."""
    saturation: float
    """Mean share of its units near their activation's bounds."""
    link_rms: dict[str, float] = field(default_factory=dict)
    """RMS of the weights of each incoming link, by source neuron."""


@dataclass(frozen=True)
class Action:
    op: str
    """``add_neuron``, ``remove_neuron``, ``add_link``, ``remove_link`` or ``widen_layer`` (the reshaping
    API's ops; ``widen_layer``'s target is the layer and its new units, as text)."""
    target: tuple[str, ...]
    reason: str


def learnt_between(before: tuple[int, int] | None, after: tuple[int, int]) -> int:
    """Samples the end learnt between two of its reports, from their ``(samples, updates)`` counters: the
    samples it computed, if it learnt from any packet meanwhile (else it only answered: none). Before the
    first report seen (``before`` None) and after a restart (the counters went back) the counters were
    zero: a self-reshaper that subscribed late still counts what was learnt before."""
    if before is None or after[0] < before[0] or after[1] < before[1]:
        before = (0, 0)
    return after[0] - before[0] if after[1] > before[1] else 0


def round_due(config: ShapingConfig, learnt: int, elapsed_s: float, end_reported: bool) -> bool:
    """Is a round due, ``learnt`` samples and ``elapsed_s`` seconds after the last? By samples when
    ``interval_samples`` is set, else by time once the end has reported anew (a round on the same report
    again would see a flat loss and call it a plateau)."""
    if config.interval_samples is not None:
        return learnt >= config.interval_samples
    return elapsed_s >= config.interval_s and end_reported


def round_mark(mark: int, learnt: int, interval: int | None) -> int:
    """Where the samples to the next round count from, after a round at ``learnt``: the last multiple of
    ``interval`` past ``mark`` (not ``learnt`` itself, or each round would come up to a report's worth of
    samples late, more on a faster machine); ``learnt`` for timed rounds."""
    return learnt if interval is None else mark + (learnt - mark) // interval * interval


def plateaued(losses: list[float], rounds: int, tolerance: float) -> bool:
    """True when the loss improved by less than ``tolerance`` (relative) over the last ``rounds``."""
    if len(losses) < rounds + 1:
        return False
    then, now = losses[-rounds - 1], losses[-1]
    return then <= 0 or (then - now) / then < tolerance


def silent_streaks(previous: dict[str, int], neurons: list[NeuronView], silence: float) -> dict[str, int]:
    """Rounds in a row each neuron has been silent (neurons not seen any more are forgotten)."""
    return {n.id: previous.get(n.id, 0) + 1 if n.activity < silence else 0 for n in neurons}


def decide_start(layer: str, units: int, needed: int) -> list[Action]:
    """Double the start node's units while it has fewer than the answer's ``needed``."""
    if units >= needed:
        return []
    return [Action("widen_layer", (layer, str(2 * units)), f"the start node has {units} units, fewer than the {needed} "
                                                           "of the answer")]


def decide_neurons(config: ShapingConfig, layers: list[tuple[str, list[str]]], neurons: list[NeuronView],
                   losses: list[float], streaks: dict[str, int], widths: dict[str, int] | None = None,
                   needed: int = 0, recovered_below: float | None = None) -> list[Action]:
    """Widen a bottleneck; on a plateau, shrink the least saturated layer if the task is mastered, else
    grow the most saturated one; remove neurons silent for long enough.

    ``layers`` are the inner layers that may change, in network order, with their neurons; ``widths``
    their units per neuron, ``needed`` the end layer's units (no bottleneck rule without them);
    ``recovered_below`` the loss to get back under before the next shrink (after one: ``recovered``).
    """
    actions: list[Action] = []
    by_layer = {name: [n for n in neurons if n.layer == name] for name, _ in layers}
    sizes = {name: len(ids) for name, ids in layers}
    for name, _ in layers:
        for view in by_layer[name]:
            if streaks.get(view.id, 0) >= config.silent_rounds and sizes[name] > 1:
                actions.append(Action("remove_neuron", (view.id,), f"silent for {streaks[view.id]} rounds"))
                sizes[name] -= 1
    narrow = [(sizes[name] * widths[name], index, name) for index, (name, _) in enumerate(layers)
              if widths and name in widths and sizes[name] * widths[name] < needed and sizes[name] < config.max_neurons]
    if narrow:
        units, _, name = min(narrow)
        actions.append(Action("add_neuron", (name,), f"{name} has {units} units, fewer than the {needed} of the answer"))
    elif not actions and plateaued(losses, config.plateau_rounds, config.plateau_tolerance) \
            and losses[-1] < min(config.shrink_below, recovered_below or config.shrink_below):
        actions += _shrink(by_layer, sizes, widths or {}, needed, losses[-1], outgoing_rms(neurons))
    elif plateaued(losses, config.plateau_rounds, config.plateau_tolerance):
        saturated = [(float(np.mean([v.saturation for v in views])), name) for name, views in by_layer.items()
                     if views and sizes[name] < config.max_neurons]
        saturated = [(s, name) for s, name in saturated if s > config.saturation]
        if saturated:
            level, name = max(saturated)
            actions.append(Action("add_neuron", (name,), f"loss plateaued and {name} saturates ({level:.2f})"))
    return actions


def recovered(loss: float, config: ShapingConfig) -> float:
    """The loss a network must get back under, after a shrink at ``loss``, before it shrinks again: that
    loss give or take the plateau tolerance."""
    return loss * (1.0 + config.plateau_tolerance)


def _shrink(by_layer: dict[str, list[NeuronView]], sizes: dict[str, int], widths: dict[str, int], needed: int,
            loss: float, outgoing: dict[str, float]) -> list[Action]:
    """The least saturated layer that can spare a neuron (it keeps one, and as many units as the answer)
    gives up the one its successors listen to least."""
    spare = [(float(np.mean([v.saturation for v in views])), name) for name, views in by_layer.items()
             if views and sizes[name] > 1 and (sizes[name] - 1) * widths.get(name, needed) >= needed]
    if not spare:
        return []
    level, name = min(spare)
    quietest = min(by_layer[name], key=lambda v: (outgoing.get(v.id, 0.0), v.id))
    return [Action("remove_neuron", (quietest.id,),
                   f"loss {loss:.3f} plateaued below shrink_below and {name} is the least saturated ({level:.2f})")]


def outgoing_rms(neurons: list[NeuronView]) -> dict[str, float]:
    """How much each neuron's successors listen to it: the mean RMS of its outgoing links, as they see them."""
    seen: dict[str, list[float]] = {}
    for view in neurons:
        for src, rms in view.link_rms.items():
            seen.setdefault(src, []).append(rms)
    return {src: float(np.mean(values)) for src, values in seen.items()}


def decide_links(config: ShapingConfig, layers: list[tuple[str, list[str]]], neurons: list[NeuronView],
                 links: list[tuple[str, str]], rng: np.random.Generator) -> list[Action]:
    """Prune weak links that both ends can spare; sprout a link to neurons left with too few inputs.

    ``layers`` are all the layers in network order (the first's inputs come from outside and are
    never pruned); ``links`` are the network's links.
    """
    if not config.structural:
        return []
    inputs = {dst: [s for s, d in links if d == dst] for _, ids in layers for dst in ids}
    outputs = {src: [d for s, d in links if s == src] for _, ids in layers for src in ids}
    actions: list[Action] = []
    for view in neurons:
        for src, rms in sorted(view.link_rms.items(), key=lambda item: item[1]):
            if src not in inputs.get(view.id, ()) or rms >= config.prune_below:  # a report older than the link's removal
                continue
            if len(inputs[view.id]) > 1 and len(outputs[src]) > 1:
                actions.append(Action("remove_link", (src, view.id), f"weights' RMS {rms:.4f}"))
                inputs[view.id].remove(src)
                outputs[src].remove(view.id)
    previous = {dst: layers[k - 1][1] for k, (_, ids) in enumerate(layers) if k > 0 for dst in ids}
    pruned = {action.target for action in actions}
    unlinked = [(src, dst) for dst, sources in inputs.items() if dst in previous
                for src in previous[dst] if src not in sources and (src, dst) not in pruned]
    for dst, sources in inputs.items():  # a neuron short of inputs first
        candidates = [link for link in unlinked if link[1] == dst]
        if dst in previous and len(sources) < config.min_inputs and candidates:
            link = candidates[int(rng.integers(len(candidates)))]
            actions.append(Action("add_link", link, f"{dst} has {len(sources)} inputs"))
            unlinked.remove(link)
    for _ in range(min(len(pruned), len(unlinked))):  # then as many new links as were pruned: turnover
        link = unlinked.pop(int(rng.integers(len(unlinked))))
        actions.append(Action("add_link", link, "sprouted in place of a pruned link"))
    return actions
