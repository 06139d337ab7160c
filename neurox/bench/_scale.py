"""a thousand neuron processes on one host: start time (and its ratio to a reference network's start in the
same run), PSS per neuron, learning rate, stop time"""
from __future__ import annotations

import argparse
import os
import shutil
import signal
import tempfile
import time

import numpy as np
import plyvel
import psutil
import zmq

from ..ext import PRELOAD, Dataset, Stream, messenger_children
from ..neuron import Network, parse_topology
from ..runtime import LauncherClient, ipc_endpoint, make_socket, notify_ready, run_base, start_launcher
from ._cpu import process_cpu_s

BARE_TARGET = "neurox.bench._scale:run_bare_child"
FORK_TARGET = "neurox.bench._scale:run_forked_child"


START_S_PER_NEURON = 0.1
"""The bound on the start (Tree.start's timeout): generous, for a loaded machine; never below 60 s."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--neurons", type=int, default=1000, help="total neurons (default: %(default)s)")
    parser.add_argument("--layers", type=int, default=10, help="inner layers (default: %(default)s)")
    parser.add_argument("--fan-out", type=int, default=3, help="links from each neuron to the next layer")
    parser.add_argument("--units", type=int, default=4, help="units per neuron (default: %(default)s)")
    parser.add_argument("--learn-seconds", type=float, default=20.0)
    parser.add_argument("--reference-neurons", type=int, default=1000,
                        help="also start (and stop) a network of this many, for start_ratio_vs_N (default: "
                             "%(default)s; 0: no reference; the same as --neurons: no second start)")


def sparse_topology(neurons: int, layers: int, fan_out: int, units: int, width: int = 16, classes: int = 4):
    """1 start neuron, ``layers`` inner layers sharing the rest, 1 end neuron; each neuron linked to
    ``fan_out`` neighbours of the next layer (and every neuron fed by at least one)."""
    inner = neurons - 2
    sizes = [inner // layers + (1 if i < inner % layers else 0) for i in range(layers)]
    layer_docs = [{"name": "L0", "neurons": 1}] + [{"name": f"L{i + 1}", "neurons": n} for i, n in enumerate(sizes)]
    layer_docs.append({"name": f"L{layers + 1}", "neurons": 1, "units": classes, "activation": "softmax"})
    links = [("L0.n0", f"L1.n{j}") for j in range(sizes[0])]
    for i in range(1, layers):
        upper, lower = sizes[i - 1], sizes[i]
        pairs = {(a, (a + k) % lower) for a in range(upper) for k in range(fan_out)}
        pairs |= {(b % upper, b) for b in range(lower)}
        links += [(f"L{i}.n{a}", f"L{i + 1}.n{b}") for a, b in sorted(pairs)]
    links += [(f"L{layers}.n{j}", f"L{layers + 1}.n0") for j in range(sizes[-1])]
    return parse_topology({"name": "scale", "input_width": width,
                           "defaults": {"units": units, "join_timeout_ms": 500},
                           "supervision": {"intensity": 50, "period_s": 5.0},
                           "output": {"decode": "label"}, "layer": layer_docs,
                           "link": [{"from": a, "to": b} for a, b in links]})


def run_bare_child(args: dict, env: dict) -> None:
    """The baseline: a forked child holding a zmq context, a bound PULL and an open LevelDB, idle."""
    ctx = zmq.Context()
    sock = make_socket(ctx, zmq.PULL, bind=args["endpoint"])
    db = plyvel.DB(args["db"], create_if_missing=True)
    notify_ready({})
    sock.recv()  # forever, until killed
    db.close()


def run_forked_child(args: dict, env: dict) -> None:
    """The fork floor: a forked child that only says it is ready, then waits to be killed."""
    notify_ready({})
    signal.pause()


def _machine_cpu_s() -> float:
    """CPU seconds every core of this machine has spent busy since boot (everyone's, not only ours)."""
    with open("/proc/stat") as f:
        user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in f.readline().split()[1:9])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def _tree_cpu_s(launcher_pid: int) -> float:
    """CPU seconds used so far by the launcher and every process it forked that is still running, every
    thread of each (``_cpu.process_cpu_s``)."""
    launcher = psutil.Process(launcher_pid)
    total = 0.0
    for proc in (launcher, *launcher.children()):
        try:
            total += process_cpu_s(proc.pid)
        except (OSError, psutil.Error):
            pass  # gone meanwhile
    return total


def _names(procs) -> list[tuple[int, str]]:
    """``(pid, name)`` of each process still there (a spare the launcher retires can go meanwhile)."""
    return [(pid, name) for pid, name in ((p.pid, _asked(p.name)) for p in procs) if name is not None]


def _statuses(procs) -> list[tuple[int, str]]:
    """``(pid, status)`` of each process still there."""
    return [(pid, status) for pid, status in ((p.pid, _asked(p.status)) for p in procs) if status is not None]


def _asked(question):
    try:
        return question()
    except psutil.Error:
        return None


def _pss_mib(pids) -> list[float]:
    out = []
    for pid in pids:
        try:
            out.append(psutil.Process(pid).memory_full_info().pss / 2 ** 20)
        except psutil.Error:
            pass
    return out


