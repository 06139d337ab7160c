"""The parts of a neuron, each on its own and without a socket: Links, Joins, the LearningRule,
Receptors, Persistence (on a real LevelDB), the Pipeline over them, and the request checks."""
import os

import numpy as np
import plyvel
import pytest
import zmq

from neurox.neuron import _frames as frames
from neurox.neuron._activity import FOLD, SAMPLED_ROWS, SATURATED, SMOOTHING, Activity
from neurox.neuron._answers import answers_of
from neurox.neuron._joins import Joins, Run
from neurox.neuron._learning_rule import MAX_GRAD_NORM, Backprop, Oja, ThreeFactor, make_rule
from neurox.neuron._links import Links, relayout
from neurox.neuron._math import backward, output_gradient, output_gradients, update_norm_sq, weight_statistics
from neurox.neuron import NEUTRAL
from neurox.neuron._persistence import Persistence, start_plan
from neurox.neuron._pipeline import Pipeline
from neurox.neuron._plasticity import oja_update
from neurox.neuron._receptors import Receptors
from neurox.neuron._returns import MAX_ORIGINS, Returns
from neurox.neuron._ops import NEURON_ARGS
from neurox.neuron._requests import checked_set_params, checked_vector
from neurox.runtime import BadFrames, FrameError, Reply, arguments, pack, unpack

pytestmark = pytest.mark.timeout(30)
RNG = np.random.default_rng(7)
COUNTERS = ("forwards", "samples", "backwards", "updates", "missed_inputs", "missed_gradients", "late", "expired",
            "dropped_sends", "flush_errors", "refused_updates", "clipped_updates", "non_finite_inputs",
            "forward_bundles", "backward_bundles")


def counters() -> dict:
    return dict.fromkeys(COUNTERS, 0)


class FakeSocket:
    """What a link needs of a PUSH socket: ``send`` (raising zmq.Again when ``full``) and ``close``."""

    def __init__(self, peer: str = "", full: bool = False):
        self.peer, self.full, self.sent, self.closed = peer, full, [], False

    def send(self, frame, flags=0):
        if self.full:
            raise zmq.Again()
        self.sent.append(frame)

    def send_multipart(self, parts, flags=0):
        self.sent.append(parts)

    def close(self, linger=None):
        self.closed = True


def add(joins: Joins, packet: int, slot: int, part: np.ndarray, now: float, out: list, learn: bool = False,
        meta: bytes = b"") -> None:
    """One packet's part, as a frame of one packet brings it."""
    joins.add_all(slot, [part], [packet], now, out, [learn], [meta])


def each_packet(runs: list[Run]) -> list[tuple]:
    """``(packet, value, learn, meta)`` of every packet of the runs, in order."""
    return [item for run in runs for item in zip(run.packets, frames.slices(run.value, run.rows), run.learn, run.metas)]


def keep(r, packet: int, x: np.ndarray, y: np.ndarray, now: float) -> None:
    """One learning packet's forward pass kept, as a bundle of one."""
    r.keep([packet], [x.shape[0]], x, y, [True], now)


def gradients(*pairs) -> list[Run]:
    """``(packet, grad)`` pairs as the runs of one a neuron's gradient joins give."""
    return [Run([packet], grad, [grad.shape[0]], [False], [b""]) for packet, grad in pairs]


def dx_of(learnt) -> list[tuple]:
    """``(packet, dx)`` of every packet learnt from ([] for none)."""
    return [] if learnt is None else list(zip(learnt.packets, frames.slices(learnt.dx, learnt.rows)))


class Recorder:
    """What Persistence needs of an event publisher: ``emit``."""

    def __init__(self):
        self.events = []

    def emit(self, event, **fields):
        self.events.append((event, fields))


def make_links(inputs=(("L1.n0", 3), ("L1.n1", 2)), outputs=("L3.n0", "L3.n1")) -> Links:
    links = Links("L2.n0", FakeSocket, counters())
    links.set_inputs(list(inputs))
    for dst in outputs:
        links.add_output(dst)
    return links


def rule(kind=Backprop, fan_in=5, units=4, **kwargs):
    refused = []
    r = kind(RNG.normal(0, 0.5, (fan_in, units)).astype(np.float32), np.zeros(units, np.float32), counters(),
             np.random.default_rng(1), refused.append, **kwargs)
    return r, refused


# -- Links -------------------------------------------------------------------------------------------
def test_links_are_one_record_per_neighbour_with_slot_offset_and_socket():
    links = make_links(inputs=(("input", 2), ("L1.n0", 3), ("L1.n1", 4)))
    assert [(link.peer, link.slot, link.offset, link.width) for link in links.inputs] == [
        ("input", 0, 0, 2), ("L1.n0", 1, 2, 3), ("L1.n1", 2, 5, 4)]
    assert links.fan_in == 9 and links.input("input").socket is None, "MessengerIn takes no gradients"
    kept = links.input("L1.n1").socket
    links.set_inputs([("L1.n1", 4), ("L1.n2", 1)])
    assert links.input("L1.n1").socket is kept and links.input("L1.n1").slot == 0
    assert kept.closed is False and links.fan_in == 5
    with pytest.raises(FrameError) as err:
        links.input("L1.n0")
    assert err.value.kind == "former_link", "unlinked lately: what it sent is late, not bad"
    with pytest.raises(FrameError) as err:
        links.input("L7.n7")
    assert err.value.kind == "unknown_source"
    links.remove_output("L3.n0")
    with pytest.raises(FrameError) as err:
        links.output("L3.n0")
    assert err.value.kind == "former_link"
    assert [(link.peer, link.slot) for link in links.outputs] == [("L3.n1", 0)] and not links.is_end
    links.add_output("output")
    assert links.is_end and links.output("output").slot == 1


def test_links_connect_at_the_first_send_all_at_once_and_only_a_made_socket_is_closed():
    made = []
    links = Links("L2.n0", lambda peer: made.append(FakeSocket(peer)) or made[-1], counters())
    links.set_inputs([("input", 1), ("L1.n0", 3)])
    links.add_output("L3.n0")
    assert made == [], "a neuron starts without connecting its neighbours"
    links.send(links.output("L3.n0"), b"f1")
    assert [s.peer for s in made] == ["L1.n0", "L3.n0"], "the first send connects every link, the way back too"
    links.send(links.output("L3.n0"), b"f2")
    links.send_gradients([1], [1], np.ones((1, 4), np.float32))
    assert len(made) == 2 and made[1].sent == [b"f1", b"f2"] and len(made[0].sent) == 1, "one socket per link"
    links.add_output("L3.n1")
    links.set_inputs([("input", 1), ("L1.n1", 2)])
    assert made[0].closed and len(made) == 2, "a removed link closes its socket; a new one is not made yet"
    links.send(links.output("L3.n1"), b"f3")
    assert [s.peer for s in made[2:]] == ["L1.n1", "L3.n1"], "links added later connect at their first send"
    links.remove_output("L3.n0")
    links.close(0)
    assert all(s.closed for s in made)


