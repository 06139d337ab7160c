"""Widening a layer live (``widen_layer``): more units per neuron, the network's answers unchanged, and
the new units learnt from there."""
import numpy as np
import pytest
import zmq

from _netutil import learn, neuron_call, running_network
from neurox.ext import Origin, digits
from neurox.neuron import Reshaping, array_from_wire, load_topology, parse_topology
from neurox.neuron._widening import rows_of, widened_columns, widened_rows
from neurox.runtime import ControlError


def test_widened_weights_compute_the_same_function():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(5, 6)).astype(np.float32)
    w1, b1, w2 = rng.normal(size=(6, 3)), rng.normal(size=3), rng.normal(size=(2 + 3, 4))  # w2: a 2-wide peer, then ours
    before = np.tanh(np.concatenate([np.ones((5, 2)), np.tanh(x @ w1 + b1)], axis=1) @ w2)
    wide1, wide_b1 = widened_columns(w1, b1, 7, "xavier", rng)
    layout = [("other", 2), ("ours", 7)]
    wide2 = widened_rows(np.zeros((9, 4)), layout, "ours", rows_of(w2, [("other", 2), ("ours", 3)], "ours"))
    wide2[:2] = w2[:2]
    hidden = np.tanh(x @ wide1 + wide_b1)
    assert wide1.shape == (6, 7) and np.allclose(wide1[:, :3], w1) and np.abs(wide1[:, 3:]).max() > 0.01
    assert np.allclose(np.tanh(np.concatenate([np.ones((5, 2)), hidden], axis=1) @ wide2), before, atol=1e-5)
    assert not wide2[5:].any()  # nothing downstream listens to the new units yet
    with pytest.raises(ValueError):
        widened_columns(w1, b1, 3, "xavier", rng)
    with pytest.raises(ValueError):
        widened_rows(wide2, layout, "missing", w2[2:])


def answers(network, rows: np.ndarray) -> np.ndarray:
    origin = Origin(zmq.Context.instance(), network.run_dir, network.topology, "widen", remember=False)
    try:
        packet = origin.send(rows)
        assert origin.returns.poll(10_000), "no answer"
        (result,) = [r for r in origin.receive() if r["packet"] == packet]
        return np.frombuffer(result["output"], np.float32).reshape(result["rows"], result["width"])
    finally:
        origin.close()


@pytest.mark.timeout(120)
def test_the_start_node_widens_live_and_answers_the_same(tmp_path):
    diamond = load_topology().to_toml_dict()
    layers = [{"name": "L0", "neurons": 1, "units": 4}, {"name": "L1", "neurons": 2, "units": 4}, diamond["layer"][-1]]
    topology = parse_topology({**diamond, "name": "narrow", "layer": layers})
    data = digits()
    with running_network(topology, tmp_path) as network:
        learn(network, data, epochs=1, window=2, batch=8)
        reshaping = Reshaping(network.reshaper)
        try:
            with pytest.raises(ControlError) as info:
                reshaping.widen_layer("L4", 16)
            assert info.value.error == "fixed_layer"
            with pytest.raises(ControlError) as info:
                reshaping.widen_layer("L0", 4)
            assert info.value.error == "bad_request"
            own_rate = round(neuron_call(network, "L0.n0", "status")["learning_rate"] * 0.9, 6)
            neuron_call(network, "L0.n0", "set_params", learning_rate=own_rate, join_timeout_ms=777)
            before = answers(network, data.features[:64])
            done = reshaping.widen_layer("L0", 12)
            after = answers(network, data.features[:64])
            live = reshaping.topology()
        finally:
            reshaping.close()
        assert done == {"layer": "L0", "units": 12, "was": 4, "neurons": ["L0.n0"]}
        assert np.abs(after - before).max() < 1e-4, "the widened network answers as before"
        assert [l.get("settings", {}).get("units") for l in live["layers"]][0] == 12
        assert array_from_wire(neuron_call(network, "L0.n0", "get_params")["weights"]).shape == (64, 12)
        status = neuron_call(network, "L0.n0", "status")
        assert (status["learning_rate"], status["join_timeout_ms"]) == (own_rate, 777), "its own settings kept"
        params = neuron_call(network, "L1.n1", "get_params")
        assert params["widths"]["L0.n0"] == 12 and not rows_of(
            array_from_wire(params["weights"]), [(p, params["widths"][p]) for p in params["inputs"]], "L0.n0")[4:].any()
        score = learn(network, data, epochs=2, window=2, batch=8)
        params = neuron_call(network, "L1.n1", "get_params")
        layout = [(p, params["widths"][p]) for p in params["inputs"]]
        new_rows = rows_of(array_from_wire(params["weights"]), layout, "L0.n0")[4:]
    assert np.abs(new_rows).max() > 1e-3, "the new units are learnt from"
    assert score.rolling_accuracy > 0.6, "learning goes on"
