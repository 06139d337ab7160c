"""The benchmarks run, print their figures beside a baseline from the same run, and end with JSON."""
import json
import subprocess
import sys

import pytest


def bench(*args: str, timeout: float) -> dict:
    done = subprocess.run([sys.executable, "-m", "neurox.cli", "bench", *args], capture_output=True, text=True,
                          timeout=timeout)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.timeout(120)
def test_restart_bench_measures_forked_and_exec_restarts():
    result = bench("restart", "--kills", "20", "--exec-kills", "3", timeout=110)
    assert result["kills"] == 20 and result["exec_kills"] == 3
    assert 0 < result["restart_p50_ms"] <= result["restart_p99_ms"] <= result["restart_max_ms"]
    assert result["speedup_p50"] > 1, "forking a warm launcher beats exec'ing an interpreter"


@pytest.mark.timeout(120)
def test_latency_bench_reports_its_floor():
    result = bench("latency", "--requests", "200", timeout=110)
    assert result["p50_us"] > 0 and result["floor_p50_us"] > 0 and result["requests"] == 200
    assert result["ratio_p50"] == pytest.approx(result["p50_us"] / result["floor_p50_us"], rel=0.05)