def test_link_changes_are_checked_with_the_errors_of_the_control_api():
    links = make_links(outputs=("L3.n0",))
    change = lambda request, adding: links.check_change(op("add_link" if adding else "remove_link", request), adding)
    cases = [({"direction": "sideways", "peer": "x"}, True, "bad_request"),
             ({"direction": "in", "peer": "L1.n0", "width": 3}, True, "already_linked"),
             ({"direction": "in", "peer": "L1.n9"}, True, "bad_request"),
             ({"direction": "in", "peer": "L1.n9", "width": True}, True, "bad_request"),
             ({"direction": "out", "peer": "L3.n9"}, False, "not_found"),
             ({"direction": "out", "peer": "L3.n0"}, False, "last_link")]
    for request, adding, error in cases:
        with pytest.raises(Reply) as err:
            change(request, adding)
        assert err.value.error == error, request
    assert change({"direction": "in", "peer": "L1.n9", "width": 2}, True) == ("in", "L1.n9")


def test_a_full_queue_drops_and_counts_and_the_tap_mirrors_with_the_links_topic():
    links = Links("n", lambda peer: FakeSocket(peer, full=peer == "slow"), counters())
    links.set_inputs([("input", 1)])
    links.add_output("slow")
    links.add_output("fast")
    links.set_tap(FakeSocket())
    for link in links.outputs:
        links.send(link, b"frame")
    assert links.counters["dropped_sends"] == 1 and links.output("fast").socket.sent == [b"frame"]
    assert links.tap.sent == [[b"slow", b"frame"], [b"fast", b"frame"]]


def test_gradients_go_to_each_upstream_neuron_as_its_columns():
    links = make_links(inputs=(("input", 1), ("L1.n0", 3), ("L1.n1", 2)))
    dxs = [RNG.random((1, 6), dtype=np.float32), RNG.random((2, 6), dtype=np.float32)]
    links.send_gradients([10, 11], [1, 2], np.concatenate(dxs))
    for peer, start, end in (("L1.n0", 1, 4), ("L1.n1", 4, 6)):
        (frame,) = links.input(peer).socket.sent
        _, src, packets, rows, data = frames.decode(frame)
        got = frames.split_rows(data, rows, end - start)
        assert src == "L2.n0" and packets == [10, 11]
        assert all(np.array_equal(g, dx[:, start:end]) for g, dx in zip(got, dxs))


def test_relayout_keeps_the_rows_of_kept_links_and_makes_fresh_ones():
    w = np.arange(12, dtype=np.float32).reshape(6, 2)
    new = relayout(w, [("a", 2), ("b", 3), ("c", 1)], [("c", 1), ("a", 2), ("d", 2), ("b", 4)],
                   lambda width: np.full((width, 2), -1, np.float32))
    assert np.array_equal(new[0], w[5]) and np.array_equal(new[1:3], w[0:2])
    assert (new[3:] == -1).all(), "a new link and a resized one get fresh rows"


# -- Joins ---------------------------------------------------------------------------------------------
def test_a_join_completes_in_slot_order_and_a_late_part_is_dropped():
    c = counters()
    joins = Joins([2, 3], c, "missed_inputs", "concat", remember=2)
    out = []
    add(joins, 7, 1, np.ones((1, 3), np.float32), 0.0, out, True, b"m")
    assert out == [] and len(joins) == 1
    add(joins, 7, 0, np.zeros((1, 2), np.float32), 0.1, out, False, b"other")
    ((packet, x, learn, meta),) = each_packet(out)
    assert packet == 7 and x.tolist() == [[0, 0, 1, 1, 1]] and learn is True and meta == b"m"
    add(joins, 7, 0, np.zeros((1, 2), np.float32), 0.2, out)
    assert c["late"] == 1 and len(joins) == 0 and len(out) == 1
    for packet in (8, 9, 10):  # three more done: 7 is forgotten (remember=2)
        add(joins, packet, 0, np.zeros((1, 2), np.float32), 0.3, out)
        add(joins, packet, 1, np.zeros((1, 3), np.float32), 0.3, out)
    add(joins, 7, 0, np.zeros((1, 2), np.float32), 0.4, out)
    assert len(joins) == 1, "an id forgotten opens a join again"


def test_overdue_joins_go_on_with_zeros_and_count_what_was_missed():
    c = counters()
    joins = Joins([2, 3], c, "missed_inputs", "concat")
    out = []
    add(joins, 1, 0, np.full((2, 2), 5, np.float32), 0.0, out)
    add(joins, 2, 1, np.full((1, 3), 6, np.float32), 0.05, out)
    assert joins.next_deadline(0.2) == pytest.approx(0.2)
    assert joins.overdue(0.1, 0.2) == []
    ((packet, x, _, _),) = each_packet(joins.overdue(0.2, 0.2))
    assert packet == 1 and x.tolist() == [[5, 5, 0, 0, 0]] * 2 and c["missed_inputs"] == 1
    add(joins, 3, 0, np.zeros((1, 2), np.float32), 0.3, out)
    add(joins, 3, 1, np.zeros((2, 3), np.float32), 0.3, out)  # another row count than the first part
    assert out[-1].value.shape == (1, 5) and c["missed_inputs"] == 2


def test_too_many_open_joins_push_the_oldest_out_and_gradient_joins_sum():
    c = counters()
    joins = Joins([2, 2], c, "missed_gradients", "sum", limit=2)
    out = []
    for packet in (1, 2, 3):
        add(joins, packet, 0, np.full((1, 2), packet, np.float32), 0.0, out)
    assert [o[0] for o in each_packet(out)] == [1] and out[0].value.tolist() == [[1, 1]] and c["missed_gradients"] == 1
    add(joins, 2, 1, np.full((1, 2), 10, np.float32), 0.0, out)
    assert out[-1].packets == [2] and out[-1].value.tolist() == [[12, 12]]


def test_a_join_opened_before_a_link_was_added_keeps_its_count_of_parts():
    joins = Joins([4], counters(), "missed_gradients", "sum")
    out = []
    joins.resize([4, 4])  # one slot: parts complete at once; two from now on
    add(joins, 1, 0, np.ones((1, 4), np.float32), 0.0, out)
    joins.resize([4, 4, 4])
    add(joins, 1, 2, np.ones((1, 4), np.float32), 0.0, out)  # a slot the join does not have: ignored
    add(joins, 1, 1, np.ones((1, 4), np.float32), 0.0, out)
    assert [(o[0], o[1].tolist()) for o in each_packet(out)] == [(1, [[2, 2, 2, 2]])]


