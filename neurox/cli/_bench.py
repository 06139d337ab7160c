"""``neurox bench NAME``: measurements that print one JSON object as their last line.

Each benchmark measures its own baseline in the same run and reports the ratio, because absolute
figures on shared machines move from run to run. A benchmark module is imported only when run; it
provides ``add_arguments(parser)`` and ``run(args) -> dict``.
"""
from __future__ import annotations

import argparse
import importlib
import json

BENCHMARKS = {
    "restart": ("neurox.bench._restart", "SIGKILL -> replacement answering, launcher fork vs exec"),
    "throughput": ("neurox.bench._throughput", "diamond learning samples/s beside the forward-only floor"),
    "learn": ("neurox.bench._learn", "prequential accuracy on the digits beside a one-process numpy MLP"),
    "latency": ("neurox.bench._latency", "MessengerIn -> MessengerOut round trips on an idle network, beside the floor and the route floor"),
    "scale": ("neurox.bench._scale", "a thousand neuron processes on one host: start, PSS, learning, stop"),
    "pool": ("neurox.bench._pool_copies", "the maintenance pool's copies and give-backs of 1,000 neurons, batched "
                                          "beside one call after another"),
    "soak": ("neurox.bench._soak", "steady load for a while: growth of RSS, fds and threads"),
    "chaos": ("neurox.bench._chaos", "SIGKILL neurons and supervisors under load: lost, duplicated, orphaned"),
    "fuzz": ("neurox.bench._fuzz", "100,000 bad frames to every socket kind: counted, nothing dies, memory bounded"),
    "datasets": ("neurox.bench._datasets", "digits, iris, wine, breast cancer, diabetes (and --drift streams) beside "
                                           "an in-process MLP, scikit-learn and River"),
    "text": ("neurox.bench._text", "generated texts learnt through the hashing encoder beside a linear model"),
    "brain": ("neurox.bench._brain", "dopamine reward learning on a moving bandit, Hebbian vs the first PC, ..."),
    "shapes": ("neurox.bench._shapes", "a release shape (prod: 19 layers, 100 neurons) learning and answering with a "
                                       "neuron SIGKILLed mid-stream: every request answered, accuracy beside no kill"),
    "continual": ("neurox.bench._continual", "class-incremental digits (five tasks of two classes): none, replay, "
                                             "sleep with the hippocampus, joint"),
}


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("bench", help="run a benchmark; the last line printed is one JSON object",
                            description="\n".join(f"{name}: {text}" for name, (_, text) in BENCHMARKS.items()),
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("benchmark", choices=sorted(BENCHMARKS))
    parser.add_argument("options", nargs=argparse.REMAINDER, help="the benchmark's own options (--help lists them)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    module_name, text = BENCHMARKS[args.benchmark]
    module = importlib.import_module(module_name)
    parser = argparse.ArgumentParser(prog=f"neurox bench {args.benchmark}", description=text)
    parser.add_argument("--json", action="store_true", help="accepted for clarity: the last line is always the JSON")
    module.add_arguments(parser)
    result = module.run(parser.parse_args(args.options))
    print(json.dumps(result, sort_keys=True), flush=True)
    return 0
