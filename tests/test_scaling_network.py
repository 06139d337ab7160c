"""Scaling and targets in a real network: non-finite requests refused at MessengerIn by a plain ZeroMQ
client, a regression stream with targets in the thousands, scaling that travels with the network
(``ask --vector`` in the user's units, the statistics surviving a restart), ``ask --random``."""
import json
import os
import signal
import subprocess
import sys
import time

import msgpack
import numpy as np
import plyvel
import pytest
import zmq

from _netutil import learn, neuron_call, params, running_network
from neurox.ext import Dataset, Client, digits
from neurox.ext._front import feed_endpoint
from neurox.neuron import INPUT, encode_forward, load_topology
from neurox.runtime import ControlClient, pack
from neurox.supervisor_tree import control_endpoint


def control(network, path: str, op: str):
    client = ControlClient(zmq.Context.instance(), control_endpoint(network.run_dir, path), 5.0)
    try:
        return client.call(op)
    finally:
        client.close()


def pids(network) -> dict:
    found = {n: neuron_call(network, n, "status")["pid"] for n in network.topology.neurons()}
    found.update({p: control(network, f"root/{p}", "status")["pid"] for p in ("messenger_in", "messenger_out")})
    return found


@pytest.mark.timeout(60)
def test_nan_and_inf_from_a_plain_zeromq_client_are_refused_and_nothing_restarts(tmp_path, no_stray_processes):
    with running_network(load_topology(), tmp_path) as network:
        before = pids(network)
        sock = zmq.Context.instance().socket(zmq.REQ)
        sock.setsockopt(zmq.LINGER, 0)
        sock.connect(network.messenger_in)
        vector = digits().features[3].tolist()
        bad = [("nan", vector[:10] + [float("nan")] + vector[11:]), ("inf", [float("inf")] + vector[1:]),
               ("bytes", np.array([np.nan] + vector[1:], dtype="<f4").tobytes()), ("huge", [1e39] + vector[1:])]
        for name, values in bad:
            sock.send(msgpack.packb({"message_hash_id": name, "vector": values}))
            assert sock.poll(5000)
            reply = msgpack.unpackb(sock.recv())
            assert reply["message_hash_id"] == name and not reply["ok"] and reply["error"] == "non_finite", reply
        feed = zmq.Context.instance().socket(zmq.PUSH)  # what a third-party origin could push at the feed
        feed.setsockopt(zmq.LINGER, 5000)  # closed right after sending: let the frames go first
        feed.connect(feed_endpoint(network.run_dir))
        rows = np.array([vector], dtype="<f4")
        garbage = [b"\xc1 not msgpack", msgpack.packb([0, "input", [1], [1], b"\0" * 12, [True], [b""]]),
                   encode_forward("L3.n0", [2], [rows], [False], [pack({})]),
                   encode_forward(INPUT, [3], [rows * np.float32("nan")], [False], [pack({})]),
                   encode_forward(INPUT, [4], [rows], [True], [b"\x93 not a map"])]
        for frame in garbage:
            feed.send(frame)
        feed.close()
        sock.send(msgpack.packb({"message_hash_id": "good", "vector": vector}))
        assert sock.poll(5000)
        reply = msgpack.unpackb(sock.recv())
        assert reply["ok"] and reply["message_hash_id"] == "good" and len(reply["output"]) == 10
        assert set(reply["probabilities"]) == {str(d) for d in range(10)}
        deadline = time.monotonic() + 10  # the feed's frames and the requests come on different sockets
        while (metrics := control(network, "root/messenger_in", "metrics"))["bad_frames"] < 5:
            assert time.monotonic() < deadline, metrics
            time.sleep(0.05)
        sock.close()
        assert pids(network) == before, "every process keeps its pid"
    assert metrics["non_finite"] == 5 and metrics["errors"] == 4 and metrics["replied"] == 1, metrics
    assert metrics["bad_frames"] == 5 and metrics["forwarded"] == 0, metrics  # 4 bad frames and the NaN packet


@pytest.mark.timeout(240)
def test_a_regression_stream_with_targets_in_the_thousands_learns_with_finite_weights(tmp_path, no_stray_processes):
    rng = np.random.default_rng(3)
    x = rng.normal(0, 1, (600, 6)) * [1, 10, 100, 0.1, 1000, 5] + [0, 50, -300, 2, 1e4, 0]
    signal_ = np.tanh((x - x.mean(axis=0)) / x.std(axis=0)) @ [1.0, -2.0, 1.5, 0.5, 1.0, -1.0]
    y = (2500.0 + 800.0 * signal_).reshape(-1, 1).astype(np.float32)
    data = Dataset(x.astype(np.float32), y, None, "a test")
    topology = load_topology().fit_to_data(6, 1, classification=False)
    with running_network(topology, tmp_path) as network:
        before = pids(network)
        first = learn(network, data, epochs=1, window=2)
        later = learn(network, data, epochs=4, window=2)
        weights = [params(network, n) for n in network.topology.neurons()]
        assert pids(network) == before, "no neuron was restarted"
        scaling = control(network, "root/messenger_in", "scaling")
    spread = float(y.std())
    assert all(np.all(np.isfinite(w)) and np.all(np.isfinite(b)) for w, b in weights)
    assert first.answered == 600 and later.answered == 2400 and first.lost == later.lost == 0
    assert later.rolling_rmse < 0.5 * first.rmse and later.rolling_rmse < 0.35 * spread, (first, later, spread)
    assert later.mae < later.rmse * 1.01
    assert scaling["task"] == "regression" and scaling["targets"]["count"] == 3000
    assert scaling["targets"]["mean"][0] == pytest.approx(float(y.mean()), rel=1e-3)


