"""The dreams in flight in the maintenance pool: those lost there (a twin killed while it held them) are
counted lost at their deadline and make room for the next, so the worker keeps dreaming; a first-layer
twin that stops reading refuses dreams once its queue is full (``dream_queue``), while the others keep
taking them."""
import contextlib
import os
import signal

import pytest
import zmq

from _brainutil import network_that_sleeps, wait_until
from neurox.brain._maintenance import DREAM_BATCH, DREAMS_IN_FLIGHT, dream_deadline
from neurox.brain._sleep import DREAM_MARGIN_S, DreamsInFlight, SleepConfig, dream_deadline_s
from neurox.neuron import load_topology, parse_topology
from neurox.runtime import ControlClient
from neurox.supervisor_tree import SupervisorClient, control_endpoint


# -- pure ------------------------------------------------------------------------------------------
def test_a_dream_leaves_the_flight_when_it_comes_out_or_its_deadline_passes_and_never_twice():
    dreams = DreamsInFlight(deadline_s=2.0)
    for packet, sent_at in ((1, 0.0), (2, 0.5), (3, 0.8), (4, 1.5)):
        dreams.send(packet, sent_at)
    assert dreams.came_out([2]) == (1, 0) and len(dreams) == 3
    assert dreams.overdue(1.99) == []
    assert dreams.overdue(2.0) == [1] and len(dreams) == 2  # sent at 0.0: lost at 2.0
    assert dreams.report(2.0) == 1
    assert dreams.overdue(2.85) == [3]  # 4 (sent at 1.5) still has until 3.5
    assert dreams.report(2.85) == 0, "a report a second at most"
    dreams.send(5, 2.85)
    # 3 comes out after it was counted lost, and twice: late both times, nothing in flight leaves for it
    assert dreams.came_out([3, 4, 3, 5]) == (2, 2) and len(dreams) == 0
    assert dreams.overdue(100.0) == []
    assert dreams.report(3.0) == 1 and dreams.report(9.0) == 0  # the loss of 3, once

    ending = DreamsInFlight(deadline_s=0.5)
    ending.send(1, 0.0)
    ending.send(2, 0.1)
    assert ending.overdue(0.5) == [1] and ending.report(0.5) == 1
    assert ending.overdue(0.6) == [2] and ending.report(0.6) == 0
    assert ending.report(0.6, final=True) == 1 and ending.report(10.0) == 0  # the maintenance ends: said now


def test_with_losses_the_bound_in_flight_still_lets_dreams_through():
    """The worker's loop in miniature: every third dream is lost in the pool, the others come out a tick
    later. Without a deadline the bound would be taken by lost dreams after four losses."""
    dreams, lost, sent, tick = DreamsInFlight(deadline_s=1.0), [], 0, 0.05
    coming_out: list[int] = []
    for step in range(400):  # 20 s
        now = step * tick
        dreams.came_out(coming_out)
        lost += dreams.overdue(now)
        coming_out = []
        if len(dreams) < DREAMS_IN_FLIGHT:
            sent += 1
            dreams.send(sent, now)
            if sent % 3:
                coming_out.append(sent)
    assert lost == list(range(3, sent + 1, 3))[:len(lost)] and len(lost) >= sent // 3 - DREAMS_IN_FLIGHT, (lost, sent)
    assert sent > 50 * DREAMS_IN_FLIGHT, sent  # without the deadline: 3 * DREAMS_IN_FLIGHT at most


def test_the_deadline_adds_up_the_joins_a_dream_may_wait_in():
    assert dream_deadline_s([200, 200, 200]) == pytest.approx(0.4 + DREAM_MARGIN_S)  # the first layer has no join
    assert dream_deadline_s([5, 1000, 2000], margin_s=0.5) == pytest.approx(3.5)
    diamond = load_topology()  # 1-2-3-2-1, join_timeout_ms 200
    assert dream_deadline(diamond) == pytest.approx(0.8 + DREAM_MARGIN_S)
    diamond.layers[2].settings["join_timeout_ms"] = 1000
    assert dream_deadline(diamond) == pytest.approx(1.6 + DREAM_MARGIN_S)
    assert SleepConfig().dream_queue == 10000
    with pytest.raises(ValueError, match=r"^maintenance.dream_queue: accepted int >= 1, got 0$"):
        SleepConfig.from_table({"dream_queue": 0})


