"""A neuron's parts on their own: kernels, learning math, state store, topology, datasets."""
import os
import signal
import threading
import time

import numpy as np
import plyvel
import pytest
import zmq

from neurox.ext import DatasetError, load_dataset
from neurox.neuron import NeuronStore, TopologyError, load_topology, parse_topology, topology_path
from neurox.neuron import _frames as frames
from neurox.neuron._kernels import dense_backward, dense_forward
from neurox.neuron._math import ACTIVATIONS, backward, forward, output_gradient, seed_from_siblings
from neurox.neuron._persistence import fetch_params
from neurox.neuron._process import Neuron, first_report_s, report_interval_s
from neurox.runtime import EXIT_SHUTDOWN, ExitReason, FrameError, pack, unpack_map

pytestmark = pytest.mark.timeout(60)
RNG = np.random.default_rng(7)


def reference_forward(x, w, b, activation):
    z = x @ w + b
    if activation == "softmax":
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)
    return {"tanh": np.tanh, "relu": lambda v: np.maximum(v, 0), "sigmoid": lambda v: 1 / (1 + np.exp(-v)),
            "linear": lambda v: v}[activation](z)


@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("rows", [1, 3, 8])
def test_forward_matches_numpy_for_every_activation_and_batch(activation, rows):
    x, w, b = (RNG.random((rows, 20), dtype=np.float32), RNG.random((20, 7), dtype=np.float32) - 0.5,
               RNG.random(7, dtype=np.float32))
    assert np.allclose(forward(x, w, b, activation), reference_forward(x, w, b, activation), atol=1e-5)


def test_compiled_backward_matches_numpy():
    x, dz = RNG.random((2, 12), dtype=np.float32), RNG.random((2, 5), dtype=np.float32)
    w, b = RNG.random((12, 5), dtype=np.float32), RNG.random(5, dtype=np.float32)
    w2, b2 = w.copy(), b.copy()
    dx = dense_backward(x, dz, w2, b2, np.float32(0.1))
    assert np.allclose(dx, dz @ w.T, atol=1e-5)
    assert np.allclose(w2, w - 0.1 * x.T @ dz, atol=1e-5) and np.allclose(b2, b - 0.1 * dz.sum(0), atol=1e-5)
    assert np.allclose(dense_forward(x, w, b, 0), np.tanh(x @ w + b), atol=1e-5)


def test_output_gradient_is_y_minus_target_and_checks_classes():
    y = np.array([[0.7, 0.2, 0.1]], dtype=np.float32)
    dz, loss = output_gradient(y, [0], "softmax")
    assert np.allclose(dz, [[-0.3, 0.2, 0.1]]) and loss == pytest.approx(-np.log(0.7), rel=1e-5)
    with pytest.raises(ValueError):
        output_gradient(y, [3], "softmax")
    dz, loss = output_gradient(y, [[1.0, 0.0, 0.0]], "linear")
    assert np.allclose(dz, [[-0.3, 0.2, 0.1]]) and loss == pytest.approx(0.5 * (0.09 + 0.04 + 0.01), rel=1e-5)


def test_backward_updates_in_place_with_weights_before_the_update():
    x, g = RNG.random((1, 6), dtype=np.float32), RNG.random((1, 4), dtype=np.float32)
    w, b = RNG.random((6, 4), dtype=np.float32), np.zeros(4, dtype=np.float32)
    y = np.tanh(x @ w)
    before = w.copy()
    dx = backward(x, y, g, w, b, "tanh", 0.05)
    dz = g * (1 - y * y)
    assert np.allclose(dx, dz @ before.T, atol=1e-6)
    assert np.allclose(w, before - 0.05 * x.T @ dz, atol=1e-6)


def test_seeding_takes_the_siblings_mean_plus_a_little_noise_or_falls_back():
    siblings = [(np.full((3, 2), v, np.float32), np.full(2, v, np.float32)) for v in (1.0, 3.0)]
    w, b, used = seed_from_siblings(siblings + [(np.zeros((5, 2), np.float32), np.zeros(2, np.float32))], 3, 2, RNG)
    assert used == 2 and np.abs(w - 2.0).max() < 0.06 and np.abs(b - 2.0).max() < 0.06 and w.std() > 0
    w, b, used = seed_from_siblings([], 3, 2, RNG)
    assert used == 0 and w.shape == (3, 2) and not b.any()


def make_neuron(tmp_path, neuron_id="L2.n1"):
    data_dir, run_dir = tmp_path / "data", tmp_path / "run"
    data_dir.mkdir()
    run_dir.mkdir()
    load_topology().save(topology_path(str(data_dir)))
    args, env = {"neuron": neuron_id, "data_dir": str(data_dir)}, {"run_dir": str(run_dir), "control": f"ipc://{run_dir}/ctl"}
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    neuron = Neuron()
    neuron.setup(args, env)  # the behaviour's set-up, in this process: its signal handling is given back below
    neuron.init(args, env)
    signal.set_wakeup_fd(-1)
    for sig, handler in handlers.items():
        signal.signal(sig, handler)
    return neuron


