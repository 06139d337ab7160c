"""``neurox bench restart`` in miniature, as a user runs it: restarts happen, and the JSON on its last line
holds figures that agree with each other."""
import json
import subprocess
import sys

import pytest

pytestmark = [pytest.mark.timeout(60), pytest.mark.usefixtures("no_stray_processes")]


def test_the_restart_bench_reports_forked_and_exec_restarts():
    done = subprocess.run([sys.executable, "-m", "neurox.cli", "bench", "restart", "--json", "--kills", "10",
                           "--exec-kills", "2", "--interval-ms", "20"], capture_output=True, text=True, timeout=50)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert (result["kills"], result["exec_kills"], result["interval_ms"]) == (10, 2, 20)
    assert 0 < result["restart_p50_ms"] <= result["restart_p99_ms"] <= result["restart_max_ms"]
    assert result["exec_restart_p50_ms"] > result["restart_p50_ms"], "a warm fork beats a fresh interpreter"
    # (each figure is rounded: the ratio of the rounded ones is within 1 % of the reported one)
    assert result["speedup_p50"] == pytest.approx(result["exec_restart_p50_ms"] / result["restart_p50_ms"], rel=0.01), \
        "the ratio is the one of the two figures reported"
    stages = result["stages_ms"]
    assert sorted(stages) == ["answer", "bind", "reach", "ready", "start"], "the stages of a restart"
    for name, row in stages.items():
        assert 0 <= row["p50"] <= row["p90"] <= row["p99"] <= result["restart_max_ms"], (name, row)
    assert stages["start"]["p50"] > 0 and stages["reach"]["p50"] > 0, "a death and a reconnection take time"
