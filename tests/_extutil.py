"""Helpers for the extension tests (tests/test_ext_*.py): a real network with extensions from its
topology, their control sockets, digit images on disk, JSON lines read back."""
from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import zmq
from PIL import Image

from neurox.ext import PRELOAD, digits, network_children
from neurox.neuron import Network, Topology, load_topology
from neurox.runtime import call
from neurox.supervisor_tree import control_endpoint


@contextlib.contextmanager
def network_with(tmp_path, extensions: list[dict], topology: Topology | None = None):
    """The diamond (or ``topology``) with these ``[[extension]]`` lines, started; stopped on the way out."""
    topology = topology or load_topology()
    topology.extensions = [dict(e) for e in extensions]
    data_dir = str(tmp_path / "net")
    network = Network(topology, data_dir, extensions=network_children(topology, data_dir), preload=PRELOAD)
    network.start()
    try:
        yield network
    finally:
        network.stop()


STDIN_NETWORK = r"""
import json, signal, sys, threading
from neurox.ext import PRELOAD, network_children
from neurox.neuron import Network, load_topology
topology = load_topology()
topology.extensions = json.loads(sys.argv[2])
network = Network(topology, sys.argv[1], extensions=network_children(topology, sys.argv[1]), preload=PRELOAD)
stop = threading.Event()
signal.signal(signal.SIGTERM, lambda *_: stop.set())
network.start()
print(network.run_dir, flush=True)
stop.wait()
network.stop()
"""


@contextlib.contextmanager
def network_on_stdin(tmp_path, extensions: list[dict]):
    """The diamond with these extensions, started by a child process whose standard input -- and so
    the launcher's and every network process's -- is a pipe from this test: (that pipe, run_dir).
    Stopped politely on the way out."""
    with subprocess.Popen([sys.executable, "-c", STDIN_NETWORK, str(tmp_path / "net"), json.dumps(extensions)],
                          stdin=subprocess.PIPE, stdout=subprocess.PIPE) as proc:
        try:
            run_dir = proc.stdout.readline().decode().strip()  # up
            yield proc.stdin, run_dir
        finally:
            if not proc.stdin.closed:
                proc.stdin.close()
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(30) == 0


def ext_call(network: Network | str, name: str, op: str = "metrics", timeout: float = 5.0):
    """``op`` on extension ``name``'s control socket (``network``: a Network or its run directory)."""
    run_dir = network if isinstance(network, str) else network.run_dir
    return call(zmq.Context.instance(), control_endpoint(run_dir, f"root/{name}"), op, timeout=timeout)


def wait_until(check, timeout: float = 20.0, what: str = "the condition"):
    """Call ``check()`` until it returns something true; that value. AssertionError with the last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"waited {timeout} s for {what}; last: {value!r}")
        time.sleep(0.05)


def wait_metric(network: Network, name: str, key: str, at_least: int, timeout: float = 20.0) -> dict:
    """Wait until extension ``name``'s metric ``key`` reaches ``at_least``; its metrics then."""
    def check():
        metrics = ext_call(network, name)
        return metrics if (metrics.get(key) or 0) >= at_least else False
    try:
        return wait_until(check, timeout, f"{name}.{key} >= {at_least}")
    except AssertionError:
        raise AssertionError(f"{name}.{key} did not reach {at_least}: {ext_call(network, name, 'status')}") from None


def digit_pixels(i: int) -> np.ndarray:
    """Digit ``i`` of the bundled set as an 8x8 uint8 grey image (ink bright, as the features)."""
    return np.round(digits().features[i].reshape(8, 8) * 255.0).astype(np.uint8)


def image_bytes(pixels: np.ndarray, fmt: str) -> bytes:
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format=fmt)
    return out.getvalue()


def write_digit_images(folder, indices, by_class: bool = True) -> dict[str, int]:
    """Digits as PNG and PGM files (alternately), under a sub-directory named for their class if
    ``by_class``; {relative path: class}."""
    data = digits()
    written = {}
    for n, i in enumerate(indices):
        label = int(data.targets[i])
        rel = os.path.join(str(label), f"d{i:04d}.{'png' if n % 2 == 0 else 'pgm'}") if by_class else \
            f"d{i:04d}.{'png' if n % 2 == 0 else 'pgm'}"
        path = os.path.join(str(folder), rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        hidden = os.path.join(os.path.dirname(path), "." + os.path.basename(path))  # the eye skips dot-files
        with open(hidden, "wb") as f:
            f.write(image_bytes(digit_pixels(i), "PNG" if n % 2 == 0 else "PPM"))
        os.replace(hidden, path)  # complete when it appears
        written[rel] = label
    return written


def read_jsonl(path) -> list[dict]:
    if not os.path.exists(path):
        return []
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.endswith("\n")]
