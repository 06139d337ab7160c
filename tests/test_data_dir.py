"""`neurox run --fresh` removes only what NeuroX made, and refuses a directory that is not NeuroX's."""
import os
import subprocess
import sys

import pytest

from _netutil import running_network
from neurox.neuron import (DATA_DIR_ENTRIES as OWNED, DATA_DIR_LOCK as LOCK, DATA_DIR_MARKER as MARKER, DataDirError,
                           Network, load_topology, wipe_data_dir)

PROJECT = os.path.join(os.path.dirname(__file__), "..")


def neurox_run(data_dir, *args, timeout=90) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.path.abspath(PROJECT)}
    return subprocess.run([sys.executable, "-m", "neurox.cli", "run", "--data-dir", str(data_dir), "--no-service",
                           *args], capture_output=True, text=True, timeout=timeout, env=env)


@pytest.mark.timeout(180)
def test_fresh_keeps_a_users_file_and_removes_the_networks_state(tmp_path):
    data_dir = tmp_path / "net"
    first = neurox_run(data_dir, "--duration", "0")  # stops once up
    assert first.returncode == 0, first.stdout + first.stderr
    made = set(os.listdir(data_dir))
    assert MARKER in made and "neurons" in made
    assert made <= {MARKER, LOCK, *OWNED}, f"NeuroX wrote entries --fresh would not remove: {made - {MARKER, LOCK, *OWNED}}"
    (data_dir / "notes.txt").write_text("mine")
    (data_dir / "datasets").mkdir()
    (data_dir / "datasets" / "a.csv").write_text("x,y\n1,2\n")
    neurons_before = set(os.listdir(data_dir / "neurons"))
    for store in neurons_before:  # a mark in each store (an inode number could be reused by the new one)
        (data_dir / "neurons" / store / "old-store").write_text("")
    again = neurox_run(data_dir, "--fresh", "--duration", "0")
    assert again.returncode == 0, again.stdout + again.stderr
    assert (data_dir / "notes.txt").read_text() == "mine"
    assert (data_dir / "datasets" / "a.csv").exists()
    assert set(os.listdir(data_dir / "neurons")) == neurons_before
    assert not any((data_dir / "neurons" / store / "old-store").exists() for store in neurons_before), \
        "the neurons' stores were made anew"


@pytest.mark.timeout(60)
def test_fresh_refuses_a_directory_that_is_not_neuroxs(tmp_path):
    data_dir = tmp_path / "home"
    data_dir.mkdir()
    (data_dir / "thesis.tex").write_text("years of work")
    (data_dir / "neurons").mkdir()  # a name NeuroX uses, but not NeuroX's
    done = neurox_run(data_dir, "--fresh", "--duration", "1")
    assert done.returncode == 2, done.stdout + done.stderr
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    assert len(lines) == 1 and "not a NeuroX data directory" in lines[0] and "nothing deleted" in lines[0], done.stdout
    assert "Traceback" not in done.stderr
    assert sorted(os.listdir(data_dir)) == ["neurons", "thesis.tex"]


@pytest.mark.timeout(90)
def test_one_network_at_a_time_runs_from_a_data_directory(tmp_path):
    """A second network on a directory a network runs from is refused before it writes anything there (its
    neurons could not open their stores, and its live topology and run file would take the first's place);
    so is a fresh start; once the first has stopped, the directory is free again."""
    with running_network(load_topology(), tmp_path) as network:
        topology_before = (tmp_path / "topology.json").read_bytes()
        with pytest.raises(DataDirError, match=f"in use: a network runs from it \\(process {os.getpid()}\\)"):
            Network(load_topology(), str(tmp_path))
        with pytest.raises(DataDirError, match="in use"):
            wipe_data_dir(str(tmp_path))
        second = neurox_run(tmp_path, "--duration", "0", timeout=60)  # the user's `neurox run`, a second time
        assert second.returncode == 2 and "is in use" in second.stdout, second.stdout + second.stderr
        assert "Traceback" not in second.stderr
        assert (tmp_path / "topology.json").read_bytes() == topology_before and network.tree.alive
    again = Network(load_topology(), str(tmp_path))  # free again
    again.hold.release()
