"""`neurox --help` and a probe start without importing what they do not use (lazy imports), and the one line
of help each subcommand has in `neurox --help` is what its module registers."""
import argparse
import importlib
import os
import subprocess
import sys
import time

import pytest

from _netutil import running_network
from neurox.cli import SUBCOMMANDS, parser_for
from neurox.cli._discovery import write_run_file
from neurox.neuron import load_topology

HEAVY = ("numpy", "textual", "prometheus_client", "neurox.neuron", "neurox.ops", "neurox.ext", "plyvel", "PIL")


def imported(argv: list[str], **kwargs) -> tuple[subprocess.CompletedProcess, set[str]]:
    """Run ``python -X importtime -m neurox.cli ARGV``; its result and every module it imported."""
    done = subprocess.run([sys.executable, "-X", "importtime", "-m", "neurox.cli", *argv], capture_output=True,
                          text=True, timeout=60, **kwargs)
    modules = {line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines() if line.startswith("import time:")}
    return done, modules


def test_help_imports_no_subcommand():
    started = time.perf_counter()
    done, modules = imported(["--help"])
    elapsed = time.perf_counter() - started
    assert done.returncode == 0 and all(name in done.stdout for name in SUBCOMMANDS)
    loaded = sorted(m for m in modules if m.split(".")[0] in ("zmq", "msgpack") or m.startswith(HEAVY))
    assert not loaded, f"`neurox --help` imported {loaded} ({elapsed:.2f} s)"
    assert not [m for m in modules if m.startswith("neurox.cli._")], "no subcommand module for --help"


@pytest.mark.timeout(90)
def test_a_probe_answers_without_numpy_or_the_neuron_package(tmp_path):
    with running_network(load_topology(), tmp_path) as network:
        write_run_file(network)
        done, modules = imported(["probe", "ping", "root", "--data-dir", str(tmp_path)])
        assert done.returncode == 0 and done.stdout.startswith("pong from root in "), done.stdout + done.stderr
        loaded = sorted(m for m in modules if m.startswith(HEAVY))
        assert not loaded, f"`neurox probe ping root` imported {loaded}"
        done = subprocess.run([sys.executable, "-m", "neurox.cli", "probe", "ping", "L2.n0", "--data-dir", str(tmp_path)],
                              capture_output=True, text=True, timeout=60)
        assert done.stdout.startswith("pong from L2.n0 in "), "a neuron's endpoint still found through the topology"
        out = tmp_path / "now.toml"
        done = subprocess.run([sys.executable, "-m", "neurox.cli", "topology", "export", "-o", str(out), "--data-dir",
                               str(tmp_path)], capture_output=True, text=True, timeout=60)
        assert done.stdout.startswith(f"wrote the live topology (TOML, {out.stat().st_size:,} bytes) to {out}")
        assert load_topology(str(out)).neurons() == network.topology.neurons()


def test_each_subcommands_line_of_help_is_what_its_module_registers():
    for name, (module, text) in SUBCOMMANDS.items():
        sub = argparse.ArgumentParser().add_subparsers()
        importlib.import_module(module).register(sub)
        registered = {action.dest: action.help for action in sub._choices_actions}
        assert registered.get(name) == text, f"{name}: {module} registers {registered.get(name)!r}"
    assert parser_for(["probe", "ping"]).parse_args(["probe", "ping"]).target == "root"
    assert set(parser_for([])._subparsers._group_actions[0].choices) == set(SUBCOMMANDS)


def test_no_environment_is_needed_for_help():
    done = subprocess.run([sys.executable, "-m", "neurox.cli", "probe", "--help"], capture_output=True, text=True,
                          timeout=60, env={k: v for k, v in os.environ.items() if k in ("PATH", "PYTHONPATH", "HOME")})
    assert done.returncode == 0 and "tap" in done.stdout and "inject" in done.stdout


@pytest.mark.timeout(30)
@pytest.mark.parametrize("argv, data_dir, remote", [
    (["reshape", "add-neuron", "L2"], "neurox-data", None),
    (["reshape", "--data-dir", "d1", "add-neuron", "L2"], "d1", None),
    (["reshape", "add-neuron", "L2", "--data-dir", "d2"], "d2", None),  # as `neurox probe` takes them
    (["reshape", "--data-dir", "d1", "pause", "--data-dir", "d2"], "d2", None),
    (["reshape", "widen", "L2", "24", "--remote", "tcp://10.0.0.1:7605", "--server", "h1"], "neurox-data",
     "tcp://10.0.0.1:7605"),
])
def test_the_networks_options_go_before_or_after_a_reshape_op(argv, data_dir, remote):
    args = parser_for(argv).parse_args(argv)
    assert (args.data_dir, args.endpoint, args.remote, args.key_name) == (data_dir, None, remote, "admin")
