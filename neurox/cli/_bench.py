"""``neurox bench NAME``: measurements that print one JSON object as their last line.

Each benchmark measures its own baseline in the same run and reports the ratio, because absolute
figures on shared machines move from run to run.
"""
from __future__ import annotations

import argparse
import importlib
import json

BENCHMARKS = {
    "restart": "neurox.bench._restart",
    "throughput": "neurox.bench._throughput",
    "learn": "neurox.bench._learn",
    "latency": "neurox.bench._latency",
}


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("bench", help="run a benchmark; the last line printed is one JSON object")
    names = parser.add_subparsers(dest="benchmark", required=True)
    for name, module_name in BENCHMARKS.items():
        module = importlib.import_module(module_name)
        bench = names.add_parser(name, help=module.__doc__.splitlines()[0])
        bench.add_argument("--json", action="store_true", help="print only progress and the JSON result")
        module.add_arguments(bench)
        bench.set_defaults(handler=lambda args, module=module: _run(module, args))


def _run(module, args: argparse.Namespace) -> int:
    result = module.run(args)
    print(json.dumps(result, sort_keys=True), flush=True)
    return 0
