"""The network's input scaling as pure parts: running statistics (Welford, min/max, frozen), their state,
and the Front that scales every packet (inputs, regression targets, answers back in the user's units)."""
import numpy as np
import pytest

from neurox.ext import InputError, ScaleConfig, Scaler, ScalingError, scale_config
from neurox.ext._front import Front
from neurox.neuron import to_user_units
from neurox.neuron import FORWARD, INPUT, decode_frame, encode_forward, load_topology, split_rows
from neurox.runtime import FrameError, pack, unpack_map


def test_online_standardisation_matches_the_whole_column_statistics_whatever_the_blocks():
    rng = np.random.default_rng(1)
    rows = rng.normal([1000.0, -5.0, 3e6], [250.0, 0.01, 1e5], (500, 3))
    scaler = Scaler(3)
    at = 0
    for size in rng.integers(1, 9, 200):  # blocks of 1..8 rows, as packets come
        scaler.learn(rows[at:at + size])
        at += size
        if at >= len(rows):
            break
    seen = rows[:min(at, len(rows))]
    assert scaler.count == len(seen)
    np.testing.assert_allclose(scaler.mean, seen.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(scaler.std(), seen.std(axis=0), rtol=1e-9)
    out = scaler.transform(seen)
    np.testing.assert_allclose(out.mean(axis=0), 0, atol=1e-5)
    np.testing.assert_allclose(out.std(axis=0), 1, atol=1e-4)


def test_constant_columns_become_zero_and_nothing_seen_passes_values_as_they_come():
    scaler = Scaler(2)
    np.testing.assert_array_equal(scaler.transform([[7.0, -3.0]]), [[7.0, -3.0]])
    scaler.learn([[5.0, 1.0], [5.0, 3.0]])
    np.testing.assert_allclose(scaler.transform([[5.0, 3.0], [9.0, 1.0]]), [[0.0, 1.0], [0.0, -1.0]])


def test_minmax_none_and_frozen():
    minmax = Scaler(1, ScaleConfig("minmax"))
    minmax.learn([[10.0], [30.0]])
    np.testing.assert_allclose(minmax.transform([[20.0], [40.0]]).ravel(), [0.5, 1.5])
    assert minmax.unit_scale()[0].tolist() == [10.0] and minmax.unit_scale()[1].tolist() == [20.0]
    none = Scaler(1, ScaleConfig("none"))
    none.learn([[10.0], [30.0]])
    assert none.count == 0 and none.transform([[123.0]]).tolist() == [[123.0]]
    frozen = Scaler(1, ScaleConfig("frozen", frozen_after=3))
    frozen.learn([[1.0], [2.0]])
    frozen.learn([[3.0], [1000.0]])  # the fourth sample comes after it froze
    frozen.learn([[-1e6]])
    assert frozen.frozen and frozen.count == 3 and frozen.mean.tolist() == [2.0]


def test_the_state_round_trips_and_a_mismatched_state_starts_anew():
    scaler = Scaler(3)
    scaler.learn(np.arange(12.0).reshape(4, 3) ** 2)
    again = Scaler.from_state(scaler.to_state(), 3, ScaleConfig())
    assert again.count == 4 and again.to_state() == scaler.to_state()
    assert Scaler.from_state(scaler.to_state(), 4, ScaleConfig()).count == 0  # reshaped: another width
    assert Scaler.from_state(scaler.to_state(), 3, ScaleConfig("minmax")).count == 0  # another mode
    assert Scaler.from_state({"width": 3, "mode": "standard", "mean": "x"}, 3, ScaleConfig()).count == 0
    summary = scaler.summary()
    assert summary["mode"] == "standard" and summary["count"] == 4 and len(summary["std"]) == 3


def test_the_input_table_is_checked_with_errors_that_say_what_is_accepted():
    assert scale_config({}) == ScaleConfig("standard", 1000)
    assert scale_config({"scale": "frozen", "frozen_after": 50}).describe() == "frozen after 50 samples"
    for table, message in (({"scale": "zscore"}, "one of standard, minmax, none, frozen; got 'zscore'"),
                           ({"frozen_after": 0}, "frozen_after: a whole number of samples >= 1; got 0"),
                           ({"scal": "none"}, "unknown keys ['scal']")):
        with pytest.raises(ScalingError, match=message.replace("[", r"\[").replace("]", r"\]")):
            scale_config(table)


def regression_topology():
    return load_topology().fit_to_data(3, 1, classification=False)


def forward_frame(rows: np.ndarray, targets, learn: bool = True, extra: dict | None = None) -> bytes:
    meta = {"origin": "ipc:///nowhere", "source": "test", **(extra or {})}
    if targets is not None:
        meta["targets"] = targets
    return encode_forward(INPUT, [7], [rows.astype(np.float32)], [learn], [pack(meta)])


def test_the_front_scales_every_packet_alike_and_regression_answers_come_back_in_user_units(tmp_path):
    front = Front(regression_topology(), str(tmp_path))
    rng = np.random.default_rng(2)
    for _ in range(200):
        x = rng.normal(5000.0, 300.0, (2, 3))
        y = (x @ [1.0, 2.0, -1.0]).reshape(2, 1) + 10_000.0
        frame, learnt, refused = front.forward([forward_frame(x, y.tolist())])
        assert not refused
    _, src, packets, rows, data, learn, metas = decode_frame(frame, (FORWARD,))
    meta = unpack_map(metas[0])
    scaled = split_rows(data, rows, 3)[0]
    assert src == INPUT and packets == [7] and learn == [True] and np.abs(scaled).max() < 5
    assert np.allclose(meta["user_targets"], y) and abs(meta["targets"][0][0]) < 5
    assert learnt and learnt[0][0].shape == (2, 3)
    # the network's answer in its units comes back in the user's with the scale the packet carried
    answer = to_user_units(np.asarray(meta["targets"], dtype=np.float32), meta)
    offset, factor = meta["units"]["offset"][0], meta["units"]["factor"][0]
    assert factor > 100 and offset > 5000
    np.testing.assert_allclose(answer, y, rtol=2e-3)  # the packet's own target moved the scale a little
    assert front.inputs.count == 400 and front.targets.count == 400
    good = forward_frame(np.ones((1, 3)), [[1.0]], learn=False)
    frame, learnt, refused = front.forward([forward_frame(np.array([[1.0, np.nan, 2.0]]), [[1.0]]), good,
                                            forward_frame(np.ones((1, 3)), [[np.inf]]),
                                            encode_forward("L0.n0", [1], [np.ones((1, 3), np.float32)], [False],
                                                           [pack({})])])
    assert [getattr(e, "error", getattr(e, "kind", None)) for e in refused] == ["non_finite", "non_finite",
                                                                               "unknown_source"]
    assert isinstance(refused[0], InputError) and isinstance(refused[2], FrameError)
    assert decode_frame(frame, (FORWARD,))[2] == [7] and not learnt, "the good frame goes on, alone"
    assert front.inputs.count == 400, "refused packets teach nothing"
    bundle, _, _ = front.forward([forward_frame(np.ones((2, 3)), None, learn=False)] * 3)
    assert decode_frame(bundle, (FORWARD,))[3] == [2, 2, 2], "frames waiting together go on as one bundle"
    assert front.forward([]) == (None, [], [])
    front.close()
    again = Front(regression_topology(), str(tmp_path))  # a restarted MessengerIn goes on from the saved state
    assert again.inputs.to_state() == front.inputs.to_state() and again.targets.count == 400
    again.close()


def test_asking_does_not_move_the_statistics_and_a_classification_front_leaves_targets_alone(tmp_path):
    front = Front(load_topology().fit_to_data(2, 3, classification=True), str(tmp_path))
    front.forward([forward_frame(np.array([[1.0, 2.0], [3.0, 6.0]]), [0, 2])])
    frame, learnt, _ = front.forward([forward_frame(np.array([[100.0, 100.0]]), None, learn=False)])
    meta = unpack_map(decode_frame(frame, (FORWARD,))[6][0])
    assert front.inputs.count == 2 and not learnt and "units" not in meta
    frame, _, _ = front.forward([forward_frame(np.array([[1.0, 2.0]]), [1])])
    assert unpack_map(decode_frame(frame, (FORWARD,))[6][0])["targets"] == [1]
    front.close()


@pytest.mark.timeout(10)
@pytest.mark.parametrize("mode", ["standard", "minmax", "frozen", "none"])
def test_a_scan_of_a_bundle_is_learn_then_transform_row_by_row(mode):
    """MessengerIn scales a bundle in one scan; each row must get what one after another would give it."""
    rng = np.random.default_rng(4)
    rows = rng.normal(3.0, 2.0, (200, 5))
    rows[:, 2] = 7.0  # a constant column stays 0
    learns = rng.random(200) < 0.8  # asks among the samples learnt from: scaled, not learnt
    one_by_one, scanned = Scaler(5, ScaleConfig(mode, 50)), Scaler(5, ScaleConfig(mode, 50))
    expected = []
    for row, learn in zip(rows, learns):
        if learn:
            one_by_one.learn(row[None])
        expected.append(one_by_one.transform(row[None])[0])
    got = np.concatenate([scanned.scan(rows[at:at + 37], learns[at:at + 37]) for at in range(0, 200, 37)])
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    assert scanned.count == one_by_one.count and (mode == "none" or scanned.count > 0)
    for key in ("mean", "m2", "low", "high"):
        np.testing.assert_allclose(getattr(scanned, key), getattr(one_by_one, key), rtol=1e-9, atol=1e-9)
    if mode != "none":
        first = int(np.argmax(learns))  # rows before it pass as they come
        assert np.abs(got[first:, 2]).max() == 0.0 and np.abs(got[60:]).max() > 0.5