def test_one_input_needs_no_join_and_refused_parts_are_left_out():
    joins = Joins([3], counters(), "missed_inputs", "concat", remember=10)
    out = []
    blocks = [np.ones((1, 3), np.float32), None, np.zeros((2, 3), np.float32)]
    joins.add_all(0, blocks, [1, 2, 3], 0.0, out, [True, True, False], [b"a", b"b", b"c"])
    assert [(o[0], o[2], o[3]) for o in each_packet(out)] == [(1, True, b"a"), (3, False, b"c")] and len(joins) == 0


def test_frames_completing_many_joins_give_each_packet_its_own_value_in_one_go():
    for combine, expected in (("concat", lambda a, b: np.hstack([a, b])), ("sum", lambda a, b: a + b)):
        joins = Joins([2, 2], counters(), "missed_inputs", combine, remember=4)
        first = [RNG.random((n, 2), dtype=np.float32) for n in (1, 2, 1)]
        second = [RNG.random((n, 2), dtype=np.float32) for n in (1, 2, 1)]
        out = []
        joins.add_all(1, second[::-1], [3, 2, 1], 0.0, out, [False] * 3, [b"c", b"b", b"a"])
        joins.add_all(0, first, [1, 2, 3], 0.0, out, [True, False, True], [b"x", b"y", b"z"])
        assert [(o[0], o[2], o[3]) for o in each_packet(out)] == [(1, False, b"a"), (2, False, b"b"), (3, False, b"c")]
        assert len(out) == 1, "completed in one go: one run"
        for (_, value, _, _), a, b in zip(each_packet(out), first, second):
            assert np.array_equal(value, expected(a, b)), combine
        add(joins, 2, 0, first[1], 0.1, out)
        assert len(joins) == 0 and len(out) == 1, "a part of a packet just completed is late"


def test_frames_of_the_same_packets_are_joined_whole_without_taking_them_apart():
    for combine, expected in (("concat", lambda a, b: np.hstack([a, b])), ("sum", lambda a, b: a + b)):
        c = counters()
        joins = Joins([2, 2], c, "missed_inputs", combine, remember=8)
        a, b = RNG.random((4, 2), dtype=np.float32), RNG.random((4, 2), dtype=np.float32)
        out = []
        joins.add_frame(1, b, [1, 2, 1], [5, 6, 7], 0.0, out, [True, False, True], [b"x", b"y", b"z"])
        assert out == [] and len(joins) == 3
        joins.add_frame(0, a, [1, 2, 1], [5, 6, 7], 0.0, out, [False, False, False], [b"", b"", b""])
        (run,) = out
        assert run.packets == [5, 6, 7] and run.rows == [1, 2, 1] and run.learn == [True, False, True]
        assert run.metas == [b"x", b"y", b"z"] and np.array_equal(run.value, expected(a, b)) and len(joins) == 0
        joins.add_frame(0, a, [1, 2, 1], [5, 6, 7], 0.1, out)
        assert c["late"] == 3 and len(joins) == 0 and len(out) == 1, "the parts of packets gone on are late"


def test_another_grouping_of_a_bundles_packets_takes_it_apart_and_joins_them_one_by_one():
    joins = Joins([2, 3], counters(), "missed_inputs", "concat", remember=8)
    a, b = RNG.random((3, 2), dtype=np.float32), RNG.random((3, 3), dtype=np.float32)
    out = []
    joins.add_frame(0, a, [1, 1, 1], [1, 2, 3], 0.0, out, [True] * 3, [b"1", b"2", b"3"])
    joins.add_frame(1, b[:1], [1], [1], 0.1, out)  # the neighbour computed packet 1 alone, then 2 and 3
    joins.add_frame(1, b[1:], [1, 1], [2, 3], 0.1, out)
    got = each_packet(out)
    assert [(p, lrn, meta) for p, _, lrn, meta in got] == [(1, True, b"1"), (2, True, b"2"), (3, True, b"3")]
    assert all(np.array_equal(value, np.hstack([a[i:i + 1], b[i:i + 1]])) for i, (_, value, _, _) in enumerate(got))
    assert len(joins) == 0 and not joins.blocks and not joins.in_blocks
    joins.add_frame(0, a, [1, 1, 1], [9, 9, 9], 0.2, out)  # the same packet thrice (a bad frame): one join
    assert len(joins) == 1 and not joins.blocks


def test_an_overdue_block_join_goes_on_with_zeros_and_counts_every_packets_missing_part():
    c = counters()
    joins = Joins([2, 3], c, "missed_inputs", "concat")
    out = []
    joins.add_frame(0, np.full((3, 2), 5, np.float32), [1, 2], [1, 2], 0.0, out)
    assert joins.next_deadline(0.2) == pytest.approx(0.2) and joins.overdue(0.1, 0.2) == []
    (run,) = joins.overdue(0.2, 0.2)
    assert run.packets == [1, 2] and run.value.tolist() == [[5, 5, 0, 0, 0]] * 3 and c["missed_inputs"] == 2
    assert len(joins) == 0


def test_every_packet_is_joined_once_with_its_own_parts_whatever_the_frames_group():
    """Each input groups the same packets into frames its own way (as neighbours drain their inboxes at
    other moments), the frames interleaved at random: every packet comes out once, with its parts."""
    rng = np.random.default_rng(11)
    widths = [2, 3, 1]
    for trial in range(200):
        combine = ("concat", "sum")[trial % 2]
        c = counters()
        joins = Joins(widths if combine == "concat" else [2, 2, 2], c, "missed_inputs", combine, remember=64)
        packets = list(range(trial * 10, trial * 10 + 8))
        rows = rng.integers(1, 4, len(packets)).tolist()
        parts = [[rng.random((n, w if combine == "concat" else 2), dtype=np.float32) for n in rows]
                 for w in widths]
        frames_sent = []
        for slot in range(3):
            cuts = sorted(rng.choice(np.arange(1, 8), rng.integers(0, 4), replace=False).tolist())
            for start, end in zip([0, *cuts], [*cuts, 8]):
                frames_sent.append((slot, start, end))
        out = []
        for slot, start, end in (frames_sent[i] for i in rng.permutation(len(frames_sent))):
            joins.add_frame(slot, np.concatenate(parts[slot][start:end]), rows[start:end], packets[start:end], 0.0,
                            out, [True] * (end - start), [bytes([k]) for k in range(start, end)])
        got = {packet: (value, meta) for packet, value, _, meta in each_packet(out)}
        assert sorted(got) == packets and sum(len(run.packets) for run in out) == 8, trial
        for i, packet in enumerate(packets):
            pieces = [parts[slot][i] for slot in range(3)]
            expected = np.hstack(pieces) if combine == "concat" else pieces[0] + pieces[1] + pieces[2]
            assert np.allclose(got[packet][0], expected) and got[packet][1] == bytes([i]), (trial, packet)
        assert len(joins) == 0 and not joins.blocks and c["missed_inputs"] == 0 and c["late"] == 0


