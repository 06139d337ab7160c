"""``neurox bench restart`` in miniature: it runs, restarts happen, and the JSON has its keys."""
import argparse

import pytest

from neurox.bench import _restart

pytestmark = [pytest.mark.timeout(60), pytest.mark.usefixtures("no_stray_processes")]


def test_the_restart_bench_reports_forked_and_exec_restarts():
    parser = argparse.ArgumentParser()
    _restart.add_arguments(parser)
    result = _restart.run(parser.parse_args(["--kills", "10", "--exec-kills", "2", "--interval-ms", "20"]))
    assert {"restart_p50_ms", "restart_p99_ms", "exec_restart_p50_ms", "speedup_p50", "kills"} <= set(result)
    assert (result["kills"], result["exec_kills"]) == (10, 2)
    assert 0 < result["restart_p50_ms"] <= result["restart_p99_ms"] <= result["restart_max_ms"]
    assert result["exec_restart_p50_ms"] > result["restart_p50_ms"], "a warm fork beats a fresh interpreter"
    assert result["speedup_p50"] > 1