def stop_neuron(neuron) -> None:
    """What the behaviour does at a polite stop: ``terminate``, then every socket and the context closed."""
    neuron.terminate(ExitReason("shutdown", code=EXIT_SHUTDOWN))
    neuron.events.close()
    neuron.ctx.destroy()


def test_a_bundle_is_one_step_and_single_packets_each_their_own_as_the_delay_rule_says(tmp_path):
    """Eight packets computed together, their gradients back together: one step, every dx with the weights
    before it. Sent one by one: eight steps, the i-th i packets stale. Both match hand-written backprop
    with ``lr / sqrt(1 + delay + (n - 1) / 2)`` (docs/neuron.md, "Staleness")."""
    k, meta, lr = 8, pack({}), 0.05
    a, b = [RNG.random((1, 16), dtype=np.float32) for _ in range(k)], [RNG.random((1, 16), dtype=np.float32) for _ in range(k)]
    g0, g1 = [RNG.random((1, 16), dtype=np.float32) for _ in range(k)], [RNG.random((1, 16), dtype=np.float32) for _ in range(k)]
    results = []
    for bundled, sub in ((True, "a"), (False, "b")):
        (tmp_path / sub).mkdir()
        n = make_neuron(tmp_path / sub)
        w0 = n.rule.weights.copy()
        groups = [list(range(k))] if bundled else [[i] for i in range(k)]
        for group in groups:  # through the behaviour's callback, as the loop hands over one drain of the inbox
            n.handle_frame(n.inbox, [frames.encode_forward(src, group, [part[i] for i in group], [True] * len(group), [meta] * len(group))
                                     for src, part in (("L1.n0", a), ("L1.n1", b))])
        for group in groups:
            n.handle_frame(n.inbox, [frames.encode_gradient(src, group, [1] * len(group), np.concatenate([grad[i] for i in group]))
                                     for src, grad in (("L3.n0", g0), ("L3.n1", g1))])
        results.append((w0, n.rule.weights.copy(), n.call_metrics()))
        stop_neuron(n)
    (w0, bundled, metrics), (_, single, _) = results
    assert metrics["forward_bundles"] == 1 and metrics["backward_bundles"] == 1 and metrics["updates"] == k
    xs = [np.concatenate([a[i], b[i]], 1) for i in range(k)]
    grads = [xs[i].T @ ((g0[i] + g1[i]) * (1 - np.tanh(xs[i] @ w0) ** 2)) for i in range(k)]
    assert np.allclose(bundled, w0 - lr / np.sqrt(1 + (k - 1) / 2) * sum(grads), atol=1e-5)
    assert np.allclose(single, w0 - sum(lr / np.sqrt(1 + i) * grads[i] for i in range(k)), atol=1e-5)


def test_a_small_network_reports_at_once_and_a_large_one_within_its_interval_not_before_half():
    assert first_report_s(report_interval_s(100), 0.3) == 0.0
    interval = report_interval_s(1000)
    assert interval == 10.0
    firsts = [first_report_s(interval, d) for d in (0.0, 0.5, 0.999)]
    assert firsts == sorted(firsts, reverse=True) and firsts[0] == interval and 5.0 < firsts[-1] < 5.01


def test_a_replacement_asks_its_siblings_all_at_once_under_one_deadline(tmp_path):
    ctx = zmq.Context.instance()
    live = ctx.socket(zmq.ROUTER)
    live.bind(f"ipc://{tmp_path}/live")

    def answer():
        if not live.poll(5000):
            return  # never asked: the assertion below says so
        frames = live.recv_multipart()
        rid = unpack_map(frames[-1]).get("rid")
        live.send_multipart([*frames[:-1], pack({"ok": True, "result": {"weights": "w"}, "rid": rid})])

    server = threading.Thread(target=answer)
    server.start()
    down = {f"down{i}": f"ipc://{tmp_path}/down{i}" for i in range(3)}  # siblings that are not running
    started = time.monotonic()
    try:
        got = fetch_params(ctx, {**down, "live": f"ipc://{tmp_path}/live"}, 0.3)
    finally:
        server.join(5)
        live.close(linger=0)
    assert got == {"live": {"weights": "w"}}, "the dead are left out, the living answer"
    assert time.monotonic() - started < 0.6, "one deadline for all (one after the other, three down took 0.9 s)"


def test_bad_frames_are_refused_with_their_kind():
    for frame, kind in ((b"\xc1", "malformed"), (pack({"a": 1}), "wrong_type"), (pack([7, "x"]), "wrong_type"),
                        (pack([0, "x", [1, 2], [1], b"", [True], [b""]]), "wrong_shape")):
        with pytest.raises(FrameError) as info:
            frames.decode(frame)
        assert info.value.kind == kind
    with pytest.raises(FrameError):
        frames.split_rows(b"\x00" * 12, [1], 4)


