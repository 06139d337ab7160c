"""The poll loop of a neuron, in the shape of the runtime's process behaviour (issue 15).

A process is an object of callbacks, as an OTP ``gen_server``: it was set up by its constructor
(``init``), and has

- ``control``: its ROUTER; each request is answered with ``handle_call(op, request)`` (ops ``CALLS``),
  whose result -- or a raised ``Reply`` -- becomes the reply;
- ``sockets()``: the data sockets to poll, each with whether its messages are multipart; everything
  waiting on one is handed over at once: ``handle_frame(socket, frames)``;
- ``handle_timer(now)``: called after every wake-up; returns the next deadline (monotonic seconds,
  or None for none);
- ``terminate(reason)``: once, at the end (SIGTERM or SIGINT: ``"shutdown"``);
- ``ready_info`` (given to the supervisor once serving) and ``bad`` (rejected requests are counted there).

Switching the neuron to the shared loop of ``runtime`` is then moving these callbacks, nothing else.
"""
from __future__ import annotations

import os
import signal
import time

import zmq

from ..runtime import notify_ready, serve_one

DRAIN_BATCH = 512
"""The most messages taken from one socket per wake-up (the rest wait for the next)."""
IDLE_S = 60.0
"""The longest a process with nothing due sleeps."""
NOBLOCK, EVENTS, POLLIN = int(zmq.NOBLOCK), int(zmq.EVENTS), int(zmq.POLLIN)
"""Plain ints: pyzmq's flag enums cost a Python-level ``&`` per message."""


def drain(sock: zmq.Socket, multipart: bool = False, limit: int = DRAIN_BATCH) -> list:
    """Everything waiting on a socket the poller found readable, up to ``limit`` messages.

    It asks the socket whether more is waiting instead of receiving until ``zmq.Again``: on a quiet
    link, where every wake-up brings one message, that saves raising an exception per message.
    """
    recv = sock.recv_multipart if multipart else sock.recv
    get = sock.get
    batch = []
    try:
        batch.append(recv(NOBLOCK))
        while len(batch) < limit and get(EVENTS) & POLLIN:
            batch.append(recv(NOBLOCK))
    except zmq.Again:  # readable, said the poller, yet nothing came (it happens): nothing lost
        pass
    return batch


def serve(proc) -> None:
    """Run ``proc`` until SIGTERM or SIGINT, then ``terminate("shutdown")``."""
    stop = []
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda signum, _frame: stop.append(signum))
    calls = {op: (lambda request, op=op: proc.handle_call(op, request)) for op in proc.CALLS}
    data = dict(proc.sockets())
    poller = zmq.Poller()
    for sock in (*data, proc.control, wake_r):
        poller.register(sock, zmq.POLLIN)
    notify_ready(proc.ready_info)
    deadline = proc.handle_timer(time.monotonic())
    while not stop:
        wait_s = IDLE_S if deadline is None else min(IDLE_S, deadline - time.monotonic())
        for sock, _ in poller.poll(max(0, int(wait_s * 1000) + 1)):  # in the order registered
            if sock is proc.control:
                serve_one(sock, calls, proc.bad)
            elif sock == wake_r:
                os.read(wake_r, 512)
            else:
                proc.handle_frame(sock, drain(sock, data[sock]))
        deadline = proc.handle_timer(time.monotonic())
    os.close(wake_r)
    proc.terminate("shutdown")


def rss_bytes() -> int:
    """This process's resident memory."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
