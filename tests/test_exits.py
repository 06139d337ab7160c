"""Exits that mean what they say, beyond test_run_exit: the launcher killed under `neurox run`, and a start on
a full disk: one line each, the documented status, nothing left behind."""
import json
import os
import signal
import subprocess
import sys
import time

import psutil
import pytest

PROJECT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))


def start_run(data_dir, *args) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": PROJECT}
    return subprocess.Popen([sys.executable, "-m", "neurox.cli", "run", "--data-dir", str(data_dir), "--no-service",
                             *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def wait_up(proc: subprocess.Popen, data_dir, timeout: float = 60.0) -> dict:
    """run.json, once the network is up (written after every process said it was ready)."""
    deadline = time.monotonic() + timeout
    path = os.path.join(data_dir, "run.json")
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        if os.path.exists(path):
            with open(path) as f:
                return json.load(f)
        time.sleep(0.05)
    raise AssertionError("the network did not come up")


def tree_of(pid: int) -> list[psutil.Process]:
    return psutil.Process(pid).children(recursive=True)


def finish(proc: subprocess.Popen, timeout: float = 60.0) -> tuple[int, str, str]:
    try:
        out, err = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    return proc.returncode, out, err


def assert_gone(processes: list[psutil.Process]) -> None:
    _, alive = psutil.wait_procs(processes, timeout=10)
    left = [p for p in alive if p.status() != psutil.STATUS_ZOMBIE]
    for p in left:
        p.kill()
    assert not left, f"orphans: {[(p.pid, p.name()) for p in left]}"


@pytest.mark.timeout(120)
def test_the_launcher_killed_is_one_line_a_failure_exit_and_no_orphan(tmp_path):
    """The launcher's death is the host tree's death on purpose (docs/supervision.md): no traceback from
    the children that find it gone, one line, status 1. (The root's death and polite stops: test_run_exit.)"""
    proc = start_run(tmp_path, "--duration", "60")
    try:
        wait_up(proc, tmp_path)
        processes = tree_of(proc.pid)
        (launcher,) = [p for p in processes if p.name() == "nx-launcher"]
        launcher.send_signal(signal.SIGKILL)
        code, out, err = finish(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert code == 1, (code, out, err)
    assert "Traceback" not in err and "Traceback" not in out, err
    assert out.strip().splitlines()[-1] == ("neurox run: the network died: the launcher (fork server) died (crash "
                                            "(signal SIGKILL)); every process of the network died with it"), out
    assert_gone(processes)


@pytest.mark.timeout(120)
def test_starting_on_a_full_disk_is_one_line_and_exit_2(tmp_path):
    mount = tmp_path / "small"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)], check=True, timeout=30)
    try:
        (mount / "net").mkdir()
        with open(mount / "filler", "wb") as f:
            with pytest.raises(OSError):
                while True:
                    f.write(b"\0" * 65536)
                    f.flush()
        proc = start_run(mount / "net", "--duration", "5")
        code, out, err = finish(proc)
        assert code == 2, (code, out, err)
        lines = out.strip().splitlines()
        assert len(lines) == 1 and "free" in lines[0] and str(mount / "net") in lines[0], out
        assert "Traceback" not in err, err
    finally:
        subprocess.run(["umount", "-l", str(mount)], timeout=30)
