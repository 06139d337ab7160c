"""the brain's parts measured: reward learning with dopamine, Hebbian learning, and more

Each part is a function in a module of its own that runs real neuron processes and returns a dict
with its own baseline from the same run; this command runs the parts asked for and prints one JSON
object: each part's headline figures at the top level, and all its figures (with the seconds it
took) under its name.
"""
from __future__ import annotations

import argparse
import importlib
import time

from ._options import chosen

PARTS = {
    "reward": ("neurox.bench._brain_plasticity", "measure_reward_learning",
               ("reward_ratio", "epsilon_greedy_ratio", "random_ratio", "bandit_reward_vs_best_baseline")),
    "contextual": ("neurox.bench._brain_plasticity", "measure_contextual_bandit",
                   ("contextual_reward_ratio", "contextual_reward_vs_best_baseline")),
    "hebbian": ("neurox.bench._brain_plasticity", "measure_hebbian", ("hebbian_cosine", "reference_cosine")),
    "self_reshaping": ("neurox.bench._brain_shaping", "measure_self_reshaping",
                       ("self_reshaping_accuracy", "self_reshaping_shape", "fixed_diamond_accuracy",
                        "self_reshaping_small_start_accuracy", "self_reshaping_large_start_accuracy")),
    "growth": ("neurox.bench._brain_shaping", "measure_growth",
               ("self_reshaping_hard_accuracy", "fixed_diamond_hard_accuracy")),
    "sleep": ("neurox.bench._brain_sleep", "measure_sleep", ("retained_a_with_sleep", "retained_a_without_sleep")),
    "maintenance": ("neurox.bench._brain_sleep", "measure_maintenance", ("maintenance_answered_ratio",)),
}
"""Part name -> (module, function, headline keys); the order is the order they run in."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--parts", default=",".join(PARTS),
                        help=f"comma-separated parts to run, of {', '.join(PARTS)} (default: all)")
    parser.add_argument("--plot", metavar="DIR", help="write PNG figures there (needs the 'plot' extra)")


def run(args: argparse.Namespace) -> dict:
    wanted = chosen(args.parts, PARTS, "parts")
    result: dict = {}
    for part in wanted:
        module_name, function, headline = PARTS[part]
        started = time.perf_counter()
        figures = getattr(importlib.import_module(module_name), function)()
        figures["seconds"] = round(time.perf_counter() - started, 1)
        print(f"{part}: {figures}", flush=True)
        result.update({key: figures[key] for key in headline})
        result[part] = figures
    if args.plot:
        from ._plots import plot_brain
        result["plots"] = plot_brain(result, args.plot)
    return result
