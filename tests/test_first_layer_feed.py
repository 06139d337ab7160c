"""The maintenance pool's feed never waits on a first-layer twin that does not read: a full queue refuses
the packet at once (counted, named), the other twins still get every packet, and a twin that comes back
gets what its queue kept and the packets after."""
import time

import numpy as np
import pytest
import zmq

from neurox.neuron import FirstLayerFeed, decode_frame, inbox_endpoint, parse_topology
from neurox.runtime import make_socket

pytestmark = pytest.mark.timeout(20)

TOPOLOGY = {"input_width": 4, "layer": [{"name": "A", "neurons": 2}, {"name": "B", "neurons": 1}]}
HWM = 8


def packet_id(sock: zmq.Socket, timeout_ms: int = 5000) -> int:
    assert sock.poll(timeout_ms), "no packet"
    return decode_frame(sock.recv())[2][0]


def test_a_first_layer_neuron_that_does_not_read_refuses_at_once_and_holds_no_other(tmp_path):
    ctx = zmq.Context()
    reader = make_socket(ctx, zmq.PULL, bind=inbox_endpoint(str(tmp_path), "A.n0"))
    feed = FirstLayerFeed(ctx, str(tmp_path), parse_topology(TOPOLOGY), "dreams", hwm=HWM)
    rows = np.ones((2, 4), "<f4")
    try:
        refusals, slowest = [], 0.0
        for n in range(1, 4 * HWM + 1):  # A.n1 is gone: nothing binds its inbox, its queue only grows
            started = time.monotonic()
            packet, refused = feed.send(rows, [0, 1], learn=True)
            slowest = max(slowest, time.monotonic() - started)
            assert packet == n, "each packet's id, refused or not, for the caller to match its outputs"
            refusals.append(refused)
            assert packet_id(reader) == n, "the neuron that reads gets every packet, in order"
        assert slowest < 0.5, "a full queue refuses, it never waits"
        first = refusals.index(["A.n1"])
        assert first == HWM and refusals[:first] == [[]] * first, refusals
        assert refusals[first:] == [["A.n1"]] * (4 * HWM - first), "refused each time, nothing else"

        back = make_socket(ctx, zmq.PULL, bind=inbox_endpoint(str(tmp_path), "A.n1"))  # restarted
        try:
            assert [packet_id(back) for _ in range(first)] == list(range(1, first + 1)), "what its queue kept"
            deadline, n = time.monotonic() + 5, 4 * HWM
            while True:  # its queue drains as it reads: the next packets reach it again
                n += 1
                if feed.send(rows, [0, 1], learn=True) == (n, []):
                    break
                assert time.monotonic() < deadline, "never taken again"
            while (got := packet_id(back)) != n:
                assert got < n
        finally:
            back.close(linger=0)
    finally:
        feed.close()
        reader.close(linger=0)
        ctx.term()