# -- live ------------------------------------------------------------------------------------------
@contextlib.contextmanager
def dreaming(network, watch):
    """The network's maintenance asked for now, and started: its events, the worker's control client, the
    pool's supervisor, and a list for the twins the test SIGSTOPs (let go again on the way out)."""
    events = watch(network.tree)
    sleeper = ControlClient(zmq.Context.instance(), control_endpoint(network.run_dir, "root/maintenance"), 10)
    pool = SupervisorClient(control_endpoint(network.run_dir, "root/maintenance_pool"))
    stopped: list[int] = []
    try:
        sleeper.call("sleep_now")
        events.wait_for("maintenance_started", timeout=30)
        yield events, sleeper, pool, stopped
    finally:
        for pid in stopped:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
        sleeper.close()
        pool.close()


def _twins(pool: SupervisorClient) -> dict[str, int]:
    return {c["id"]: c["pid"] for c in pool.which_children() if c["pid"]}


@pytest.mark.timeout(60)
def test_dreams_lost_with_a_killed_twin_are_counted_and_the_worker_keeps_dreaming(tmp_path, watch, no_stray_processes):
    """The end twin is stopped first, so that it holds the dreams in flight when it is SIGKILLed (a dream
    crosses the pool in milliseconds: a twin killed at a random moment seldom holds one)."""
    topology = load_topology()
    topology.defaults["join_timeout_ms"] = 100  # a deadline of 0.4 + 1.0 s
    with network_that_sleeps(topology, tmp_path) as network, \
            dreaming(network, watch) as (events, sleeper, pool, stopped):
        wait_until(lambda: sleeper.call("status"), lambda s: s["dreamt"] >= 5 * DREAM_BATCH)
        stopped.append(_twins(pool)["L4.n0"])
        os.kill(stopped[0], signal.SIGSTOP)
        # nothing comes out: the bound fills, its dreams are counted lost at their deadline, the next fill it
        status = wait_until(lambda: sleeper.call("status"), lambda s: s["dreams_lost"] >= DREAMS_IN_FLIGHT)
        os.kill(stopped[0], signal.SIGKILL)  # and what it holds is lost indeed
        wait_until(lambda: _twins(pool), lambda now: now.get("L4.n0") not in (None, stopped[0]))
        after = wait_until(lambda: sleeper.call("status"),
                           lambda s: s["dreamt"] >= status["dreamt"] + 3 * DREAMS_IN_FLIGHT * DREAM_BATCH)
        assert after["dreams_lost"] >= DREAMS_IN_FLIGHT and after["dream_loss"] is not None, after
        assert 0 <= after["dreams_in_flight"] <= DREAMS_IN_FLIGHT, after
        reported = events.wait_for("maintenance_dream_lost")
        assert reported[0]["deadline_s"] == pytest.approx(0.4 + 1.0)
        assert sum(e["new"] for e in reported) == reported[-1]["lost"] <= after["dreams_lost"]
        times = [e["t"] for e in reported]
        assert all(b - a >= 0.9 for a, b in zip(times, times[1:])), times  # a second apart at least
        assert sleeper.call("wake") == {"phase": "awake"}
        events.wait_for("maintenance_ended")
        ended = sleeper.call("status")
        assert sum(e["new"] for e in events.named("maintenance_dream_lost")) == ended["dreams_lost"], (
            "every loss said, the last ones when the maintenance ends")


@pytest.mark.timeout(60)
def test_a_stopped_first_twin_refuses_dreams_once_its_queue_is_full_and_the_other_takes_them(
        tmp_path, watch, no_stray_processes):
    topology = parse_topology({
        "input_width": 64, "defaults": {"join_timeout_ms": 20},
        "layer": [{"name": "A", "neurons": 2}, {"name": "B", "neurons": 1, "units": 10, "activation": "softmax"}]})
    with network_that_sleeps(topology, tmp_path, dream_queue=4) as network, \
            dreaming(network, watch) as (events, sleeper, pool, stopped):
        wait_until(lambda: sleeper.call("status"), lambda s: s["dreamt"] >= 2 * DREAM_BATCH)
        assert sleeper.call("status")["dreams_refused"] == 0
        stopped.append(_twins(pool)["A.n1"])
        os.kill(stopped[0], signal.SIGSTOP)  # it reads nothing more: its queue fills
        refused = events.wait_for("maintenance_dream_refused", timeout=20)[0]
        assert refused["ids"] == ["A.n1"] and refused["refused"] >= 1, refused
        status = sleeper.call("status")
        # A.n0 still takes every dream: they come out of B's join without A.n1's part
        after = wait_until(lambda: sleeper.call("status"),
                           lambda s: s["dreamt"] >= status["dreamt"] + 3 * DREAMS_IN_FLIGHT * DREAM_BATCH)
        assert after["dreams_refused"] - status["dreams_refused"] >= 3 * DREAMS_IN_FLIGHT, (status, after)
        assert len(events.named("maintenance_dream_refused")) == 1, "reported once a maintenance"
