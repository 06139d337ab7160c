"""What keeps MessengerIn's and MessengerOut's hops cheap: answers published only while someone listens, one
PULL for the feed and the answers, no recall socket without awake replay, a heap kept between bundles."""
import subprocess
import sys
import time

import msgpack
import numpy as np
import pytest
import zmq

from neurox.ext._messenger_out import TOPIC, Listeners
from neurox.ext._origin import is_return
from neurox.ext._recall import sends_recall
from neurox.neuron import INPUT, load_topology
from neurox.neuron._frames import encode_forward, encode_output
from neurox.runtime import pack


def _until(condition, what: str, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.005)


@pytest.mark.timeout(20)
def test_answers_are_published_only_while_someone_subscribes_to_them(tmp_path):
    ctx = zmq.Context()
    xpub = ctx.socket(zmq.XPUB)
    xpub.bind(f"ipc://{tmp_path}/outputs.pub")
    listeners = Listeners(xpub, TOPIC)
    subs = []
    try:
        assert not listeners.check(), "no one subscribes yet"
        other = ctx.socket(zmq.SUB)
        other.connect(f"ipc://{tmp_path}/outputs.pub")
        other.setsockopt(zmq.SUBSCRIBE, b"results-of-another-kind")
        subs.append(other)
        _until(lambda: not listeners.check() and listeners.prefixes, "a longer prefix never matches the answers")
        for topic in (b"result", b""):
            sub = ctx.socket(zmq.SUB)
            sub.connect(f"ipc://{tmp_path}/outputs.pub")
            sub.setsockopt(zmq.SUBSCRIBE, topic)
            subs.append(sub)
            _until(lambda: listeners.check() and topic in listeners.prefixes, f"a subscription to {topic!r} is seen")
        assert listeners.prefixes == {b"result", b"", b"results-of-another-kind"}
        xpub.send_multipart([TOPIC, b"an answer"])
        assert subs[1].poll(5000) and subs[1].recv_multipart() == [TOPIC, b"an answer"]
        subs.pop(1).close(linger=0)  # a subscriber that goes away unsubscribes
        _until(lambda: b"result" not in (listeners.check(), listeners.prefixes)[1], "the first one gone")
        assert listeners.check(), "the one subscribing to everything still listens"
        subs.pop(1).close(linger=0)
        _until(lambda: not listeners.check(), "no one listens once both are gone")
        assert listeners.prefixes == {b"results-of-another-kind"}
        listeners.take(b"\x02garbage")  # not an (un)subscription: nothing changes
        assert not listeners.check()
    finally:
        for sock in subs + [xpub]:
            sock.close(linger=0)
        ctx.term()


@pytest.mark.timeout(10)
def test_answers_are_told_from_forward_frames_on_messenger_ins_pull():
    row = np.zeros((1, 4), np.float32)
    result = {"packet": 1, "rows": 1, "output": row.tobytes(), "width": 4, "loss": None}
    for answers in (pack([result]), pack([result] * 7), pack([result] * 20), msgpack.packb([{}] * 70000)):
        assert is_return(answers), answers[:8]
    for other in (encode_forward(INPUT, [1], [row], [False], [pack({})]),
                  encode_forward(INPUT, list(range(40)), [row] * 40, [True] * 40, [pack({})] * 40),
                  b"\xdc\x00\x07\x00" + encode_forward(INPUT, [1], [row], [False], [pack({})])[2:],  # array16 of 7
                  encode_output("L4.n0", [1], [1], row, [pack({})], [None]), b"", b"\x90", b"\x91", b"\xdc\x00",
                  pack([0]), pack({"rows": 1}), b"\x80", b"garbage"):
        assert not is_return(other), other[:8]


@pytest.mark.timeout(10)
def test_messenger_in_listens_for_recall_only_when_the_maintenance_worker_sends_it():
    topology = load_topology()
    assert topology.maintenance is None and not sends_recall(topology)
    topology.maintenance = {"awake_s": 60}
    assert not sends_recall(topology), "awake_replay is 0 by default"
    topology.maintenance = {"awake_s": 60, "awake_replay": 2}
    assert sends_recall(topology)
    topology.maintenance = {"awake_replay": "many"}
    assert sends_recall(topology), "a table the worker cannot read is no reason to stop listening"


SCAN_FAULTS = """
import resource, numpy as np
from neurox.ext._messenger_in import HEAP_KEPT
from neurox.runtime import keep_heap
from neurox.ext._scaling import Scaler
if KEEP:
    keep_heap(HEAP_KEPT)
rows, s = np.random.default_rng(0).random((256, 64)).astype(np.float32), Scaler(64)
s.learn(rows)
for _ in range(5):
    s.scan(rows, np.ones(256, bool))
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(50):
    s.scan(rows, np.ones(256, bool))
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


@pytest.mark.timeout(60)
def test_a_kept_heap_spares_a_bundles_scan_its_page_faults():
    faults = {keep: int(subprocess.run([sys.executable, "-c", SCAN_FAULTS.replace("KEEP", str(keep))],
                                       capture_output=True, text=True, check=True).stdout)
              for keep in (False, True)}
    assert faults[True] < 20 < faults[False], faults
