"""The shell probes against a live network, and against a dead address (clear error, exit 3, no hang)."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from _netutil import EventWatcher, neuron_call, running_network
from neurox.cli._discovery import write_run_file
from neurox.neuron import load_topology


def probe(*args: str, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "neurox.cli", "probe", *args], capture_output=True, text=True,
                          timeout=timeout)


def until_exited(proc: subprocess.Popen, act, tries: int = 20, wait_s: float = 1.0) -> None:
    """``act()`` until ``proc`` exits (it waits for what ``act`` causes), waiting up to ``wait_s`` after each."""
    for _ in range(tries):
        act()
        try:
            proc.wait(wait_s)
            return
        except subprocess.TimeoutExpired:
            continue
    raise AssertionError(f"{proc.args[3:6]} never saw what it waited for")


def kill_and_await_restart(network, watcher: EventWatcher, neuron: str) -> None:
    os.kill(neuron_call(network, neuron, "status")["pid"], signal.SIGKILL)
    watcher.wait_for(lambda e: e["event"] == "child_restarted" and e["id"] == neuron)


@pytest.mark.timeout(120)
def test_every_probe_against_a_live_network(tmp_path):
    with running_network(load_topology(), tmp_path) as network:
        write_run_file(network)
        target = ["--data-dir", str(tmp_path)]
        done = probe("ping", "L2.n1", *target)
        assert done.returncode == 0 and "pong from L2.n1" in done.stdout
        assert probe("ping", "root/L3", *target).returncode == 0
        done = probe("status", "--json", *target)
        rows = json.loads(done.stdout)
        paths = {row["path"] for row in rows}
        assert {f"root/{network.topology.layer_of(n).name}/{n}" for n in network.topology.neurons()} <= paths
        assert all(row["status"]["state"] == "running" for row in rows)
        tree = probe("tree", *target).stdout
        assert "L4.n0 [worker]" in tree and "messenger_in [worker]" in tree
        metrics = json.loads(probe("metrics", "L0.n0", *target).stdout)
        assert "forwards" in metrics and "weights" in metrics
        done = probe("inject", "L3.n1", *target)
        lines = [json.loads(line) for line in done.stdout.splitlines()]
        assert done.returncode == 0 and len(lines[0]["output"]) == 16 and len(lines[1]["end_of_network"]) == 10
        # A SUB joins late and nothing tells when the probe's has: act until what it awaits reaches it.
        tapper = subprocess.Popen([sys.executable, "-m", "neurox.cli", "probe", "tap", "L2.n1", "--count", "1",
                                   "--timeout", "20", *target], stdout=subprocess.PIPE, text=True)
        fan_in = sum(neuron_call(network, "L1.n0", "get_params")["widths"].values())
        until_exited(tapper, lambda: neuron_call(network, "L1.n0", "inject", vector=[0.5] * fan_in))
        out, _ = tapper.communicate(timeout=20)
        assert tapper.returncode == 0 and json.loads(out.splitlines()[0])["kind"] == "forward"
        follower = subprocess.Popen([sys.executable, "-m", "neurox.cli", "probe", "events", "--count", "1",
                                     "--filter", "child_", "--timeout", "20", *target], stdout=subprocess.PIPE,
                                    text=True)
        watcher = EventWatcher(network)
        until_exited(follower, lambda: kill_and_await_restart(network, watcher, "L1.n1"), tries=5)
        watcher.close()
        out, _ = follower.communicate(timeout=20)
        assert follower.returncode == 0 and json.loads(out)["event"].startswith("child_")
        done = probe("ping", "nobody", *target)
        assert done.returncode != 0 and "unknown neuron" in (done.stdout + done.stderr)
        done = probe("state", "root/modulator.cortex", *target)  # the diamond has no [neurotransmitters]
        assert done.returncode == 3 and "[neurotransmitters]" in done.stdout, done.stdout


@pytest.mark.timeout(60)
@pytest.mark.parametrize("name", ["ping", "status", "tree", "metrics"])
def test_a_dead_address_gives_a_clear_error_and_exit_code_3(name, tmp_path):
    args = [name, "--endpoint", f"ipc://{tmp_path}/nobody.ctl", "--timeout", "0.5"]
    if name == "metrics":
        args.insert(1, "L0.n0")
    # no socket there at all: said at once, without waiting for an answer that cannot come
    done = probe(*args)
    assert done.returncode == 3 and f"nothing listens at ipc://{tmp_path}/nobody.ctl" in done.stdout, done.stdout
    # a socket file that nobody serves (its process died): asked, and silence after the timeout
    (tmp_path / "nobody.ctl").write_text("")
    started = time.monotonic()
    done = probe(*args)
    assert done.returncode == 3 and "did not answer within 0.5 s" in done.stdout, done.stdout
    assert time.monotonic() - started < 15


@pytest.mark.timeout(30)
def test_no_network_in_the_data_dir_is_a_clear_error(tmp_path):
    done = probe("status", "--data-dir", str(tmp_path))
    assert done.returncode == 3 and "no running network found" in done.stdout