# -- LearningRule ----------------------------------------------------------------------------------------
def test_backprop_is_the_textbook_step_with_the_weights_before_the_update():
    r, _ = rule()
    x, y = RNG.random((1, 5), dtype=np.float32), RNG.random((1, 4), dtype=np.float32) - 0.5
    grad = RNG.random((1, 4), dtype=np.float32) * 0.1
    w, b = r.weights.copy(), r.bias.copy()
    keep(r, 3, x, y, 0.0)
    learnt, errors = r.on_gradients(gradients((3, grad)), 0.05, "tanh", 1.0)
    ((packet, dx),) = dx_of(learnt)
    expected_dx = backward(x, y, grad, w, b, "tanh", 0.05)
    assert packet == 3 and errors == [] and np.allclose(dx, expected_dx, atol=1e-6) and np.allclose(r.weights, w, atol=1e-6)
    assert r.counters["updates"] == 1 and r.counters["backwards"] == 1 and r.kept == 0
    assert r.on_gradients(gradients((3, grad)), 0.05, "tanh", 1.0) == (None, []) and r.counters["late"] == 1
    keep(r, 4, x, y, 0.0)
    learnt, (error,) = r.on_gradients(gradients((4, np.zeros((2, 4), np.float32))), 0.05, "tanh", 1.0)
    assert learnt is None and error.kind == "wrong_shape"


def test_a_bundle_is_one_step_whose_size_the_delay_since_each_forward_pass_sets():
    """Four passes kept, then gradients back in two bundles: the second's packets were computed before
    the first bundle's update, so their step is scaled by their delay (docs/neuron.md, "Staleness")."""
    r, _ = rule()
    xs = [RNG.random((1, 5), dtype=np.float32) for _ in range(4)]
    grads = [RNG.random((1, 4), dtype=np.float32) for _ in range(4)]
    y = np.zeros((1, 4), np.float32)
    for packet in range(4):
        keep(r, packet, xs[packet], y, 0.0)
    w0 = r.weights.copy()
    r.on_gradients(gradients((0, grads[0]), (1, grads[1])), 0.1, "linear", 1.0)
    w1 = w0 - 0.1 / np.sqrt(1 + 0 + 0.5) * sum(xs[i].T @ grads[i] for i in (0, 1))
    assert np.allclose(r.weights, w1, atol=1e-6)
    learnt, _ = r.on_gradients(gradients((3, grads[3]), (2, grads[2])), 0.1, "linear", 1.0)
    learnt = dx_of(learnt)
    assert [p for p, _ in learnt] == [3, 2] and np.allclose(learnt[0][1], grads[3] @ w1.T, atol=1e-6)
    w2 = w1 - 0.1 / np.sqrt(1 + 2 + 0.5) * sum(xs[i].T @ grads[i] for i in (2, 3))
    assert np.allclose(r.weights, w2, atol=1e-6) and r.counters["updates"] == 4


def test_a_kept_bundle_learns_the_same_whether_its_gradients_come_back_whole_or_otherwise():
    """The fast path (one kept bundle's packets, in order: its inputs and outputs taken whole) against
    the same gradients come back in another order: the same step, the same dx for each packet."""
    x, y = RNG.random((5, 5), dtype=np.float32), RNG.random((5, 4), dtype=np.float32) - 0.5
    grads = RNG.random((5, 4), dtype=np.float32)
    rows, packets, start = [2, 1, 2], [10, 11, 12], RNG.random((5, 4), dtype=np.float32)
    results = []
    for order in ([0, 1, 2], [2, 0, 1]):
        r, _ = rule()
        r.weights, w0 = start.copy(), start.copy()
        r.keep(packets, rows, x, y, [True] * 3, 0.0)
        blocks = frames.slices(grads, rows)
        run = Run([packets[i] for i in order], np.concatenate([blocks[i] for i in order]), [rows[i] for i in order],
                  [False] * 3, [b""] * 3)
        learnt, errors = r.on_gradients([run], 0.1, "tanh", 1.0)
        assert errors == [] and r.kept == 0 and r.counters["backwards"] == 3
        results.append((dict(dx_of(learnt)), r.weights.copy(), w0))
    (whole, w_whole, w0), (other, w_other, _) = results
    assert np.allclose(w_whole, w_other, atol=1e-6) and not np.allclose(w_whole, w0)
    assert all(np.allclose(whole[p], other[p], atol=1e-6) for p in packets)
    expected = (grads * (1 - y * y)) @ w0.T
    assert all(np.allclose(whole[p], expected[s], atol=1e-6) for p, s in zip(packets, (slice(0, 2), slice(2, 3), slice(3, 5))))


def test_the_stash_rule_computes_dx_with_the_weights_the_forward_pass_used():
    r, _ = rule(staleness="stash", group=2)
    x, y, grad = RNG.random((1, 5), dtype=np.float32), np.zeros((1, 4), np.float32), np.ones((1, 4), np.float32)
    keep(r, 0, x, y, 0.0)
    keep(r, 1, x, y, 0.0)
    w0 = r.weights.copy()
    r.on_gradients(gradients((0, grad), (1, grad)), 0.1, "linear", 1.0)
    assert not np.allclose(r.weights, w0), "a whole group: one update"
    keep(r, 2, x, y, 0.0)
    learnt, _ = r.on_gradients(gradients((2, grad)), 0.1, "linear", 1.0)
    ((_, dx),) = dx_of(learnt)
    assert np.allclose(dx, grad @ r.weights.T) and r.staleness.count == 1


