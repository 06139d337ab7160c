"""The launcher never waits on a client that does not read its notices: the others are served meanwhile,
a slow reader gets every notice in order, and one that stopped reading is dropped with its children."""
import contextlib
import fcntl
import socket
import struct
import termios
import time

import psutil
import pytest

from _launcherutil import running_launcher
from neurox.runtime import LauncherClient, LauncherError, pack, unpack_map
from neurox.runtime._launcher import PACKET_MAX
from neurox.runtime._outbox import OUTBOX_MAX_BYTES, OUTBOX_MAX_PACKETS, Outbox, stopped_reading

pytestmark = [pytest.mark.timeout(30), pytest.mark.usefixtures("no_stray_processes")]

BIG = 100_000
"""A refused spawn whose target is this long is answered by a notice as long: a unix socket takes two."""


def client(path: str) -> LauncherClient:
    """A connection whose sends fail after 5 s instead of hanging the test (a launcher that waits on
    another client no longer reads this one's requests)."""
    connection = LauncherClient(path)
    connection.sock.settimeout(5.0)
    return connection


def refused(target: str) -> bytes:
    """A spawn request the launcher refuses at once: its ``spawn_failed`` notice quotes ``target``."""
    return pack({"op": "spawn", "target": target, "args": {}, "env": {}})


def taken(connection: LauncherClient, timeout: float = 5.0) -> None:
    """Wait until the launcher has read every request this connection sent (its send queue is empty)."""
    deadline = time.monotonic() + timeout
    queued = bytearray(4)
    while fcntl.ioctl(connection.fileno(), termios.TIOCOUTQ, queued) and struct.unpack("i", queued)[0]:
        assert time.monotonic() < deadline, "the launcher stopped reading this connection's requests"
        time.sleep(0.005)


def notice(connection: LauncherClient, seen: list[dict], ev: str, pid: int, timeout: float = 5.0) -> dict:
    """The notice ``ev`` about ``pid`` (``seen`` keeps every notice received, so none is lost)."""
    deadline = time.monotonic() + timeout
    while not (found := [n for n in seen if n["ev"] == ev and n.get("pid") == pid]):
        left = deadline - time.monotonic()
        assert left > 0, f"no {ev} notice for {pid} within {timeout} s"
        seen += connection.events(left)
    return found[0]


def test_the_bound_is_on_packets_or_bytes():
    assert not stopped_reading(OUTBOX_MAX_PACKETS, OUTBOX_MAX_BYTES)
    assert stopped_reading(OUTBOX_MAX_PACKETS + 1, 0)
    assert stopped_reading(1, OUTBOX_MAX_BYTES + 1)


def test_an_outbox_keeps_what_its_socket_cannot_take_and_sends_it_in_order():
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    with ours, theirs:
        outbox = Outbox()
        for n in range(1000):
            outbox.send(ours, pack({"n": n}))
        assert 0 < len(outbox) < 1000 and outbox.size == sum(len(p) for p in outbox.packets), "some wait"
        got = []
        while len(got) < 1000:  # a slow reader: a packet at a time, the outbox refilling the socket
            got.append(unpack_map(theirs.recv(PACKET_MAX))["n"])
            outbox.flush(ours)
        assert got == list(range(1000)) and not outbox and outbox.size == 0
        theirs.close()
        with pytest.raises(BrokenPipeError):  # a reader that is gone is an error, not a full socket
            outbox.send(ours, pack({"n": 0}))


def test_a_client_that_stops_reading_holds_no_one_and_past_the_bound_goes_with_its_children(capfd):
    with (running_launcher() as (path, _), contextlib.closing(client(path)) as mute,
          contextlib.closing(client(path)) as other):
        pids = [mute.spawn("workers:wait_for_signal", {}, {"name": f"nx:t-mute{n}"}) for n in range(3)]
        children = [psutil.Process(pid) for pid in pids]
        sent, flood = 0, 10  # a megabyte of notices it does not read: more than three times what its socket takes
        mute.sock.settimeout(1.0)
        with contextlib.suppress(TimeoutError):  # (a launcher that waits on this client stops reading it)
            while sent < flood:
                mute.sock.send(refused("x" * BIG))
                sent += 1
        started = time.monotonic()
        pid = other.spawn("workers:exit_with", {"code": 0}, {"name": "nx:t-other"})
        assert time.monotonic() - started < 3.0, "the other client waited"
        assert sent == flood
        taken(mute)
        mute.sock.settimeout(5.0)
        seen = []
        assert notice(other, seen, "exit", pid)["reason"]["kind"] == "normal"
        assert all(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in children), "under the bound: kept"

        with pytest.raises((BrokenPipeError, ConnectionResetError)):  # the launcher closes it past the bound
            for _ in range(OUTBOX_MAX_BYTES // BIG + 50):
                mute.sock.send(refused("x" * BIG))
        _, alive = psutil.wait_procs(children, timeout=5)
        assert not alive, "its children die with it"
        notices = []
        with pytest.raises(LauncherError):  # what its socket held, then the end
            while True:
                notices.append(mute._receive())
        assert notices and {n["ev"] for n in notices} <= {"ready", "spawn_failed"}
        assert "stopped reading" in capfd.readouterr().err

        pid = other.spawn("workers:exit_with", {"code": 3}, {"name": "nx:t-after"})  # the launcher goes on
        assert notice(other, seen, "exit", pid)["reason"]["code"] == 3


def test_a_slow_reader_gets_every_notice_in_order():
    with running_launcher() as (path, _), contextlib.closing(client(path)) as reader:
        count = 1500  # five times the notices its socket takes
        for n in range(count):
            reader.sock.send(refused(f"slow{n}"))
        taken(reader)
        details = []
        while len(details) < count:
            details.append(unpack_map(reader.sock.recv(PACKET_MAX))["detail"])
            if len(details) % 100 == 0:
                time.sleep(0.005)
        assert details == [f"ValueError: target must be 'module:function', got 'slow{n}'" for n in range(count)]
        pid = reader.spawn("workers:exit_with", {"code": 0}, {"name": "nx:t-slow"})  # still served
        assert notice(reader, [], "exit", pid)["reason"]["kind"] == "normal"
