"""Maintenance and dreaming: the rotation and the reservoir (pure); a whole cycle in seconds on a live
network that dreams in its pool of twins and keeps answering every request, with the flush interval
following the state; and an educational dataset that teaches a network in its sleep."""
import os
import threading
import time

import numpy as np
import pytest
import zmq

from _netutil import learn, neuron_call, params
from neurox.bench._chaos import evaluate
from neurox.ext import PRELOAD, Dataset, Client, Origin, digits, network_children
from neurox.neuron import Network, TopologyError, load_topology
from neurox.brain._sleep import Phase, SleepConfig, advance, balanced_victim, start, turn_groups
from neurox.brain._maintenance import Hippocampus
from neurox.ext._recall import Recall
from neurox.neuron import forget_recalled
from neurox.runtime import ControlClient, ControlError, FrameError, pack
from neurox.supervisor_tree import SupervisorClient, control_endpoint


# -- pure ------------------------------------------------------------------------------------------
def test_the_schedule_alternates_work_and_turns_of_maintenance():
    config = SleepConfig(awake_s=40, maintenance_s=20)
    phase = start(0.0, config)
    assert phase == Phase("awake", ends_at=40.0)
    assert advance(phase, 39.9, groups=4, config=config) is phase
    phase = advance(phase, 40.0, groups=4, config=config)
    assert phase == Phase("maintenance", 0, 45.0)  # 20 s shared by 4 turns
    turns = [phase.turn]
    for now in (45.0, 50.0, 55.0):
        phase = advance(phase, now, groups=4, config=config)
        turns.append(phase.turn)
    assert turns == [0, 1, 2, 3]
    assert advance(phase, 60.0, groups=4, config=config) == Phase("awake", ends_at=100.0)


def test_maintenance_asked_for_starts_at_once_and_only_from_awake():
    config = SleepConfig(awake_s=40, maintenance_s=20)
    assert advance(start(0.0, config), 1.0, groups=2, config=config, asked=True) == Phase("maintenance", 0, 11.0)
    during = Phase("maintenance", 1, 30.0)
    assert advance(during, 25.0, groups=2, config=config, asked=True) is during


def _fill(stream: list, capacity: int, seed: int = 0) -> list[tuple]:
    """What the hippocampus keeps of ``stream`` ((label, id) pairs; the id is the row)."""
    hippocampus = Hippocampus(capacity, 1, np.random.default_rng(seed))
    for label, i in stream:
        hippocampus.keep(np.array([[i]], dtype=np.float32), [label])
    return [(label, int(row[0])) for label, row in zip(hippocampus.targets, hippocampus.rows)]