def neurox(*args, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "neurox.cli", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, **kwargs)


def wait_until_up(run: subprocess.Popen) -> list[str]:
    lines = []
    for line in run.stdout:
        lines.append(line)
        if line.startswith("up in"):
            return lines
    raise AssertionError(f"neurox run ended before it was up: {lines}")


def saved_scaling(data_dir) -> dict:
    db = plyvel.DB(os.path.join(data_dir, "scaling"))
    try:
        return msgpack.unpackb(db.get(b"inputs"))
    finally:
        db.close()


@pytest.mark.timeout(400)
def test_scaling_travels_with_the_network_ask_takes_user_units_and_the_state_survives_a_restart(
        tmp_path, no_stray_processes):
    data = digits()
    big = data.features * 16.0 * 1000.0 + 50.0  # the digits in other units: 50 .. 16,050
    path = tmp_path / "digits_big.csv"
    np.savetxt(path, np.column_stack([big, data.targets]), delimiter=",", fmt="%.6g",
               header=",".join(f"p{i}" for i in range(64)) + ",digit", comments="")
    data_dir = tmp_path / "data"
    first = neurox("run", "--data", str(path), "--data-dir", str(data_dir), "--epochs", "2", "--no-service")
    out, _ = first.communicate(timeout=300)
    assert first.returncode == 0 and out.splitlines()[-1] == "stopped" and "Traceback" not in out, out
    assert "task: classification (the target holds 10 distinct whole numbers: 10 classes" in out
    stream_accuracy = float(out.splitlines()[-3].split("(last 1000: ")[1].split(")")[0])
    saved = saved_scaling(data_dir)
    assert saved["count"] == 2 * 1797 and np.asarray(saved["mean"]).max() > 5000

    again = neurox("run", "--data", str(path), "--data-dir", str(data_dir), "--rate", "0.001", "--no-service")
    try:
        wait_until_up(again)
        probe = subprocess.run([sys.executable, "-m", "neurox.cli", "probe", "state", "scaling", "--data-dir",
                                str(data_dir)], capture_output=True, text=True, timeout=60)
        state = json.loads(probe.stdout)
        assert state["inputs"]["count"] in (saved["count"], saved["count"] + 1)  # --rate: at most one more sample
        np.testing.assert_allclose(state["inputs"]["mean"], saved["mean"], rtol=1e-3, atol=1e-3)
        with open(data_dir / "run.json") as f:
            client = Client(json.load(f)["messenger_in"])
        rows = np.random.default_rng(0).choice(1797, 200, replace=False)
        try:
            raw = np.mean([client.ask(vector=big[i].tolist())["label"] == data.targets[i] for i in rows])
            unscaled = np.mean([client.ask(vector=data.features[i].tolist())["label"] == data.targets[i] for i in rows])
        finally:
            client.close()
        asked = subprocess.run([sys.executable, "-m", "neurox.cli", "ask", "--data-dir", str(data_dir), "--vector",
                                ",".join(f"{v:g}" for v in big[rows[0]])], capture_output=True, text=True, timeout=60)
        reply = json.loads(asked.stdout.splitlines()[-1])
    finally:
        again.send_signal(signal.SIGTERM)
        rest, _ = again.communicate(timeout=120)
    assert again.returncode == 0 and rest.splitlines()[-1] == "stopped", rest
    assert raw >= min(0.75, stream_accuracy - 0.1), (raw, stream_accuracy)  # raw rows, the user's units: as learnt
    assert unscaled < 0.5, unscaled  # the same digits in other units are not what it learnt
    assert asked.returncode == 0 and reply["ok"] and asked.stdout.startswith("class '")
    assert sorted(reply["probabilities"]) == [str(d) for d in range(10)]


@pytest.mark.timeout(180)
def test_ask_random_draws_a_row_of_the_dataset_the_network_learns(tmp_path, no_stray_processes):
    rng = np.random.default_rng(5)
    classes = ["class_0", "class_1", "class_2"]
    target = rng.integers(0, 3, 178)
    features = rng.normal(target[:, None] * np.ones(13), 1.0) * 100 + 13
    path = tmp_path / "wine.csv"
    with open(path, "w") as f:
        f.write(",".join(f"f{i}" for i in range(13)) + ",cultivar\n")
        for row, t in zip(features, target):
            f.write(",".join(f"{v:.3f}" for v in row) + f",{classes[t]}\n")
    data_dir = tmp_path / "data"
    run = neurox("run", "--data", str(path), "--data-dir", str(data_dir), "--no-service")
    try:
        head = "".join(wait_until_up(run))
        asked = subprocess.run([sys.executable, "-m", "neurox.cli", "ask", "--random", "--data-dir", str(data_dir)],
                               capture_output=True, text=True, timeout=60)
    finally:
        run.send_signal(signal.SIGTERM)
        rest, _ = run.communicate(timeout=120)
    assert "178 rows x 13 features; task: classification (the target holds text: 3 classes" in head, head
    lines = asked.stdout.splitlines()
    assert asked.returncode == 0 and len(lines) == 3, asked
    assert lines[0].startswith("sample ") and f"of {path}: 13 features, true class 'class_" in lines[0]
    assert lines[1].startswith("class 'class_") and "probabilities: class_" in lines[1]
    assert sorted(json.loads(lines[2])["probabilities"]) == classes
    assert run.returncode == 0 and rest.splitlines()[-1] == "stopped", rest
    nothing = subprocess.run([sys.executable, "-m", "neurox.cli", "ask", "--random", "--endpoint", "ipc:///nowhere"],
                             capture_output=True, text=True, timeout=60)
    assert nothing.returncode == 2 and "learns from no dataset that --random could draw from" in nothing.stdout
