"""Reshapes and process states in plain words, for people: the TUI's notices and the console of ``neurox run``.

Pure functions of what the reshaper answers (docs/protocol.md, "Reshaper") and publishes (``reshaped``,
``self_reshaped``), so the TUI and the console say the same thing and a test can check every case.
"""
from __future__ import annotations


def _few(names: list, shown: int = 4) -> str:
    names = [str(n) for n in names]
    return ", ".join(names) if len(names) <= shown else ", ".join(names[:shown]) + f" and {len(names) - shown} more"


def describe_reshape(op: str, result) -> str:
    """What a reshaper operation did, from its result: ``added neuron L2.n4 to layer L2``."""
    r = result if isinstance(result, dict) else {}
    if op == "add_neuron":
        return f"added neuron {r.get('id')} to layer {r.get('layer')}"
    if op == "remove_neuron":
        return f"removed neuron {r.get('id')} from layer {r.get('layer')}"
    if op in ("add_link", "remove_link"):
        return f"{'linked' if op == 'add_link' else 'unlinked'} {r.get('from')} → {r.get('to')}"
    if op == "add_layer":
        neurons = r.get("neurons") or []
        return f"added layer {r.get('layer')} ({len(neurons)} neuron{'s' * (len(neurons) != 1)}: {_few(neurons)})"
    if op == "remove_layer":
        return f"removed layer {r.get('layer')}"
    if op == "set_settings":
        settings = " ".join(f"{k}={v}" for k, v in (r.get("settings") or {}).items())
        neurons = r.get("neurons") or []
        return f"set {settings} on {len(neurons)} neuron{'s' * (len(neurons) != 1)} ({_few(neurons)})"
    if op == "widen_layer":
        neurons = r.get("neurons") or []
        return (f"widened layer {r.get('layer')} from {r.get('was')} to {r.get('units')} units a neuron "
                f"({_few(neurons)}), the answers unchanged")
    if op == "set_learning":
        if r.get("learning"):
            return "learning resumed in every neuron"
        return "learning paused in every neuron (answers go on)"
    return f"{op} done"


def describe_attempt(op: str, args: dict) -> str:
    """What a reshaper operation was asked to do, for an error: ``could not {this}: {why}``."""
    return {"add_neuron": lambda: f"add a neuron to layer {args.get('layer')}",
            "remove_neuron": lambda: f"remove neuron {args.get('id')}",
            "add_link": lambda: f"link {args.get('from')} → {args.get('to')}",
            "remove_link": lambda: f"unlink {args.get('from')} → {args.get('to')}",
            "set_settings": lambda: f"change the settings of {args.get('layer') or args.get('neuron')}",
            "set_learning": lambda: "resume learning" if args.get("learning") else "pause learning",
            "widen_layer": lambda: f"widen layer {args.get('layer')} to {args.get('units')} units a neuron",
            "export": lambda: "export the topology"}.get(op, lambda: op)()


def describe_self_reshape(change: dict) -> str:
    """One change of the self-reshaper (a ``self_reshaped`` event), done or refused, with its reason."""
    target = list(change.get("target") or [])
    what = {"add_neuron": lambda: f"add a neuron to layer {target[0]}",
            "remove_neuron": lambda: f"remove neuron {target[0]}",
            "add_link": lambda: f"link {target[0]} → {target[1]}",
            "remove_link": lambda: f"unlink {target[0]} → {target[1]}",
            "widen_layer": lambda: f"widen layer {target[0]} to {target[1]} units a neuron"}.get(change.get("op"))
    try:
        text = what() if what else str(change.get("op"))
    except IndexError:
        text = f"{change.get('op')} {target}"
    reason = f" ({change['reason']})" if change.get("reason") else ""
    if change.get("ok"):
        return f"self-reshaper: {text}{reason}"
    return f"self-reshaper could not {text}{reason}: {change.get('error', 'refused')}"


def shape_text(shape: list[int]) -> str:
    """A network's shape as its layer sizes: ``1-2-4-2-1``."""
    return "-".join(str(n) for n in shape)


def _duration(seconds) -> str:
    if seconds is None:
        return "-"
    return f"{seconds * 1e6:.0f}us" if seconds < 1e-3 else f"{seconds * 1e3:.1f}ms" if seconds < 1 else f"{seconds:.2f}s"


def processing_line(histogram: dict) -> str:
    """A neuron's processing time (arrival to send) in one short line: quantiles (bucket bounds) and count."""
    return (f"proc p50 {_duration(histogram.get('p50_s'))} p99 {_duration(histogram.get('p99_s'))}"
            f"  n {histogram.get('count', 0):,}")


def _span(values: list) -> str:
    low, high = min(values), max(values)
    return f"{low:.2g}" if low == high else f"{low:.2g}…{high:.2g}"


def scaling_line(answer: dict | None) -> str:
    """MessengerIn's input scaling (its ``scaling`` answer) in one line: the method, the samples seen, and
    the per-feature means and standard deviations as their ranges over the features."""
    if not isinstance(answer, dict) or not isinstance(answer.get("inputs"), dict):
        return "not known (no MessengerIn answers here)"
    inputs = answer["inputs"]
    text = f"{answer.get('mode', inputs.get('mode'))}, {inputs.get('count', 0):,} seen"
    if inputs.get("frozen"):
        text += " (frozen)"
    mean, std = inputs.get("mean") or [], inputs.get("std") or []
    if inputs.get("count") and mean and std:
        text += f"; mean {_span(mean)}, std {_span(std)} over {len(mean)} feature{'s' * (len(mean) != 1)}"
    return text


def learning_state(status: dict) -> str:
    """A neuron's learning as an operator reads it: ``learning``, ``paused`` (set_learning false: answers
    go on) or ``frozen`` (its weights are fixed: a twin's teacher, a frozen layer)."""
    if status.get("frozen"):
        return "frozen"
    if status.get("learning") is False:
        return "paused"
    return "learning"