def test_one_class_the_reservoir_keeps_a_uniform_sample_of_everything_seen():
    seen = 10_000
    kept = _fill([(None, i) for i in range(seen)], 100)
    assert len(kept) == 100
    assert [balanced_victim({"x": i}, "x", i, 5, 0.99) for i in range(5)] == ["add"] * 5  # filled first
    early = sum(1 for _, i in kept if i < seen // 2)
    assert 35 <= early <= 65, early  # the first half of history is still half the memory


def test_classes_keep_equal_shares_whenever_they_came_and_however_long_they_lasted():
    # five tasks of two classes in order, the last one three times as long as the others
    stream = [(c, i) for task in range(5) for i in range(300 if task < 4 else 900) for c in (2 * task, 2 * task + 1)]
    stream = [(label, n) for n, (label, _) in enumerate(stream)]
    kept = _fill(stream, 200)
    counts = {c: sum(1 for label, _ in kept if label == c) for c in range(10)}
    assert set(counts.values()) == {20}, counts  # a uniform reservoir would keep about 60 of each of the last two
    first_of_9 = min(n for n, (label, _) in enumerate(stream) if label == 9)
    late = sum(1 for label, n in kept if label == 9 and n >= first_of_9 + 900)
    assert 5 <= late <= 15, late  # within a class, still a uniform sample of it (half of class 9 came late)


def test_the_turns_are_the_layers_in_order_or_the_whole_network_at_once():
    layers = [("L0", ["L0.n0"]), ("L1", ["L1.n0", "L1.n1"])]
    assert turn_groups(layers, "layer") == [[("L0", "L0.n0")], [("L1", "L1.n0"), ("L1", "L1.n1")]]
    assert turn_groups(layers, "network") == [[("L0", "L0.n0"), ("L1", "L1.n0"), ("L1", "L1.n1")]]
    assert SleepConfig().turns == "network"
    with pytest.raises(ValueError, match=r"^maintenance.turns: accepted \"layer\" \| \"network\", got 'neuron'$"):
        SleepConfig.from_table({"turns": "neuron"})


def test_bad_maintenance_settings_are_refused():
    topology = load_topology()
    topology.maintenance = {"awake": 3}
    with pytest.raises(TopologyError, match="^maintenance: unknown key .awake.; accepted: awake_s, "):
        topology.validate()
    topology.maintenance = {"maintenance_s": 0}
    with pytest.raises(TopologyError, match=r"^maintenance.maintenance_s: accepted float > 0.0, got 0$"):
        topology.validate()
    topology.maintenance = {"capacity": "many"}
    with pytest.raises(TopologyError, match=r"^maintenance.capacity has the wrong type: accepted int, got 'many' \(str\)$"):
        topology.validate()


def test_recalled_rows_ride_at_the_end_of_a_packet_and_come_off_its_answer():
    recall = Recall(width=2)
    rows = np.array([[1, 1], [2, 2]], dtype=np.float32)
    assert recall.add(rows, {"targets": [0, 1]})[0] is rows  # nothing kept yet: the packet as it was
    memory = np.array([[7, 7], [8, 8], [9, 9]], dtype="<f4")
    recall.take([pack({"rows": memory.tobytes(), "shape": [3, 2], "targets": [5, 6, 7], "per_row": 2})])
    mixed, meta = recall.add(rows, {"targets": [0, 1], "origin": "o"})
    assert mixed.shape == (6, 2) and (mixed[:2] == rows).all() and meta["recalled"] == 4
    assert [int(m[0]) - 2 for m in mixed[2:]] == meta["targets"][2:] and meta["targets"][:2] == [0, 1]
    with pytest.raises(FrameError):  # a memory that does not fit changes nothing
        recall.take([pack({"rows": memory.tobytes(), "shape": [2, 3], "targets": [5, 6], "per_row": 1})])
    assert recall.per_row == 2 and recall.metrics() == {"recalled": 4, "recall_memory": 3}
    # rows known as they came are scaled anew, with the statistics of now; the others recalled as learnt
    raw = np.array([[70, 70], [np.nan, np.nan], [90, 90]], dtype="<f4")
    recall.take([pack({"rows": memory.tobytes(), "raw": raw.tobytes(), "shape": [3, 2], "targets": [5, 6, 7],
                       "per_row": 3})])
    again, again_meta = recall.add(rows, {"targets": [0, 1]}, scale=lambda r: r / 10 + 100)
    recalled = {(int(t), float(row[0])) for t, row in zip(again_meta["targets"][2:], again[2:])}
    assert recalled <= {(5, 107.0), (6, 8.0), (7, 109.0)} and len(again) == 8, recalled
    outputs = np.full((6, 3), 0.1, dtype=np.float32)
    outputs[0, 0] = outputs[1, 1] = 0.8
    own, own_meta, loss = forget_recalled(outputs, meta, 9.9, "softmax")
    assert own.shape == (2, 3) and own_meta["targets"] == [0, 1] and loss == pytest.approx(-np.log(0.8))
    assert forget_recalled(outputs, {"targets": [0] * 6}, 1.5, "softmax")[2] == 1.5  # none recalled: as it was


# -- live ------------------------------------------------------------------------------------------
def twin_call(network: Network, neuron_id: str, op: str, **args):
    client = ControlClient(zmq.Context.instance(), control_endpoint(network.run_dir, f"root/maintenance_pool/{neuron_id}"), 5)
    try:
        return client.call(op, **args)
    finally:
        client.close()


def settled_params(network: Network, neuron_id: str) -> tuple[np.ndarray, np.ndarray]:
    """A neuron's parameters once the last gradients of what it learnt have landed."""
    updates = -1
    while (now := neuron_call(network, neuron_id, "metrics")["updates"]) != updates:
        updates = now
        time.sleep(0.3)
    return params(network, neuron_id)


@pytest.mark.timeout(120)
def test_a_maintenance_cycle_dreams_in_the_pool_and_loses_no_request(tmp_path, watch, no_stray_processes):
    topology = load_topology()
    topology.maintenance = {"awake_s": 3600, "maintenance_s": 6.0, "capacity": 500, "replay_per_s": 400,
                            "turns": "layer"}
    data = digits()
    network = Network(topology, str(tmp_path), extensions=network_children(topology, str(tmp_path)), preload=PRELOAD)
    with network:
        events = watch(network.tree)
        sleeper = ControlClient(zmq.Context.instance(), control_endpoint(network.run_dir, "root/maintenance"), 10)
        pool = SupervisorClient(control_endpoint(network.run_dir, "root/maintenance_pool"))
        try:
            learn(network, data, epochs=1)  # what it learns, the hippocampus keeps
            status = sleeper.call("status")
            assert status["phase"] == "awake" and status["seen"] >= len(data.targets) * 0.9
            assert status["stored"] == 500
            assert pool.which_children() == []  # awake: the pool is empty
            before = settled_params(network, "L1.n0")
            replies, stop = [], threading.Event()

            def ask() -> None:
                client = Client(network.messenger_in)
                try:
                    for i in range(10_000):
                        if stop.is_set():
                            return
                        replies.append(client.ask(vector=data.features[i % 100].tolist(), timeout=30))
                finally:
                    client.close()

            asker = threading.Thread(target=ask)
            asker.start()
            try:
                assert sleeper.call("sleep_now") == {"phase": "awake"}
                events.wait_for("maintenance_started")
                turn = events.wait_for("maintenance_turn", turn=1)[0]
                assert turn["neurons"] == ["L1.n0", "L1.n1"]
                layer, neuron = "L1", "L1.n0"
                state = neuron_call(network, neuron, "status")
                assert state["state"] == "maintenance" and state["state_source"] == "manual", (layer, state)
                # every neuron has a twin in the pool subtree; only the layer whose turn it is learns there
                twins = {c["id"] for c in pool.which_children() if c["pid"]}
                assert twins == set(network.topology.neurons()), twins
                assert twin_call(network, "L1.n0", "status")["frozen"] is False
                assert twin_call(network, "L0.n0", "status")["frozen"] is True
                assert twin_call(network, "L1.n0", "status")["pid"] != state["pid"]
                events.wait_for("maintenance_ended", timeout=15)
                returned = events.wait_for("maintenance_returned", count=5)
            finally:
                stop.set()
                asker.join(60)
            status = sleeper.call("status")
            assert status["phase"] == "awake" and status["turns"] == 5 and status["cycles"] == 1
            assert status["dreamt"] > 100 and status["replayed"] == status["dreamt"]
            assert neuron_call(network, "L1.n0", "status")["state"] == "awake"
            # each layer took back what its twins learnt (only inference ran meanwhile: exactly that)
            records = {r["id"]: r for e in returned for r in e["neurons"]}
            assert status["given_back"] == len(network.topology.neurons()) and all(r["moved"] > 0 for r in records.values())
            after = params(network, "L1.n0")
            moved = np.sqrt(((after[0] - before[0]) ** 2).sum() + ((after[1] - before[1]) ** 2).sum())
            assert moved == pytest.approx(records["L1.n0"]["moved"], rel=1e-3)
            assert pool.which_children() == [] and not os.path.exists(tmp_path / "pool")
            assert replies and all(r["ok"] for r in replies), [r for r in replies if not r["ok"]][:3]
        finally:
            sleeper.close()
            pool.close()


@pytest.mark.timeout(120)
def test_an_untaught_network_learns_from_its_educational_dataset_in_its_sleep(tmp_path, no_stray_processes):
    """Nothing learnt while awake (the hippocampus is empty): the dreams are the ``education``
    dataset alone, and they teach the network in the pool."""
    data = digits()
    lesson = tmp_path / "lesson.npz"
    np.savez(lesson, X=data.features[:600], y=data.targets[:600])
    narrow = tmp_path / "narrow.npz"
    np.savez(narrow, X=data.features[:50, :8], y=data.targets[:50])
    exam = Dataset(data.features[:300], data.targets[:300], data.classes)
    topology = load_topology()
    topology.maintenance = {"awake_s": 3600, "maintenance_s": 8.0, "capacity": 10, "replay_per_s": 400,
                            "education": str(lesson)}
    network = Network(topology, str(tmp_path / "data"), extensions=network_children(topology, str(tmp_path / "data")),
                      preload=PRELOAD)
    with network:
        sleeper = ControlClient(zmq.Context.instance(), control_endpoint(network.run_dir, "root/maintenance"), 10)
        try:
            before = evaluate(network, exam)
            sleeper.call("sleep_now")
            deadline = time.monotonic() + 60
            while (status := sleeper.call("status"))["cycles"] < 1:
                assert time.monotonic() < deadline, status
                time.sleep(0.2)
            after = evaluate(network, exam)
            # MessengerIn reads and scales the education for the worker: a bad file is a clear error
            front = ControlClient(zmq.Context.instance(), control_endpoint(network.run_dir, "root/messenger_in"), 10)
            try:
                for path, error, words in ((str(tmp_path / "none.npz"), "bad_dataset", "no such file"),
                                           (str(narrow), "wrong_shape", "8 features, the network takes 64")):
                    with pytest.raises(ControlError) as refused:
                        front.call("education", path=path)
                    assert refused.value.error == error and words in str(refused.value), refused.value
                assert front.call("education", path=str(lesson))["shape"] == [600, 64]  # and it still answers
            finally:
                front.close()
        finally:
            sleeper.close()
    assert status["stored"] == 0 and status["replayed"] == 0 and status["educated"] > 100, status
    assert after >= before + 0.1, (before, after, status)


def _metrics(network: Network, path: str) -> dict:
    with ControlClient(zmq.Context.instance(), control_endpoint(network.run_dir, path), 10) as client:
        return client.call("metrics")


@pytest.mark.timeout(60)
def test_awake_replay_learns_stored_samples_in_the_streams_packets_and_never_answers_them(tmp_path, no_stray_processes):
    """The hippocampus's memory reaches MessengerIn; each packet learnt from carries one recalled row per
    new row through every layer; the origin's answers, MessengerOut's score and the hippocampus see the
    origin's rows only."""
    topology = load_topology()
    topology.maintenance = {"awake_s": 3600, "capacity": 30, "awake_replay": 1}
    data = digits()
    end = topology.layers[-1].neurons[0]
    network = Network(topology, str(tmp_path), extensions=network_children(topology, str(tmp_path)), preload=PRELOAD)
    with network:
        learn(network, Dataset(data.features[:60], data.targets[:60], data.classes))
        sleeper = ControlClient(zmq.Context.instance(), control_endpoint(network.run_dir, "root/maintenance"), 10)
        try:
            deadline = time.monotonic() + 20
            while _metrics(network, "root/messenger_in")["recall_memory"] < 30:  # pushed every second
                assert time.monotonic() < deadline, sleeper.call("status")
                time.sleep(0.1)
            seen, scored = sleeper.call("status")["seen"], _metrics(network, "root/messenger_out")["scored"]
            samples = neuron_call(network, end, "metrics")["samples"]
            origin = Origin(zmq.Context.instance(), network.run_dir, network.topology, "awake")
            try:
                for i in range(60, 80):  # packets of 2 new rows, one at a time
                    rows = slice(i * 2, i * 2 + 2)
                    sent = origin.send(data.features[rows], data.targets[rows].tolist(), learn=True)
                    assert origin.returns.poll(10_000)
                    (result,) = origin.receive()
                    assert result["packet"] == sent and result["rows"] == 2 and result["loss"] is not None
                    assert len(np.frombuffer(result["output"], "<f4")) == 2 * 10 and len(result["label"]) == 2
            finally:
                origin.close()
            front = _metrics(network, "root/messenger_in")
            assert front["recalled"] == 40  # one stored row beside each of the 40 new ones
            assert neuron_call(network, end, "metrics")["samples"] - samples == 80  # learnt through to the end
            deadline = time.monotonic() + 10  # MessengerOut answers the origin before it scores a frame
            while (now_scored := _metrics(network, "root/messenger_out")["scored"]) < scored + 40:
                assert time.monotonic() < deadline, now_scored - scored
                time.sleep(0.05)
            assert _metrics(network, "root/messenger_out")["scored"] - scored == 40  # the stream's rows only
            deadline = time.monotonic() + 10
            while (status := sleeper.call("status"))["seen"] < seen + 40:
                assert time.monotonic() < deadline, status
                time.sleep(0.05)
            assert status["seen"] == seen + 40 and status["shared"] > 0  # recalled rows are not new experience
        finally:
            sleeper.close()
