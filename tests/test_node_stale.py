"""A `neurox node` that crashed leaves its sockets and tcp.json in its run directory; the next start removes
them (and only them), and refuses to start where a network still runs (neurox/cli/_run_dir.py)."""
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys

import psutil
import pytest
import zmq

from neurox.cli._run_dir import clear_stale_run_dir, stale_entries
from neurox.cli import main
from neurox.runtime import call


def bound_socket(path) -> None:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(path))
    sock.close()  # the file stays, as a crashed process leaves it


def test_only_sockets_and_tcp_json_are_removed(tmp_path):
    run = tmp_path / "run"
    (run / "pool").mkdir(parents=True)
    for name in ("root.ctl", "L0.n0.in", "pool/L0.n0.in", "launcher.sock"):
        bound_socket(run / name)
    (run / "tcp.json").write_text("{}")
    (run / "notes.txt").write_text("mine")
    (run / "pool" / "tcp.json").write_text("not the plan: only the top one is")
    assert [os.path.relpath(p, run) for p in stale_entries(str(run))] == \
        ["L0.n0.in", "launcher.sock", "pool/L0.n0.in", "root.ctl", "tcp.json"]
    assert len(clear_stale_run_dir(str(run))) == 5
    assert sorted(os.listdir(run)) == ["notes.txt", "pool"] and os.listdir(run / "pool") == ["tcp.json"]
    assert clear_stale_run_dir(None) == [] and clear_stale_run_dir(str(tmp_path / "missing")) == []


def write_node(tmp_path) -> tuple[str, str]:
    """A one-host network with [hosts] (so it writes tcp.json), its keys and config; (config, run_dir)."""
    port = random.randrange(20000, 32700, 100)  # below the kernel's ephemeral ports
    layers = "".join(f'[[layer]]\nname = "L{i}"\nneurons = {n}\nhost = "h1"\n' for i, n in enumerate((1, 2, 1)))
    (tmp_path / "topology.toml").write_text(f'name = "one"\ninput_width = 4\n[defaults]\nunits = 2\n'
                                            f'[hosts]\nh1 = "127.0.0.1:{port}"\n{layers}')
    assert main(["keys", "--dir", str(tmp_path / "keys"), "h1"]) == 0  # it makes allowed/ too
    shutil.copy(tmp_path / "keys" / "h1.key", tmp_path / "keys" / "allowed" / "h1.key")
    run_dir = str(tmp_path / "run")
    (tmp_path / "node.toml").write_text(f'name = "one"\ndata_dir = "data"\ntopology = "topology.toml"\n'
                                        f'run_dir = "{run_dir}"\nhost = "h1"\nkeys_dir = "keys"\n'
                                        f'[service]\nenabled = false\n')
    return str(tmp_path / "node.toml"), run_dir


def start(config: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "neurox.cli", "node", "--config", config],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def wait_up(proc: subprocess.Popen, lines: list[str]) -> None:
    for line in proc.stdout:
        lines.append(line)
        if ": up;" in line:
            return
    raise AssertionError("the node did not come up:\n" + "".join(lines))


@pytest.mark.timeout(120)
def test_a_crashed_nodes_leftovers_are_removed_at_its_next_start(tmp_path, no_stray_processes):
    config, run_dir = write_node(tmp_path)
    first = start(config)
    try:
        wait_up(first, [])
        assert os.path.exists(os.path.join(run_dir, "tcp.json"))
        # a second node on the same run directory is refused, and takes nothing from the first
        second = subprocess.run([sys.executable, "-m", "neurox.cli", "node", "--config", config],
                                capture_output=True, text=True, timeout=60)
        assert second.returncode == 2 and "is in use" in second.stdout, second.stdout
        assert call(zmq.Context.instance(), f"ipc://{run_dir}/root.ctl", "ping", timeout=5.0) == "pong"
        # the agent crashes: its tree goes with it, its sockets and tcp.json stay
        tree = psutil.Process(first.pid).children(recursive=True)
        first.send_signal(signal.SIGKILL)
        first.wait(30)
        psutil.wait_procs(tree, timeout=30)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait(30)
        first.stdout.close()
    left = stale_entries(run_dir)
    assert os.path.join(run_dir, "tcp.json") in left and os.path.join(run_dir, "root.ctl") in left
    before = os.stat(os.path.join(run_dir, "tcp.json")).st_mtime_ns
    again = start(config)
    lines: list[str] = []
    try:
        wait_up(again, lines)
        assert any(f"removed {len(left)} sockets and files a previous run left in {run_dir}" in line for line in lines)
        assert os.stat(os.path.join(run_dir, "tcp.json")).st_mtime_ns != before, "a fresh tcp.json"
        with open(os.path.join(run_dir, "tcp.json")) as f:
            assert json.load(f)["host"] == "h1"
        assert call(zmq.Context.instance(), f"ipc://{run_dir}/root.ctl", "ping", timeout=5.0) == "pong"
    finally:
        again.send_signal(signal.SIGTERM)
        again.wait(60)
        again.stdout.close()
    assert again.returncode == 0
