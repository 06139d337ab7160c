"""CPU time of processes, read to the nanosecond from ``/proc/PID/task/*/schedstat``.

``/proc/PID/stat``'s clock-tick counts (what ``psutil``'s ``cpu_times`` gives) miss most of a neuron's short
bursts -- about two thirds of them when ``bench scale`` compared the two -- so the benchmarks that say
what CPU a network spends read the scheduler's own figure instead.
"""
from __future__ import annotations

import os

import psutil


def process_cpu_s(pid: int) -> float:
    """CPU seconds process ``pid`` has run so far, every thread of it; OSError if it is gone."""
    total_ns = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/schedstat") as f:
                total_ns += int(f.read().split()[0])
        except FileNotFoundError:  # a thread gone meanwhile
            continue
    return total_ns / 1e9


def children_cpu() -> dict[int, tuple[str, float]]:
    """Each process this one started (and theirs): its name and :func:`process_cpu_s`."""
    out = {}
    for child in psutil.Process().children(recursive=True):
        try:
            out[child.pid] = (child.name(), process_cpu_s(child.pid))
        except (OSError, psutil.Error):  # gone meanwhile
            continue
    return out


def cpu_per_request(before: dict, after: dict, requests: int) -> dict[str, float]:
    """Microseconds of CPU per request between two :func:`children_cpu` snapshots, summed by process name
    (the processes present in both)."""
    out: dict[str, float] = {}
    for pid, (name, seconds) in after.items():
        if pid in before:
            out[name] = out.get(name, 0.0) + (seconds - before[pid][1]) * 1e6 / requests
    return out
