"""PNG figures of the brain benchmarks, from their JSON results (``--plot DIR``).

matplotlib is an optional extra (``pip install neurox[plot]``); it is imported only here, only when a
figure is asked for, with the Agg backend (no display needed). Each function returns the paths written.
"""
from __future__ import annotations

import os

COLOURS = {"none": "tab:grey", "replay": "tab:blue", "neurox": "tab:red", "joint": "tab:green"}
BASELINE_COLOURS = {"ucb1": "tab:blue", "thompson": "tab:orange", "sliding_window_ucb": "tab:green",
                    "discounted_ucb": "tab:purple"}


def _pyplot():
    try:
        import matplotlib
    except ImportError as exc:
        raise SystemExit("--plot needs matplotlib: pip install 'neurox[plot]'") from exc
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def plot_continual(result: dict, directory: str) -> list[str]:
    """Average accuracy over the ten classes after each task, one line per method."""
    plt = _pyplot()
    os.makedirs(directory, exist_ok=True)
    figure, axes = plt.subplots(figsize=(6, 4))
    tasks = [f"{a}/{b}" for a, b in result["tasks"]]
    for method, colour in COLOURS.items():
        if method in result:
            axes.plot(tasks, result[method]["accuracy_after_each_task"], "o-", color=colour, label=method)
    axes.set(xlabel="after learning task (classes)", ylabel="accuracy over all ten classes (held out)",
             ylim=(0, 1), title=f"Class-incremental digits, memory M = {result['memory']}")
    axes.grid(alpha=0.3)
    axes.legend()
    path = os.path.join(directory, "continual.png")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return [path]


def plot_brain(result: dict, directory: str) -> list[str]:
    """Cumulative regret of the bandits and the self-reshaping networks' units over time."""
    plt = _pyplot()
    os.makedirs(directory, exist_ok=True)
    paths = []
    for part, title in (("reward", "Non-stationary 10-armed bandit (the best arm moves)"),
                        ("contextual", "Contextual 10-armed bandit")):
        if part not in result:
            continue
        figure, axes = plt.subplots(figsize=(6, 4))
        at = result[part]["regret_at_pulls"]
        for name, curve in result[part]["regret_curves"].items():
            axes.plot(at, curve, label=name, color=BASELINE_COLOURS.get(name, "tab:red"),
                      linewidth=2.5 if name == "network" else 1.2)
        axes.set(xlabel="pull", ylabel="cumulative regret", title=title)
        axes.grid(alpha=0.3)
        axes.legend()
        paths.append(os.path.join(directory, f"{part}_regret.png"))
        figure.tight_layout()
        figure.savefig(paths[-1], dpi=120)
        plt.close(figure)
    if "self_reshaping" in result:
        paths.append(_plot_shapes(plt, result["self_reshaping"], directory))
    return paths


def _plot_shapes(plt, figures: dict, directory: str) -> str:
    """Units over time of each self-reshaping start (a step at each change), the diamond's as a line."""
    figure, axes = plt.subplots(figsize=(6, 4))
    end = figures["learning_s"]
    for name in ("", "_small_start", "_large_start"):
        layers = figures[f"self_reshaping{name}_layers"]
        neurons = dict(zip(layers, figures[f"self_reshaping{name}_start"]))
        widths = dict(zip(layers, figures[f"self_reshaping{name}_start_widths"]))
        times, counts = [0.0], [figures[f"self_reshaping{name}_start_units"]]
        for change in figures[f"self_reshaping{name}_changes"]:
            layer = change["target"][0].rsplit(".n", 1)[0]  # a layer's name, or a neuron's id (LAYER.nK)
            if change["op"] in ("add_neuron", "remove_neuron"):
                neurons[layer] += 1 if change["op"] == "add_neuron" else -1
            elif change["op"] == "widen_layer":
                widths[layer] = int(change["target"][1])
            else:
                continue
            times.append(change["at_s"])
            counts.append(sum(neurons[k] * widths[k] for k in layers))
        times.append(max(end, times[-1]))
        counts.append(counts[-1])
        label = f"{name.strip('_').replace('_', ' ') or 'line'}: accuracy {figures[f'self_reshaping{name}_accuracy']}"
        axes.step(times, counts, where="post", label=label)
    axes.axhline(figures["fixed_diamond_units"], color="black", linestyle="--",
                 label=f"fixed diamond: accuracy {figures['fixed_diamond_accuracy']}")
    axes.set(xlabel="seconds of learning", ylabel="units", title="Self-reshaping from wrong starts")
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8)
    path = os.path.join(directory, "self_reshaping.png")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path