def test_store_gives_back_exactly_what_was_flushed_and_knows_a_clean_stop(tmp_path):
    path = str(tmp_path / "db")
    store = NeuronStore(path)
    assert not store.was_clean and store.load() is None
    w, b = RNG.random((4, 3), dtype=np.float32), RNG.random(3, dtype=np.float32)
    store.flush(w, b, {"inputs": ["a"]}, {"updates": 5})
    store.flush(w * 2, b, {"inputs": ["a"]}, {"updates": 6})
    store.close(clean=False)
    store = NeuronStore(path)
    saved = store.load()
    assert not store.was_clean and np.array_equal(saved.weights, w * 2) and saved.counters == {"updates": 6}
    assert saved.flushes == 2
    store.close(clean=True)
    assert NeuronStore(path).was_clean


def test_a_new_store_is_created_by_its_first_flush_not_on_open(tmp_path):
    path = tmp_path / "neurons" / "L1.n0"
    store = NeuronStore(str(path))
    assert not path.exists() and store.load() is None and store.closed
    store.flush(np.ones((2, 2), np.float32), np.zeros(2, np.float32), {}, {})
    assert path.exists() and not store.closed
    store.close(clean=True)
    unused = NeuronStore(str(tmp_path / "neurons" / "L1.n1"))
    unused.close(clean=True)
    assert not (tmp_path / "neurons" / "L1.n1").exists()
    assert NeuronStore(str(path)).was_clean


def test_topology_defaults_links_and_errors(tmp_path):
    t = load_topology()
    assert [len(layer.neurons) for layer in t.layers] == [1, 2, 3, 2, 1]
    assert t.inputs_of("L2.n0") == ["L1.n0", "L1.n1"] and t.outputs_of("L4.n0") == ["output"]
    assert len(t.links) == 2 + 6 + 6 + 2
    bad = [({"layer": []}, r"\[\[layer\]\]"),
           ({"input_width": 2, "layer": [{"neurons": 2}]}, "exactly one neuron"),
           ({"input_width": 2, "layer": [{"activation": "swish"}]}, "unknown activation"),
           ({"input_width": 2, "layer": [{"name": "a"}, {"name": "b"}], "link": [{"from": "b.n0", "to": "a.n0"}]}, "forward"),
           ({"input_width": 2, "layer": [{"name": "a", "activation": "softmax"}, {"name": "b"}]}, "softmax"),
           ({"input_width": 2, "bogus": 1, "layer": [{}]}, "unknown top-level")]
    for doc, message in bad:
        with pytest.raises(TopologyError, match=message):
            parse_topology(doc)
    path = tmp_path / "t.json"
    t.save(str(path))
    assert type(t).load(str(path)).to_dict() == t.to_dict()


def test_the_live_topology_is_parsed_once_per_file_version_and_answers_as_the_plain_one(tmp_path):
    from neurox.bench._scale import sparse_topology
    from neurox.neuron._live_topology import load_live_topology
    from neurox.neuron._topology import Topology

    path = str(tmp_path / "topology.json")
    sparse_topology(120, 4, 3, 2).save(path)
    live = load_live_topology(path)
    assert load_live_topology(path) is live, "parsed once"
    plain = Topology.load(path)
    for n in plain.neurons():
        assert (live.inputs_of(n), live.outputs_of(n), live.settings_of(n), live.siblings_of(n)) == \
               (plain.inputs_of(n), plain.outputs_of(n), plain.settings_of(n), plain.siblings_of(n)), n
    assert live.neuron_count == len(plain.neurons())
    with pytest.raises(TopologyError, match="unknown neuron"):
        live.layer_of("L9.n0")
    load_topology().save(path)  # a reshape replaces the file
    assert load_live_topology(path) is not live and load_live_topology(path).neuron_count == 9


def test_datasets_from_csv_and_npz_with_clear_errors(tmp_path):
    csv = tmp_path / "d.csv"
    csv.write_text("a,b,label\n0,10,cat\n1,20,dog\n2,30,cat\n")
    data = load_dataset(str(csv), "label")
    assert data.classes == ["cat", "dog"] and data.features.max() == 30.0 and list(data.targets) == [0, 1, 0]
    (tmp_path / "r.csv").write_text("x,y\n0,0.5\n1,1.5\n")
    assert load_dataset(str(tmp_path / "r.csv")).classes is None
    np.savez(tmp_path / "d.npz", X=np.arange(6).reshape(3, 2), y=np.array([0, 1, 2]))
    assert load_dataset(str(tmp_path / "d.npz")).outputs == 3
    with pytest.raises(DatasetError, match="no target column"):
        load_dataset(str(csv), "nope")
    (tmp_path / "bad.csv").write_text("a,b\n1,2\n3\n")
    with pytest.raises(DatasetError, match="row 3: 1 cells; the header has 2"):
        load_dataset(str(tmp_path / "bad.csv"))
    with pytest.raises(DatasetError, match="no such file"):
        load_dataset(os.path.join(tmp_path, "missing.csv"))


def test_a_store_waits_for_the_lock_its_dying_predecessor_still_holds(tmp_path):
    path = str(tmp_path / "db")
    predecessor = plyvel.DB(path, create_if_missing=True)
    releaser = threading.Timer(0.3, predecessor.close)
    releaser.start()
    try:
        started = time.monotonic()
        store = NeuronStore(path)  # blocks until the lock is free, then opens
        assert time.monotonic() - started >= 0.25 and not store.closed
        store.close(clean=True)
    finally:
        releaser.join()
