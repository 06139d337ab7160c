"""``neurox run``'s exit status means what it says: 0 and ``stopped`` for a stop someone asked for
(Ctrl-C, SIGTERM, --epochs or --duration done), non-zero with one line naming the reason when the
network died; no traceback, no process left behind."""
import json
import os
import signal
import subprocess
import sys

import pytest
import zmq

from neurox.cli._run import why_it_died
from neurox.runtime import ControlClient, ControlError, ExitReason
from neurox.supervisor_tree import control_endpoint


def start(tmp_path, *args) -> subprocess.Popen:
    run = subprocess.Popen([sys.executable, "-m", "neurox.cli", "run", "--data-dir", str(tmp_path / "data"),
                            "--no-service", *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    for line in run.stdout:
        if line.startswith("up in"):
            return run
    raise AssertionError(f"neurox run ended before it was up (exit {run.wait()})")


@pytest.mark.timeout(120)
@pytest.mark.parametrize("how", [signal.SIGINT, signal.SIGTERM, "duration"])
def test_a_stop_someone_asked_for_is_exit_0_and_says_stopped(tmp_path, no_stray_processes, how):
    run = start(tmp_path, *(["--duration", "3"] if how == "duration" else []))
    if how != "duration":
        run.send_signal(how)
    out, _ = run.communicate(timeout=90)
    assert run.returncode == 0 and out.splitlines()[-1] == "stopped" and "Traceback" not in out, out
    assert "exit code" not in out and "died" not in out


@pytest.mark.timeout(120)
def test_the_root_killed_is_a_non_zero_exit_with_one_line_and_no_orphan(tmp_path, no_stray_processes):
    run = start(tmp_path)
    with open(tmp_path / "data" / "run.json") as f:
        root = ControlClient(zmq.Context.instance(), json.load(f)["control"], 5.0)
    try:
        pid = root.call("status")["pid"]
    finally:
        root.close()
    os.kill(pid, signal.SIGKILL)
    out, _ = run.communicate(timeout=90)
    assert run.returncode == 1, out
    assert out.splitlines()[-1] == "neurox run: the network died: the root supervisor was killed (SIGKILL)", out
    assert "Traceback" not in out and "stopped" not in out


@pytest.mark.timeout(120)
def test_a_root_that_gives_up_at_its_intensity_is_a_non_zero_exit_naming_it(tmp_path, no_stray_processes):
    run = start(tmp_path)
    with open(tmp_path / "data" / "run.json") as f:
        run_dir = json.load(f)["run_dir"]
    killed = set()
    while run.poll() is None and len(killed) < 10:  # the root tolerates 3 restarts in 5 s
        client = ControlClient(zmq.Context.instance(), control_endpoint(run_dir, "root/messenger_out"), 2.0)
        try:
            pid = client.call("status")["pid"]
        except ControlError:
            continue  # being restarted, or the network is gone
        finally:
            client.close()
        if pid not in killed:
            os.kill(pid, signal.SIGKILL)
            killed.add(pid)
    out, _ = run.communicate(timeout=90)
    assert run.returncode == 1 and 4 <= len(killed), (killed, out)
    assert out.splitlines()[-1] == ("neurox run: the network died: root gave up: 4 restarts in 5.0 s, over its "
                                    "restart intensity of 3"), out
    assert "Traceback" not in out


def test_why_a_network_died_in_one_line():
    gave_up = {"source": "root", "restarts": 4, "period": 5.0, "intensity": 3}
    assert why_it_died(ExitReason("shutdown", code=64), gave_up) == \
        "root gave up: 4 restarts in 5.0 s, over its restart intensity of 3"
    assert why_it_died(ExitReason("crash", signal=9), None) == "the root supervisor was killed (SIGKILL)"
    assert why_it_died(ExitReason("crash", code=1), None) == "the root supervisor ended (crash (exit code 1))"
