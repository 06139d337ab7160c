"""Fuzzing, short: malformed, truncated, oversized and wrong-typed frames to every socket kind, and
bad request bodies to the webhook.
No process dies, memory stays bounded, every bad frame is counted."""
import http.client
import json
import random
import time
from functools import partial

import psutil
import pytest
import zmq

from _extutil import ext_call, network_with, wait_metric
from _netutil import neuron_call, running_network
from neurox.bench._fuzz import WEBHOOK, bad_bodies, bad_frames, post_all, valid_forward
from neurox.ext import Client, digits
from neurox.neuron import inbox_endpoint, load_topology, neuron_control
from neurox.runtime import SPARE_NAME, ControlClient, ipc_endpoint
from neurox.supervisor_tree import SupervisorClient

FRAMES_PER_SOCKET = 4000


@pytest.mark.timeout(180)
def test_fuzzing_every_socket_kind_kills_nothing_and_is_counted(tmp_path):
    ctx = zmq.Context.instance()
    rng = random.Random(1)
    with running_network(load_topology(), tmp_path) as network:
        pids = {n: neuron_call(network, n, "status")["pid"] for n in network.topology.neurons()}
        processes = [psutil.Process(p.pid) for p in psutil.Process(network.tree.launcher_proc.pid).children()
                     if p.name() != SPARE_NAME]  # the launcher's spares come and go by design
        rss_before = sum(p.memory_info().rss for p in processes)
        valid = valid_forward()
        targets = [
            (zmq.PUSH, inbox_endpoint(network.run_dir, "L2.n1")),          # a neuron inbox
            (zmq.DEALER, network.control),                                 # a supervisor's control socket
            (zmq.DEALER, neuron_control(network.run_dir, network.topology, "L2.n1")),  # a neuron's control socket
            (zmq.DEALER, network.messenger_in),                           # MessengerIn
            (zmq.PUSH, ipc_endpoint(network.run_dir, "events.sink")),      # the event bus
        ]
        root = SupervisorClient(network.control)
        messenger = ControlClient(ctx, network.control.replace("root.ctl", "root.messenger_in.ctl"))
        bus = ControlClient(ctx, network.tree.events_control)

        def counted() -> tuple[int, int, int, int, int]:
            """What each target has counted so far (the neuron's inbox and control socket apart)."""
            by_kind = neuron_call(network, "L2.n1", "metrics")["bad_frames_by_kind"]
            control = sum(n for kind, n in by_kind.items() if kind.startswith("control:"))
            return (sum(by_kind.values()) - control, control, root.status()["bad_frames"],
                    messenger.call("metrics")["errors"], bus.call("status")["bad_frames"])

        def wait_counted(rounds: int) -> None:
            """Every frame sent is counted, exactly once, by the socket it was sent to."""
            expected = (rounds * FRAMES_PER_SOCKET,) * 5
            deadline = time.monotonic() + 90  # a loaded machine drains the queues at its own pace
            while (now := counted()) != expected:
                assert time.monotonic() < deadline and all(n <= e for n, e in zip(now, expected)), \
                    f"counted {now}, sent {expected} (inbox, neuron control, root, MessengerIn, bus)"
                time.sleep(0.2)

        senders = []
        for kind, endpoint in targets:  # one connection each for all rounds: a closing peer's queue may be dropped
            sock = ctx.socket(kind)
            sock.setsockopt(zmq.LINGER, 0)
            sock.setsockopt(zmq.SNDHWM, 100000)
            sock.connect(endpoint)
            senders.append(sock)
        rounds = 0

        def fuzz_round() -> None:
            nonlocal rounds
            for sock in senders:
                for frame in bad_frames(rng, valid, FRAMES_PER_SOCKET):
                    sock.send_multipart([b"", frame] if sock.type == zmq.DEALER else [frame])
                    while sock.type == zmq.DEALER and sock.poll(0):
                        sock.recv_multipart()  # read the error replies so nothing piles up here
            rounds += 1
            wait_counted(rounds)

        try:
            check(network, processes, pids, fuzz_round, root, messenger, bus, rss_before)
        finally:
            for client in (root, messenger, bus, *senders):
                client.close()


def check(network, processes, pids, fuzz_round, root, messenger, bus, rss_before) -> None:
    """Three rounds of abuse: nothing dies, the third grows no memory, everything was counted."""
    fuzz_round()
    fuzz_round()  # the allocator's high-water marks are reached
    rss_after_two = sum(p.memory_info().rss for p in processes)
    fuzz_round()  # bounded memory: one more round of the same abuse must not grow it further
    client = Client(network.messenger_in)
    reply = client.ask(vector=digits().features[0].tolist(), timeout=30)
    client.close()
    assert reply["ok"], "the network still answers"
    assert {n: neuron_call(network, n, "status")["pid"] for n in pids} == pids, "no neuron died"
    assert all(p.is_running() for p in processes), "no process of the tree died"
    growth = sum(p.memory_info().rss for p in processes) - rss_after_two
    assert growth < 40 * 2 ** 20, f"memory grew by {growth / 2 ** 20:.0f} MiB in the third round " \
                                  f"(first two: {(rss_after_two - rss_before) / 2 ** 20:.0f} MiB)"
    assert neuron_call(network, "L2.n1", "metrics")["bad_frames"] == 6 * FRAMES_PER_SOCKET  # inbox + control
    assert messenger.call("metrics")["bad_frames"] > 0


@pytest.mark.timeout(120)
def test_fuzzing_the_webhook_kills_nothing_and_every_bad_body_is_counted(tmp_path, no_stray_processes):
    with network_with(tmp_path, [WEBHOOK]) as network:
        status = ext_call(network, "hook", "status")
        sent = post_all(status["url"], partial(bad_bodies, random.Random(1)), 600)
        metrics = wait_metric(network, "hook", "bad_frames", sent)
        assert metrics["bad_frames"] == sent == 600 and metrics["accepted"] == 0, metrics
        assert ext_call(network, "hook", "status")["pid"] == status["pid"]  # the same process took them all
        host, port = status["url"].split("//")[1].split("/")[0].rsplit(":", 1)
        conn = http.client.HTTPConnection(host, int(port), timeout=10)
        try:
            conn.request("POST", "/samples", json.dumps({"vector": digits().features[0].tolist()}))
            assert conn.getresponse().status == 202  # and a good sample is still taken
        finally:
            conn.close()