def test_a_non_finite_gradient_is_refused_alone_and_a_huge_one_clipped():
    r, refused = rule()
    w, b = r.weights.copy(), r.bias.copy()
    x = RNG.random((1, 5), dtype=np.float32)
    keep(r, 0, x, np.zeros((1, 4), np.float32), 0.0)
    with np.errstate(over="ignore"):  # a norm beyond float32 (numpy would warn of the overflow)
        r.on_gradients(gradients((0, np.full((1, 4), 1e30, np.float32))), 0.1, "linear", 1.0)
    assert np.array_equal(r.weights, w) and r.counters["refused_updates"] == 1
    keep(r, 1, x, np.zeros((1, 4), np.float32), 0.0)
    keep(r, 5, x, np.zeros((1, 4), np.float32), 0.0)
    learnt, _ = r.on_gradients(gradients((1, np.array([[np.nan, 1, 1, 1]], np.float32)), (5, np.ones((1, 4), np.float32))),
                               0.1, "linear", 1.0)
    learnt = dx_of(learnt)
    assert not learnt[0][1].any() and learnt[1][1].any(), "the bad packet sends zeros, the good one its dx"
    assert np.isfinite(r.weights).all() and not np.array_equal(r.weights, w), "the good packet was learnt from"
    assert r.counters["refused_updates"] == 2 and len(refused) == 2
    w, bias = r.weights.copy(), r.bias.copy()
    keep(r, 2, x, np.zeros((1, 4), np.float32), 0.0)
    r.on_gradients(gradients((2, np.full((1, 4), 1e6, np.float32))), 0.1, "linear", 1.0)
    step = np.sqrt(((r.weights - w) ** 2).sum() + ((r.bias - bias) ** 2).sum())
    assert np.isfinite(r.weights).all() and step == pytest.approx(0.1 * MAX_GRAD_NORM, rel=1e-3)
    assert r.counters["clipped_updates"] == 1


def test_a_bundle_at_the_end_learns_as_its_packets_would_and_refuses_only_a_bad_target():
    x = RNG.random((3, 5), dtype=np.float32)
    y = np.full((3, 4), 0.25, np.float32)
    together, _ = rule()
    alone, _ = rule()
    alone.weights, alone.bias = together.weights.copy(), together.bias.copy()
    learnt, losses, errors = together.on_targets([0, 1, 2], [1, 1, 1], x, y, [[0], [1], [2]], 0.1, "softmax", 1.0)
    assert errors == [] and losses == pytest.approx({p: -np.log(0.25) for p in range(3)})
    dz = np.concatenate([output_gradient(y[p:p + 1], [p], "softmax")[0] for p in range(3)])
    expected = alone.learn([0, 1, 2], [1, 1, 1], x, dz, [0, 0, 0], 0.1, 1.0)
    assert np.array_equal(learnt.dx, expected.dx) and learnt.packets == [0, 1, 2]
    assert np.array_equal(together.weights, alone.weights)
    learnt, losses, (error,) = together.on_targets([0, 1, 3], [1, 1, 1], x, y, [[0], [1], [9]], 0.1, "softmax", 1.0)
    assert learnt.packets == [0, 1] and set(losses) == {0, 1} and error.kind == "bad_target"


def test_targets_that_are_not_finite_teach_nothing_and_give_no_loss():
    r, _ = rule(fan_in=3, units=2)
    w = r.weights.copy()
    x, y = np.ones((1, 3), np.float32), np.zeros((1, 2), np.float32)
    learnt, losses, errors = r.on_targets([1], [1], x, y, [[[np.nan, 0.0]]], 0.1, "linear", 1.0)
    assert losses == {1: None} and errors == [] and np.array_equal(r.weights, w) and not learnt.dx.any()
    _, losses, _ = r.on_targets([2], [1], x, y, [[[1.0, 0.0]]], 0.1, "linear", 1.0)
    assert losses[2] == pytest.approx(0.5) and not np.array_equal(r.weights, w)
    learnt, losses, (error,) = r.on_targets([3], [1], x, y, [[[1.0]]], 0.1, "linear", 1.0)
    assert learnt is None and losses == {} and error.kind == "bad_target"


def test_a_frozen_rule_passes_gradients_and_keeps_its_weights_and_passes_expire():
    r, _ = rule()
    w = r.weights.copy()
    x, dz = RNG.random((2, 5), dtype=np.float32), RNG.random((2, 4), dtype=np.float32)
    keep(r, 7, x, np.zeros((2, 4), np.float32), 0.0)
    learnt, _ = r.on_gradients(gradients((7, dz)), None, "linear", 1.0)
    assert np.allclose(learnt.dx, dz @ w.T) and np.array_equal(r.weights, w) and r.counters["updates"] == 0
    keep(r, 1, x, dz, 0.0)
    keep(r, 2, x, dz, 5.0)
    assert r.next_expiry() == pytest.approx(10.0)
    r.expire(10.0)
    assert r.kept == 1 and r.counters["expired"] == 1
    r.forget()
    assert r.kept == 0 and r.counters["expired"] == 2


def test_the_output_gradients_of_a_bundle_are_each_packets_own_whatever_its_rows():
    for activation, target_of in (("softmax", lambda n: RNG.integers(0, 4, n).tolist()),
                                  ("tanh", lambda n: RNG.random((n, 4)).tolist())):
        ys = [RNG.random((n, 4)).astype(np.float32) for n in (1, 3, 2, 1)]
        if activation == "softmax":
            ys = [y / y.sum(axis=1, keepdims=True) for y in ys]
        targets = [target_of(len(y)) for y in ys]
        dz, losses = output_gradients(np.concatenate(ys), [len(y) for y in ys], targets, activation)
        alone = [output_gradient(y, t, activation) for y, t in zip(ys, targets)]
        assert np.allclose(dz, np.concatenate([a[0] for a in alone]), rtol=1e-5)
        assert losses == pytest.approx([a[1] for a in alone], rel=1e-5)
    with pytest.raises(ValueError):  # a packet of 3 rows with 2 labels: the caller takes them one by one
        output_gradients(np.full((3, 4), 0.25, np.float32), [3], [[0, 1]], "softmax")


def test_update_norm_is_the_norm_of_the_weight_and_bias_gradient_and_a_big_bundle_gives_the_gradient():
    for rows in (1, 3, 64):
        x, dz = RNG.random((rows, 5), dtype=np.float32), RNG.random((rows, 4), dtype=np.float32)
        explicit = ((x.T @ dz) ** 2).sum() + (dz.sum(axis=0) ** 2).sum()
        norm_sq, grad = update_norm_sq(x, dz)
        assert norm_sq == pytest.approx(explicit, rel=1e-5)
        if rows * rows > 5 * 4:  # formed: the update takes it as it is
            assert np.allclose(grad[0], x.T @ dz, rtol=1e-5) and np.allclose(grad[1], dz.sum(axis=0), rtol=1e-5)
        else:
            assert grad is None
    assert not np.isfinite(update_norm_sq(np.full((1, 5), np.inf, np.float32), np.ones((1, 4), np.float32))[0])