def bare_baseline(count: int, target: str = BARE_TARGET) -> tuple[float, float]:
    """Start ``count`` bare children (see :func:`run_bare_child`, or :func:`run_forked_child` for the
    fork floor) from a fresh launcher: the seconds until all are ready -- the floor of starting that
    many processes on this machine -- and their mean PSS in MiB."""
    run_dir = tempfile.mkdtemp(prefix="nx-bare-", dir=run_base())  # as a network's: see run_base
    data_dir = tempfile.mkdtemp(prefix="nx-bare-", dir="/tmp")
    launcher = start_launcher(os.path.join(run_dir, "launcher.sock"), ("neurox.bench._scale",))
    client = LauncherClient(os.path.join(run_dir, "launcher.sock"))
    try:
        started = time.perf_counter()
        pids = [client.spawn(target, {"endpoint": ipc_endpoint(run_dir, f"b{i}"), "db": f"{data_dir}/db{i}"},
                             {"name": "nx:bare"}) for i in range(count)]
        ready = 0
        while ready < count:
            ready += sum(1 for n in client.events(10.0) if n["ev"] == "ready")
        return time.perf_counter() - started, float(np.mean(_pss_mib(pids)))
    finally:
        client.close()
        launcher.terminate()
        launcher.wait(30)
        shutil.rmtree(run_dir, ignore_errors=True)
        shutil.rmtree(data_dir, ignore_errors=True)


def _network(neurons: int, args: argparse.Namespace, data_dir: str) -> Network:
    topology = sparse_topology(neurons, args.layers, args.fan_out, args.units)
    return Network(topology, data_dir, extensions=messenger_children(data_dir), preload=PRELOAD)


def _start(network: Network, neurons: int) -> float:
    started = time.perf_counter()
    network.tree.start(timeout=max(60.0, neurons * START_S_PER_NEURON))
    return time.perf_counter() - started


def reference_start_s(args: argparse.Namespace) -> float:
    """Start and stop a network of ``--reference-neurons``: its start time in this run."""
    with tempfile.TemporaryDirectory() as data_dir:
        network = _network(args.reference_neurons, args, data_dir)
        try:
            return _start(network, args.reference_neurons)
        finally:
            network.stop()


def run(args: argparse.Namespace) -> dict:
    fork_start_s, _ = bare_baseline(args.neurons, FORK_TARGET)
    print(f"fork floor: {args.neurons} forked children that only say they are ready, up in {fork_start_s:.1f} s",
          flush=True)
    bare_start_s, bare = bare_baseline(args.neurons)
    print(f"baseline: {args.neurons} bare forked children (zmq + PULL + LevelDB each) up in {bare_start_s:.1f} s, "
          f"{bare:.2f} MiB PSS each", flush=True)
    rng = np.random.default_rng(0)
    data = Dataset(rng.random((2048, 16), dtype=np.float32), rng.integers(0, 4, 2048), [str(i) for i in range(4)])
    with tempfile.TemporaryDirectory() as data_dir:
        network = _network(args.neurons, args, data_dir)
        machine_before = _machine_cpu_s()
        start_s = _start(network, args.neurons)
        machine_s, tree_s = _machine_cpu_s() - machine_before, _tree_cpu_s(network.tree.launcher_proc.pid)
        print(f"{args.neurons} neurons up in {start_s:.1f} s; the tree used {tree_s:.1f} CPU s of the {machine_s:.1f} "
              f"the machine's {os.cpu_count()} cores did meanwhile", flush=True)
        try:
            children = psutil.Process(network.tree.launcher_proc.pid).children()
            neuron_pids = [pid for pid, name in _names(children) if name.startswith("nx:L") and "." in name]
            pss = _pss_mib(neuron_pids)
            stream = Stream(zmq.Context.instance(), network.run_dir, network.topology, data, window=8, batch=8,
                            packet_timeout_s=30.0)  # a thousand processes on two cores: seconds a sample
            deadline = time.monotonic() + args.learn_seconds
            progress = stream.run(10 ** 6, should_stop=lambda: time.monotonic() > deadline)
            stream.close()
        finally:
            stopped = time.perf_counter()
            network.stop()
            stop_s = time.perf_counter() - stopped
        left = [pid for pid, status in _statuses(children) if status != psutil.STATUS_ZOMBIE]
    reference = {}
    if args.reference_neurons > 0:
        ref_s = start_s if args.reference_neurons == args.neurons else reference_start_s(args)
        print(f"reference: {args.reference_neurons} neurons up in {ref_s:.1f} s", flush=True)
        reference = {"reference_start_s": round(ref_s, 2),
                     f"start_ratio_vs_{args.reference_neurons}": round(start_s / ref_s, 3)}
    return {**reference, "neurons": len(neuron_pids), "start_s": round(start_s, 2), "baseline_start_s": round(bare_start_s, 2),
            "start_ratio": round(start_s / bare_start_s, 3), "fork_floor_s": round(fork_start_s, 2),
            "start_cpu_s": round(tree_s, 1), "machine_cpu_s": round(machine_s, 1), "pss_mib_per_neuron": round(float(np.mean(pss)), 2),
            "baseline_pss_mib": round(bare, 2), "pss_ratio": round(float(np.mean(pss)) / bare, 3),
            "samples_per_s": round(progress.samples_per_s, 1), "lost": progress.lost, "stop_s": round(stop_s, 2),
            "left_running": len(left)}
