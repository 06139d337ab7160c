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
    assert 0 < result["p50_us"] <= result["p99_us"] and 0 < result["floor_p50_us"] <= result["floor_p99_us"]
    assert result["requests"] == 200 and result["p50_ratio"] > 0
    # a neuron never waits for a second packet: one that did would hold each request for its join deadline (200 ms)
    assert result["p50_us"] < 100_000, result
    # the CPU each side spends a request: every neuron and both messengers spend some
    by_process = result["cpu_us_per_request_by_process"]
    assert all(by_process.get(name, 0) > 0 for name in ("nx:L0.n0", "nx:L4.n0", "nx:messenger_in")), by_process
    assert result["cpu_us_per_request"] == pytest.approx(sum(by_process.values()), abs=len(by_process))
    assert result["floor_cpu_us_per_request"] > 0, result
    # the route floor: the diamond with bare processes in the messengers' places (eight hops, not six)
    assert 0 < result["route_floor_p50_us"] <= result["route_floor_p99_us"], result
    assert result["route_p50_ratio"] == pytest.approx(result["p50_us"] / result["route_floor_p50_us"], rel=0.01)
    assert result["route_floor_cpu_us_per_request"] > 0, result


@pytest.mark.timeout(180)
def test_scale_bench_starts_learns_and_stops_a_sparse_network_beside_bare_children():
    result = bench("scale", "--neurons", "60", "--layers", "4", "--learn-seconds", "4", "--reference-neurons", "30",
                   timeout=170)
    assert result["neurons"] == 60 and result["left_running"] == 0
    assert result["reference_start_s"] > 0 and result["start_ratio_vs_30"] == pytest.approx(
        result["start_s"] / result["reference_start_s"], rel=0.05)
    assert result["baseline_start_s"] > 0 and result["start_ratio"] == pytest.approx(
        result["start_s"] / result["baseline_start_s"], rel=0.05)
    assert result["pss_mib_per_neuron"] > 0 and result["baseline_pss_mib"] > 0
    assert result["fork_floor_s"] > 0 and 0 < result["start_cpu_s"] and 0 < result["machine_cpu_s"], result
    assert result["samples_per_s"] > 0 and result["lost"] == 0, result


@pytest.mark.timeout(120)
def test_brain_bench_runs_the_parts_asked_for_with_their_baselines():
    result = bench("brain", "--parts", "hebbian", timeout=110)
    assert set(result) == {"hebbian_cosine", "reference_cosine", "hebbian"}, result
    assert result["hebbian_cosine"] == result["hebbian"]["hebbian_cosine"] > result["hebbian"]["initial_cosine"]
    assert result["hebbian"]["seconds"] > 0
    done = subprocess.run([sys.executable, "-m", "neurox.cli", "bench", "brain", "--parts", "nonsense"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode != 0 and "unknown parts ['nonsense']" in done.stderr


@pytest.mark.timeout(180)
def test_learn_bench_sweeps_windows_beside_one_process_from_the_same_first_weights():
    result = bench("learn", "--epochs", "1", "--sweep", "2", timeout=170)
    assert result["batch"] == 1 and result["staleness"] == "delay" and result["learning_rate"] == 0.05
    assert [row["window"] for row in result["sweep"]] == sorted({2, result["window"]})
    assert result["samples_per_s"] > 0 and result["reference_samples_per_s"] > 0 and result["ramp"] > 0
    top = next(row for row in result["sweep"] if row["window"] == result["window"])
    assert all(size > 4 for size in top["mean_bundle"].values()), ("the window travels in bundles", top)
    for row in result["sweep"]:
        assert row["lost"] == 0 and row["accuracy"] > 0.5 and row["simulated_accuracy"] > 0.5, row
        assert list(row["mean_bundle"]) == ["L0", "L1", "L2", "L3", "L4"]
        assert all(1 <= size <= row["window"] for size in row["mean_bundle"].values()), row
    assert result["reference_accuracy"] > 0.6  # one epoch of the digits, one sample at a time


@pytest.mark.timeout(320)
def test_datasets_bench_runs_a_set_through_the_network_beside_its_references():
    result = bench("datasets", "--sets", "iris,diabetes", "--epochs", "1", timeout=300)
    iris, diabetes = result["datasets"]["iris"], result["datasets"]["diabetes"]
    for method in ("neurox", "in_process", "sklearn_mlp", "river_logistic", "river_tree"):
        assert 0.0 <= iris[method]["accuracy"] <= 1.0 and iris[method]["samples_per_s"] > 0, method
        assert diabetes[method]["rmse"] > 0, method
    assert iris["neurox"]["accuracy"] > 0.6 and iris["margin"] == result["min_accuracy_margin"]
    assert diabetes["neurox"]["rmse"] < 120 and result["rmse_ratio"] == diabetes["rmse_ratio"] < 1.5
    assert iris["samples"] == 150 and diabetes["task"] == "regression" and result["window"] >= 1