def test_local_rules_learn_at_the_forward_pass_and_from_dopamine_and_refuse_what_is_not_finite():
    oja, _ = rule(Oja)
    w = oja.weights.copy()
    x = RNG.random((2, 5), dtype=np.float32)
    oja.on_forward(x, x @ w, [slice(0, 1), slice(1, 2)], 0.01, "linear", 1.0, 0.0)
    for i in range(2):
        oja_update(x[i:i + 1], w, 0.01)
    assert np.allclose(oja.weights, w, atol=1e-6) and oja.counters["updates"] == 2
    oja.on_forward(np.full((1, 5), np.nan, np.float32), np.zeros((1, 4), np.float32), [slice(0, 1)], 0.01, "linear", 1.0, 0.0)
    assert np.isfinite(oja.weights).all() and oja.counters["refused_updates"] == 1
    tf, _ = rule(ThreeFactor)
    w = tf.weights.copy()
    y = tf.on_forward(x, np.full((2, 4), 0.25, np.float32), [slice(0, 2)], 0.1, "softmax", 1.0, 0.0)
    assert sorted(y.sum(axis=1).tolist()) == [1.0, 1.0], "a softmax layer sends one chosen action, one-hot"
    tf.on_reward(float("nan"), 0.1, 0.0)
    assert np.array_equal(tf.weights, w) and tf.counters["refused_updates"] == 1
    tf.on_forward(x, np.full((2, 4), 0.25, np.float32), [slice(0, 2)], 0.1, "softmax", 1.0, 0.0)
    tf.on_reward(1.0, 0.1, 0.0)
    assert not np.array_equal(tf.weights, w) and np.isfinite(tf.weights).all()
    assert isinstance(make_rule("three_factor", w, np.zeros(4, np.float32), counters(), RNG, print), ThreeFactor)


def test_weight_statistics_never_raise_on_what_is_not_finite():
    stats = weight_statistics(np.array([[1.0, np.nan], [np.inf, 3.0]], np.float32))
    assert stats["non_finite"] == 2 and stats["mean"] == 2.0 and sum(stats["histogram"]) == 2
    assert weight_statistics(np.full((2, 2), np.nan, np.float32))["mean"] is None


# -- Receptors -----------------------------------------------------------------------------------------------
def publication(**changes) -> list[bytes]:
    body = {"levels": {"norepinephrine": 2.0}, "rest": {"norepinephrine": 1.0}, "state": "awake", "seq": 1,
            "rewards": 0, "rpe": 0.0, **changes}
    return [b"levels", pack(body)]


def test_receptors_derive_modulation_and_say_what_to_act_on():
    receptors, bad = Receptors("cortex", {"norepinephrine": 1.0}, None), BadFrames("test")
    assert receptors.modulation == NEUTRAL and receptors.learning_rate(0.1) == 0.1 and receptors.socket is None
    effects = receptors.take([publication(), publication(rewards=2, rpe=0.5, seq=2, state="meditative")], bad)
    assert effects == [(None, "awake"), (0.5, "meditative")]
    assert receptors.learning_rate(0.1) == pytest.approx(0.2) and receptors.rewards == 2 and receptors.seq == 2
    assert receptors.take([publication(state="meditative", seq=3)], bad) == [(None, None)], "no change, nothing to do"
    assert receptors.take([[b"levels"], publication(state="asleep"), publication(levels=3)], bad) == []
    assert bad.by_kind == {"malformed": 1, "bad_levels": 2} and receptors.seq == 3
    assert receptors.set_state("maintenance", "manual") and not receptors.set_state("maintenance", "region")


# -- Persistence ----------------------------------------------------------------------------------------------
def test_where_a_starting_neuron_gets_its_weights():
    assert start_plan(saved=True, died=False, policy="replace", twin=False, seed_requested=False) == "restore"
    assert start_plan(True, True, "restore", False, False) == "restore"
    assert start_plan(True, True, "replace", False, False) == "seed"
    assert start_plan(False, False, "replace", True, False) == "twin"
    assert start_plan(False, False, "replace", False, True) == "seed"
    assert start_plan(False, False, "replace", False, False) == "fresh"


def start(p: Persistence, policy="replace", siblings=()):
    return p.start(policy, False, (3, 2), RNG, fresh=lambda: (np.ones((3, 2), np.float32), np.zeros(2, np.float32)),
                   relay=lambda w, layout: w, siblings=lambda: list(siblings))


def test_persistence_creates_on_first_flush_restores_a_clean_stop_and_replaces_after_a_death(tmp_path):
    path, c = str(tmp_path / "neurons" / "n"), counters()
    p = Persistence(path, "n", Recorder(), c)
    w, b, origin, saved = start(p)
    assert origin == {"fresh": True} and saved is None and not os.path.exists(path) and not p.dirty
    c["updates"] += 1
    assert p.dirty
    p.flush(lambda: (w * 2, b, {"inputs": ["a"], "widths": {"a": 3}}, c), 1.0)
    assert not p.dirty and p.status()["flushes"] == 1 and p.status()["persistence"] == "ok"
    p.close(clean=True)
    p1 = Persistence(path, "n", Recorder(), counters())
    w2, _, origin, saved = start(p1)
    assert origin == {"restored": {"flushes": 1, "after": "polite stop"}} and (w2 == 2).all() and saved.counters["updates"] == 1
    p1.close(clean=False)
    p2 = Persistence(path, "n", Recorder(), counters())  # the last run did not stop politely
    sibling = ("n2", np.full((3, 2), 5, np.float32), np.zeros(2, np.float32))
    w3, _, origin, _ = start(p2, siblings=[sibling])
    assert origin["seeding"]["method"] == "siblings_mean" and abs(w3 - 5).max() < 0.1
    p2.close(clean=False)
    p3 = Persistence(path, "n", Recorder(), counters())
    _, _, origin, _ = start(p3)
    assert origin == {"fresh": True}, "the dead one's DB was discarded, and nothing flushed since"
    p3.close(clean=False)


def test_a_database_that_cannot_be_written_degrades_and_recovers(tmp_path):
    path, c, events = str(tmp_path / "neurons" / "n"), counters(), Recorder()
    os.makedirs(os.path.dirname(path))
    with open(path, "w") as f:  # where the DB should be, a file: LevelDB cannot open it
        f.write("not a database")
    p = Persistence(path, "n", events, c)
    w, b, origin, _ = start(p)
    assert p.status()["persistence"] == "degraded" and p.dirty, "in memory only: to be written when it can be"
    assert [e for e, _ in events.events] == ["flush_failed"] and events.events[0][1]["persistence"] == "degraded"
    p.flush(lambda: (w, b, {}, c), 0.01)
    assert c["flush_errors"] == 1 and p.next_flush > 0 and len(events.events) == 1, "one event, every failure counted"
    os.remove(path)
    p.flush(lambda: (w, b, {}, c), 0.01)
    assert p.status()["persistence"] == "ok" and p.status()["flushes"] == 1 and not p.dirty
    assert events.events[-1] == ("flush_recovered", {"id": "n", "flushes": 1, "persistence": "ok"})
    p.close(clean=True)


