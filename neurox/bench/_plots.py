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
        figures = result["self_reshaping"]
        starts = [(f"{name.strip('_').replace('_', ' ') or 'line'}: accuracy {figures[f'self_reshaping{name}_accuracy']}",
                   figures[f"self_reshaping{name}_shape_over_time"]) for name in ("", "_small_start", "_large_start")]
        paths.append(_plot_units(plt, starts, "at_s", figures["learning_s"], "seconds of learning",
                                 (figures["fixed_diamond_units"], figures["fixed_diamond_accuracy"]),
                                 "Self-reshaping from wrong starts (the digits)", os.path.join(directory, "self_reshaping.png")))
    if "growth" in result:
        figures = result["growth"]
        grown = [(f"self-reshaping: accuracy {figures['self_reshaping_hard_accuracy']}",
                  figures["self_reshaping_hard_shape_over_time"])]
        paths.append(_plot_units(plt, grown, "samples", figures["hard_samples"], "samples learnt",
                                 (figures["fixed_diamond_hard_units"], figures["fixed_diamond_hard_accuracy"]),
                                 f"Growing past the diamond ({figures['hard_rows']:,} random patterns)",
                                 os.path.join(directory, "growth.png")))
    return paths


def _plot_units(plt, series: list[tuple[str, list[dict]]], x: str, end: float, xlabel: str, fixed: tuple[int, float],
                title: str, path: str) -> str:
    """Units in all over ``x`` (a step at each change of shape, ``shapes_over_time``'s steps) for each
    labelled series, up to ``end``; the fixed diamond's (units, accuracy) as a dashed line."""
    figure, axes = plt.subplots(figsize=(6, 4))
    for label, steps in series:
        xs, units = [step[x] or 0 for step in steps], [step["units"] for step in steps]
        axes.step([*xs, max(end, xs[-1])], [*units, units[-1]], where="post", label=label)
    axes.axhline(fixed[0], color="black", linestyle="--", label=f"fixed diamond: accuracy {fixed[1]}")
    axes.set(xlabel=xlabel, ylabel="units", title=title)
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path
