"""The slow start of an origin's window (``window_limit``, ``Feed.limit``): slow for the first samples,
then doubling every round trip up to the window."""
import pytest
from neurox.ext import Feed, window_limit
from neurox.neuron import DEFAULT_KNEE, DEFAULT_RAMP, DEFAULT_WINDOW


@pytest.mark.timeout(10)
def test_the_window_opens_by_one_per_ramp_answered_up_to_the_knee_then_by_one_per_answered():
    assert [window_limit(n, 64, 64, 8) for n in (0, 63, 64, 127, 128, 447)] == [1, 1, 2, 2, 3, 7]
    assert [window_limit(n, 64, 64, 8) for n in (448, 449, 450, 503, 504, 10_000)] == [8, 9, 10, 63, 64, 64]
    assert window_limit(0, 64, 0, 8) == 64, "ramp 0: the whole window at once"
    assert window_limit(10, 4, 2, 8) == 4, "never past the window, even before the knee"
    assert [window_limit(n, 16, 1, 1) for n in (0, 1, 7, 15, 20)] == [1, 2, 8, 16, 16], "knee 1: TCP's slow start"


@pytest.mark.timeout(10)
def test_past_the_knee_a_feed_doubles_its_window_every_round_trip_and_the_defaults_are_neurox_runs():
    feed = Feed(window=64, ramp=4, knee=8)
    packet, limits = 0, []
    while feed.limit < 64:
        sent = []
        for _ in range(feed.room(0.0)):  # a round trip: the whole room goes, then every answer comes back
            packet += 1
            feed.sending(packet, 1, [0], 0.0)
            sent.append(packet)
        for p in sent:
            assert feed.answer({"packet": p, "label": [0]}, 0.0)
        limits.append(feed.limit)
    before, past = [n for n in limits if n < 8], [n for n in limits if n >= 8]
    assert before[:3] == [1, 1, 1] and before == sorted(before), limits  # one more per 4 answered: slow
    assert len(past) <= 4 and all(b == min(64, 2 * a) for a, b in zip(past, past[1:])), limits
    default = Feed(window=DEFAULT_WINDOW)
    assert (default.ramp, default.knee, DEFAULT_WINDOW) == (DEFAULT_RAMP, DEFAULT_KNEE, 64) and default.limit == 1