def test_a_database_that_cannot_be_opened_in_place_is_read_from_a_copy(tmp_path):
    """As on a full disk, where opening needs space: the replacement still restores the last flush."""
    path, c = str(tmp_path / "neurons" / "n"), counters()
    p = Persistence(path, "n", Recorder(), c)
    start(p)
    c["updates"] += 1
    p.flush(lambda: (np.full((3, 2), 7, np.float32), np.zeros(2, np.float32), {}, c), 1.0)
    p.close(clean=True)
    holder = plyvel.DB(path)  # holds the lock: this process cannot open it a second time
    try:
        p2 = Persistence(path, "n", Recorder(), counters())
        w, _, origin, saved = start(p2, policy="restore")
    finally:
        holder.close()
    assert p2.status()["persistence"] == "degraded" and "lock" in p2.status()["persistence_detail"]
    assert origin == {"restored": {"flushes": 1, "after": "polite stop"}} and (w == 7).all()
    assert saved.counters["updates"] == 1 and os.path.isdir(path), "the database itself untouched"
    p2.flush(lambda: (w, np.zeros(2, np.float32), {}, counters()), 1.0)
    assert p2.status()["persistence"] == "ok" and p2.status()["flushes"] == 2
    p2.close(clean=True)


# -- the Pipeline over the parts ------------------------------------------------------------------------------------
def test_a_bundle_with_a_non_finite_packet_is_answered_for_the_others():
    links = make_links(inputs=(("input", 3),), outputs=("output",))
    r, _ = rule(fan_in=3, units=2)
    c = links.counters
    r.counters = c
    pipeline = Pipeline("L9.n0", 2, links, r, Receptors("cortex", {}, None), {
        "activation": "linear", "learning_rate": 0.1, "join_timeout_ms": 200}, c, BadFrames("test"))
    meta = pack({"targets": [[1.0, 0.0]]})
    rows = [np.ones((1, 3), np.float32), np.array([[1, np.nan, 1]], np.float32), np.ones((1, 3), np.float32)]
    pipeline.handle([frames.encode_forward("input", [1, 2, 3], rows, [True] * 3, [meta] * 3)])
    (frame,) = links.output("output").socket.sent
    _, _, packets, _, _, _, losses = frames.decode(frame, (frames.OUTPUT,))
    assert packets == [1, 3] and all(loss is not None for loss in losses)
    assert c["non_finite_inputs"] == 1 and pipeline.bad.by_kind == {"non_finite": 1} and c["updates"] == 2
    assert np.isfinite(r.weights).all()


def test_the_end_node_learns_from_the_packets_of_a_bundle_that_have_targets_and_answers_every_one():
    """A bundle at the end mixing asks and learning packets: the learning ones are one step, as alone."""
    x = RNG.random((5, 3), dtype=np.float32)
    rows, learn = [2, 1, 2], [True, False, True]
    metas = [pack({"targets": [[1.0, 0.0], [0.0, 1.0]]}), pack({}), pack({"targets": [[0.0, 1.0], [1.0, 0.0]]})]
    outcomes = []
    for frame in (frames.encode_forward("input", [1, 2, 3], frames.slices(x, rows), learn, metas),
                  frames.encode_forward("input", [1, 3], [x[:2], x[3:]], [True, True], [metas[0], metas[2]])):
        links = make_links(inputs=(("input", 3),), outputs=("output",))
        r, _ = rule(fan_in=3, units=2)
        r.weights, r.counters = np.full((3, 2), 0.1, np.float32), links.counters
        pipeline = Pipeline("L9.n0", 2, links, r, Receptors("cortex", {}, None), {
            "activation": "linear", "learning_rate": 0.1, "join_timeout_ms": 200}, links.counters, BadFrames("test"))
        pipeline.handle([frame])
        (sent,) = links.output("output").socket.sent
        _, _, packets, _, _, _, losses = frames.decode(sent, (frames.OUTPUT,))
        outcomes.append((packets, losses, r.weights.copy(), links.counters["updates"]))
    (packets, losses, mixed, updates), (_, alone_losses, alone, _) = outcomes
    assert packets == [1, 2, 3] and losses[1] is None and [losses[0], losses[2]] == pytest.approx(alone_losses)
    assert updates == 2 and np.allclose(mixed, alone) and not np.allclose(mixed, 0.1)


def test_activity_taken_in_together_equals_each_bundle_taken_in_at_once():
    rng, activity, mean_abs, saturation = np.random.default_rng(3), Activity(), None, None
    for i in range(FOLD + 150):  # past one fold, with snapshots between
        activation = ("tanh", "sigmoid", "softmax")[i % 3]
        y = np.tanh(rng.normal(0, 2, (1 + i % 4, 6))).astype(np.float32)
        near = {"tanh": np.abs(y) > SATURATED, "sigmoid": (y > SATURATED) | (y < 1 - SATURATED)}.get(activation)
        share = 0.0 if near is None else float(near.mean())
        mean_abs = float(np.abs(y).mean()) if mean_abs is None else (1 - SMOOTHING) * mean_abs + SMOOTHING * float(np.abs(y).mean())
        saturation = share if saturation is None else (1 - SMOOTHING) * saturation + SMOOTHING * share
        activity.note_outputs(y, activation)
        if i % 97 == 0:
            assert activity.snapshot()["mean_abs"] == pytest.approx(mean_abs, abs=1e-6)
    snapshot = activity.snapshot()
    assert snapshot["mean_abs"] == pytest.approx(mean_abs, abs=1e-6) and snapshot["saturation"] == pytest.approx(saturation, abs=1e-12)
    assert 0 < snapshot["saturation"] < 1 and activity.noted == []


def test_a_big_bundles_activity_is_judged_by_rows_spread_over_all_of_it():
    activity = Activity()
    y = np.concatenate([np.full((1000, 4), 0.99, np.float32), np.full((1000, 4), 0.1, np.float32)])
    activity.note_outputs(y, "tanh")
    assert len(activity.noted[0]) == SAMPLED_ROWS, "a batched bundle costs the figures no more than 64 rows"
    snapshot = activity.snapshot()
    assert snapshot["saturation"] == pytest.approx(0.5, abs=0.02), "rows from its whole length, not its head"
    assert snapshot["mean_abs"] == pytest.approx(float(y.mean()), abs=0.02)


# -- requests ---------------------------------------------------------------------------------------------------------
def op(name: str, request: dict):
    """A request's arguments as the neuron's handler of ``name`` takes them (a bad one: Reply bad_request)."""
    return arguments(name, NEURON_ARGS[name], request)


def test_set_params_and_inject_requests_refuse_what_is_not_finite_or_does_not_fit():
    w, b = np.zeros((2, 2), np.float32), np.zeros(2, np.float32)
    wire = frames.array_to_wire
    for request, error in (({}, "bad_request"), ({"weights": wire(np.zeros((3, 2), np.float32))}, "wrong_shape"),
                           ({"bias": wire(np.array([np.nan, 0], np.float32))}, "non_finite"),
                           ({"weights": wire(np.full((2, 2), 3e38, np.float32)), "add": True}, "non_finite"),
                           ({"learning_rate": float("inf")}, "bad_request"), ({"learning_rate": True}, "bad_request"),
                           ({"activation": "cosine"}, "bad_request"), ({"weights": {"shape": [2]}}, "bad_request"),
                           ({"weights": {"shape": [2, 2], "data": b"\0" * 3}}, "bad_request"),
                           ({"frozen": 1}, "bad_request"), ({"learning_rate": 0.1, "colour": "red"}, "bad_request")):
        with pytest.raises(Reply) as err:
            checked_set_params(op("set_params", request), w if "add" not in request else np.full((2, 2), 3e38, np.float32), b)
        assert err.value.error == error, request
    new_w, new_b, settings, flags = checked_set_params(op("set_params", {"bias": wire(np.ones(2, np.float32)), "add": True,
                                                                         "learning_rate": 0.5, "frozen": True}), w, b)
    assert (new_b == 1).all() and new_w is w and settings == {"learning_rate": 0.5} and flags == {"frozen": True}
    for vector, error in (([1.0], "wrong_shape"), ([1.0, float("nan")], "non_finite"), ([1.0, 1e300], "non_finite"),
                          ([1.0, "a"], "bad_request")):
        with pytest.raises(Reply) as err:
            checked_vector(vector, 2, "n")
        assert err.value.error == error
    assert checked_vector([1, 2], 2, "n").tolist() == [[1.0, 2.0]]


def test_a_frame_from_a_neighbour_unlinked_lately_is_late_and_one_never_linked_is_bad():
    links = make_links(inputs=(("L1.n0", 3), ("L1.n1", 3)), outputs=("L3.n0",))
    r, _ = rule(fan_in=6, units=2)
    r.counters = c = links.counters
    pipeline = Pipeline("L2.n0", 2, links, r, Receptors("cortex", {}, None), {
        "activation": "linear", "learning_rate": 0.1, "join_timeout_ms": 200}, c, BadFrames("test"))
    pipeline.set_inputs([("L1.n1", 3)], lambda weights, layout: weights[3:])
    row = [np.ones((1, 3), np.float32)]
    pipeline.handle([frames.encode_forward("L1.n0", [1, 2], row * 2, [False] * 2, [b""] * 2),
                     frames.encode_forward("L9.n9", [3], row, [False], [b""]),
                     frames.encode_forward("L1.n1", [4], row, [False], [b""])])
    assert c["late"] == 2 and pipeline.bad.by_kind == {"unknown_source": 1}
    (frame,) = links.output("L3.n0").socket.sent
    assert frames.decode(frame)[2] == [4], "the frame from the input it has is computed"


# -- Returns: each packet's answer to its origin ---------------------------------------------------------
def test_each_packet_is_answered_in_the_units_and_labels_its_meta_and_the_topology_say():
    outputs = np.array([[0.1, 0.7, 0.2], [0.6, 0.3, 0.1], [0.2, 0.2, 0.6], [0.5, 0.4, 0.1], [3.0, 1.0, 2.0]],
                       dtype=np.float32)
    metas = [pack({"origin": "ipc:///a", "targets": [1, 0, 0]}), b"not msgpack \xc1",
             pack({"origin": "ipc:///b", "units": {"offset": [1, 1, 1], "factor": [2, 2, 2]}}),
             pack({"origin": "ipc:///a", "targets": [1, 2], "recalled": 1})]
    # packet 10: two rows, the second recalled by awake replay (taken off, its loss recomputed on the first)
    answers = answers_of([7, 8, 9, 10], [1, 1, 1, 2], outputs, metas, [0.5, None, None, 9.9], "softmax",
                         {"decode": "label", "labels": ["a", "b"]})
    assert [a.result["packet"] for a in answers] == [7, 8, 9, 10]
    assert answers[0].result["label"] == [1] and answers[0].result["text"] == ["b"] and answers[0].result["loss"] == 0.5
    assert answers[1].meta == {} and answers[1].result["label"] == [0]  # a meta that is not a map: no origin
    assert np.frombuffer(answers[2].result["output"], "<f4").tolist() == pytest.approx([1.4, 1.4, 2.2])
    assert answers[2].result["text"] == ["2"]  # a class the topology does not name: its index
    tenth = answers[3]
    assert tenth.result["rows"] == 1 and tenth.outputs.shape == (1, 3) and tenth.meta["targets"] == [1]
    assert tenth.result["loss"] == pytest.approx(-np.log(0.4), rel=1e-4) and tenth.result["width"] == 3
    assert "label" not in answers_of([1], [1], outputs[:1], [b""], [None], "tanh", {"decode": "vector"})[0].result


@pytest.mark.timeout(30)
def test_returns_send_one_message_per_origin_and_count_what_they_could_not_send(tmp_path):
    ctx = zmq.Context()
    pulls = {name: ctx.socket(zmq.PULL) for name in ("a", "b")}
    try:
        for name, sock in pulls.items():
            sock.bind(f"ipc://{tmp_path}/{name}.ret")
        count, bad = dict.fromkeys(("returned", "dropped_returns", "no_origin"), 0), BadFrames("t")
        returns = Returns(ctx, count, bad, {})
        metas = [pack({"origin": f"ipc://{tmp_path}/a.ret"}), pack({"origin": f"ipc://{tmp_path}/b.ret"}),
                 pack({"origin": f"ipc://{tmp_path}/a.ret"}), pack({"source": "dreams"}), pack({"origin": "nowhere"})]
        outputs = np.eye(5, 3, dtype=np.float32)
        returns.send([1, 2, 3, 4, 5], [1] * 5, outputs, metas, [None] * 5, "softmax")
        assert pulls["a"].poll(5000) and pulls["b"].poll(5000)
        assert [r["packet"] for r in unpack(pulls["a"].recv())] == [1, 3]  # one message for both of a's
        assert [r["packet"] for r in unpack(pulls["b"].recv())] == [2]
        assert not pulls["a"].poll(100)
        assert count == {"returned": 3, "dropped_returns": 1, "no_origin": 1}, count
        assert bad.by_kind == {"bad_origin": 1}
        # past MAX_ORIGINS, the least recently used socket is closed: a returning origin gets a new one
        for i in range(MAX_ORIGINS + 1):
            returns.send([i], [1], outputs[:1], [pack({"origin": f"ipc://{tmp_path}/o{i}.ret"})], [None], "softmax")
        assert len(returns.origins) == MAX_ORIGINS and f"ipc://{tmp_path}/a.ret" not in returns.origins
    finally:
        for sock in pulls.values():
            sock.close(linger=0)
        ctx.destroy(linger=0)
