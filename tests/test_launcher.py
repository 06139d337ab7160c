"""The launcher on its own: spawning, notices, exit reasons, link semantics, the spare."""
import contextlib
import os
import signal
import socket
import time

import psutil
import pytest

from neurox.runtime import SPARE_NAME, LauncherClient, LauncherError, pack
from neurox.runtime._launcher import PART_BYTES

from _launcherutil import running_launcher
from conftest import leaves_no_process

pytestmark = [pytest.mark.timeout(30), pytest.mark.usefixtures("no_stray_processes")]


@pytest.fixture(scope="module")
def launcher():
    """One launcher for the tests that leave it running (each test's children die with its connection)."""
    with leaves_no_process(), running_launcher() as launcher:
        yield launcher


@pytest.fixture
def own_launcher():
    """A launcher for a test that kills it."""
    with running_launcher() as launcher:
        yield launcher


class Notices:
    """A launcher connection whose notices are kept, so that waiting for one never loses another."""

    def __init__(self, path: str):
        self.client = LauncherClient(path)
        self.seen: list[dict] = []

    def spawn(self, target, args: dict, env: dict) -> int:
        return self.client.spawn(target, args, env)

    def signal(self, pid: int, sig: int) -> None:
        self.client.signal(pid, sig)

    def wait(self, pid: int, ev: str, timeout: float = 30.0) -> dict:
        """The notice ``ev`` about ``pid``; fails if the process exits first (unless ``ev`` is exit)."""
        deadline = time.monotonic() + timeout
        while True:
            mine = [n for n in self.seen if n.get("pid") == pid]
            if found := [n for n in mine if n["ev"] == ev]:
                return found[0]
            assert not [n for n in mine if n["ev"] == "exit"], f"{pid} exited: {mine}"
            left = deadline - time.monotonic()
            assert left > 0, f"no {ev} notice for {pid} within {timeout} s"
            self.seen += self.client.events(left)

    def close(self) -> None:
        """Close the connection, and with it kill its children (link semantics): wait until they are gone."""
        self.client.close()
        children = []
        for pid in {n["pid"] for n in self.seen if n["ev"] == "ready"} - {n["pid"] for n in self.seen if n["ev"] == "exit"}:
            with contextlib.suppress(psutil.NoSuchProcess):
                children.append(psutil.Process(pid))
        _, alive = psutil.wait_procs(children, timeout=5)
        assert not [p for p in alive if p.status() != psutil.STATUS_ZOMBIE]


@pytest.fixture
def client(launcher):
    client = Notices(launcher[0])
    yield client
    client.close()


def test_a_child_is_spawned_reports_ready_and_its_exit(client):
    pid = client.spawn("workers:exit_with", {"code": 0}, {"name": "nx:t-once"})
    assert client.wait(pid, "ready")["info"] == {"pid": pid}
    assert client.wait(pid, "exit")["reason"] == {"kind": "normal", "code": 0, "signal": None}


@pytest.mark.parametrize("code,kind", [(0, "normal"), (64, "shutdown"), (3, "crash")])
def test_exit_codes_become_reasons(client, code, kind):
    pid = client.spawn("workers:exit_with", {"code": code}, {"name": "nx:t-exit"})
    assert client.wait(pid, "exit")["reason"] == {"kind": kind, "code": code, "signal": None}


@pytest.mark.parametrize("sig,kind", [(signal.SIGTERM, "shutdown"), (signal.SIGKILL, "crash"),
                                      (signal.SIGINT, "crash")])
def test_signals_become_reasons(client, sig, kind):
    pid = client.spawn("workers:wait_for_signal", {}, {"name": "nx:t-signal"})
    client.wait(pid, "ready")
    client.signal(pid, sig)
    assert client.wait(pid, "exit")["reason"] == {"kind": kind, "code": None, "signal": sig}


def test_a_child_that_exits_before_it_is_ready_has_no_ready_notice(client):
    pid = client.spawn("workers:exit_with", {"code": 2, "silent": True}, {"name": "nx:t-silent"})
    client.wait(pid, "exit")
    assert [n["ev"] for n in client.seen if n.get("pid") == pid] == ["exit"]


@pytest.mark.parametrize("target", ["workers", "workers:no_such_function", "no_such_module:run", 42])
def test_a_bad_target_is_refused_and_nothing_is_forked(client, launcher, target):
    before = {p.pid for p in psutil.Process(launcher[1].pid).children()}
    with pytest.raises(LauncherError):
        client.spawn(target, {}, {})
    after = {p.pid for p in psutil.Process(launcher[1].pid).children() if p.name() != SPARE_NAME}
    assert after <= before


def test_bad_requests_get_an_error_notice_and_the_launcher_carries_on(client):
    pid = client.spawn("workers:wait_for_signal", {}, {})
    client.wait(pid, "ready")
    for packet in (b"\xc1 not msgpack", pack({"op": "reboot"}), pack({"op": "signal", "pid": pid, "sig": "KILL"})):
        client.client.sock.send(packet)
    deadline = time.monotonic() + 10
    while len(errors := [n for n in client.seen if n["ev"] == "error"]) < 3 and time.monotonic() < deadline:
        client.seen += client.client.events(1.0)
    assert [e["detail"].split(":")[0] for e in errors] == ["FrameError", "ValueError", "ValueError"]
    assert "unknown op 'reboot'" in errors[1]["detail"]
    client.signal(pid, signal.SIGTERM)
    assert client.wait(pid, "exit")["reason"]["kind"] == "shutdown"


def test_only_the_owning_connection_may_signal_a_child(client, launcher):
    pid = client.spawn("workers:wait_for_signal", {}, {"name": "nx:t-owned"})
    client.wait(pid, "ready")
    stranger = LauncherClient(launcher[0])
    stranger.signal(pid, signal.SIGKILL)
    stranger.signal(os.getpid(), signal.SIGKILL)  # not a child of the launcher at all
    stranger.close()
    client.signal(pid, signal.SIGTERM)  # if the stranger's SIGKILL had landed, the reason would be crash
    assert client.wait(pid, "exit")["reason"]["kind"] == "shutdown"


def test_closing_a_connection_kills_its_children(launcher):
    owner = Notices(launcher[0])
    pids = [owner.spawn("workers:wait_for_signal", {}, {"name": f"nx:t-link{n}"}) for n in range(3)]
    for pid in pids:
        owner.wait(pid, "ready")
    procs = [psutil.Process(pid) for pid in pids]
    owner.close()
    _, alive = psutil.wait_procs(procs, timeout=5)
    assert not [p for p in alive if p.status() != psutil.STATUS_ZOMBIE]


def test_children_die_with_the_launcher(own_launcher):
    client = Notices(own_launcher[0])
    pids = [client.spawn("workers:wait_for_signal", {}, {"name": f"nx:t-orphan{n}"}) for n in range(2)]
    for pid in pids:
        client.wait(pid, "ready")
    procs = [psutil.Process(pid) for pid in pids]
    own_launcher[1].kill()  # SIGKILL: the launcher cannot clean up, the kernel's parent-death signal does
    own_launcher[1].wait()
    _, alive = psutil.wait_procs(procs, timeout=5)
    assert not alive
    client.close()


def test_a_child_inherits_no_descriptor_of_the_launcher(client, launcher):
    pid = client.spawn("workers:report_fds", {}, {"name": "nx:t-fds"})
    fds = {fd: what for fd, what in client.wait(pid, "ready")["info"]["fds"] if fd > 2}
    launchers = {os.readlink(f"/proc/{launcher[1].pid}/fd/{fd}") for fd in os.listdir(f"/proc/{launcher[1].pid}/fd")}
    # (an anon_inode -- the eventfd and epoll of a ZeroMQ context its spare started -- has no identity to compare)
    shared = [what for what in fds.values() if what in launchers and not what.startswith("anon_inode:")]
    assert shared in ([], [p for p in fds.values() if p.startswith("pipe:")]), f"launcher's: {shared} of {fds}"
    assert [what[:5] for what in fds.values() if not what.startswith("anon_inode:")] == ["pipe:"], \
        f"only its readiness pipe (and its own eventfds), got {fds}"
    client.signal(pid, signal.SIGKILL)
    client.wait(pid, "exit")


def test_a_child_is_named_as_asked_and_the_launcher_has_no_thread_but_its_own(client, launcher, tmp_path):
    pid = client.spawn("workers:serve", {}, {"name": "nx:t-named", "path": "t", "control": f"ipc://{tmp_path}/named.ctl"})
    client.wait(pid, "ready")
    assert psutil.Process(pid).name() == "nx:t-named"
    assert psutil.Process(launcher[1].pid).num_threads() == 1, "no ZeroMQ context before a fork"
    client.signal(pid, signal.SIGTERM)
    assert client.wait(pid, "exit")["reason"]["kind"] == "shutdown"


def spare_of(launcher_pid: int, timeout: float = 5.0) -> psutil.Process:
    """The spare the launcher forks once it is idle (a short bounded wait: no event announces it)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for proc in psutil.Process(launcher_pid).children():
            with contextlib.suppress(psutil.NoSuchProcess):  # a spare left from a batch, retired meanwhile
                if proc.name() == SPARE_NAME:
                    return proc
        time.sleep(0.01)
    raise AssertionError("no spare")


def test_a_spawn_is_handed_to_the_waiting_spare(client, launcher):
    spare = spare_of(launcher[1].pid)
    pid = client.spawn("workers:exit_with", {"code": 0}, {"name": "nx:t-spare"})
    assert pid == spare.pid
    client.wait(pid, "exit")
    assert spare_of(launcher[1].pid).pid != pid, "a new spare replaces the one used"


def test_a_spare_forked_before_the_target_module_was_imported_is_retired(client, launcher):
    spare = spare_of(launcher[1].pid)
    pid = client.spawn("colorsys:rgb_to_hls", {}, {})  # not preloaded: called with (args, env) it raises
    assert pid != spare.pid
    assert client.wait(pid, "exit")["reason"] == {"kind": "crash", "code": 1, "signal": None}
    spare.wait(5)


def test_a_spare_killed_from_outside_is_replaced(client, launcher):
    spare = spare_of(launcher[1].pid)
    spare.kill()
    spare.wait(5)
    pid = client.spawn("workers:exit_with", {"code": 0}, {})
    assert pid != spare.pid
    assert client.wait(pid, "exit")["reason"]["kind"] == "normal"


def threads_of(pid: int) -> list[str]:
    """The kernel's names of a process's threads ([] once it is gone)."""
    names = []
    with contextlib.suppress(FileNotFoundError):
        for task in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(FileNotFoundError), open(f"/proc/{pid}/task/{task}/comm") as f:
                names.append(f.read().strip())
    return sorted(names)


def wait_until(condition, timeout: float = 5.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while not (result := condition()):
        assert time.monotonic() < deadline, f"no {what} within {timeout} s"
        time.sleep(0.01)
    return result


@pytest.mark.parametrize("take", [True, False])
def test_the_waiting_spare_started_a_context_and_a_thread_ahead_and_lets_go_of_what_is_not_taken(client, launcher, take):
    spare = wait_until(lambda: (s := spare_of(launcher[1].pid)) and "ZMQbg/IO/0" in threads_of(s.pid) and s,
                       what="a spare that started its context ahead")  # (not a leftover of a batch)
    pid = client.spawn("workers:report_ahead", {"take": take}, {"name": "nx:t-ahead"})
    assert pid == spare.pid
    info = client.wait(pid, "ready")["info"]
    # the target's own, the context's I/O thread and reaper, and the early thread (which kept the spare's name)
    assert len(info["at_entry"]) == 4 and "ZMQbg/IO/0" in info["at_entry"], info
    assert info["python_threads"] == ["MainThread", "nx-early"], info
    if take:
        assert info["ran_on"] == "nx-early", "start_early ran on the thread the spare started"
        # the context is the target's now (I/O thread and reaper); the early thread ended with its one task
        wait_until(lambda: len(threads_of(pid)) == 3 and "ZMQbg/IO/0" in threads_of(pid), what="early thread gone")
    else:  # ready without taking them: the thread and the context are let go
        wait_until(lambda: threads_of(pid) == ["nx:t-ahead"], what="a single thread")
    client.signal(pid, signal.SIGKILL)
    client.wait(pid, "exit")


def test_a_run_of_spawns_is_served_by_batches_of_spares_whose_leftovers_go_once_it_is_over(client, launcher):
    def spares():
        found = []
        for proc in psutil.Process(launcher[1].pid).children():
            with contextlib.suppress(psutil.NoSuchProcess):
                if proc.name() == SPARE_NAME:
                    found.append(proc)
        return found
    pids = [client.spawn("workers:exit_with", {"code": 0, "silent": True}, {"name": "nx:t-run"}) for _ in range(12)]
    assert len(spares()) > 1, "spares forked in batches, some left over right after the run"
    for pid in pids:
        client.wait(pid, "exit")
    wait_until(lambda: len(kept := spares()) == 1 and "ZMQbg/IO/0" in threads_of(kept[0].pid),
               what="a single spare, one that starts ahead, once the run is over")


def test_a_connection_may_pipeline_spawns(client):
    pids = [client.spawn("workers:exit_with", {"code": n}, {}) for n in range(5)]
    codes = {pid: client.wait(pid, "exit")["reason"]["code"] for pid in pids}
    assert codes == {pid: n for n, pid in enumerate(pids)}


def test_the_socket_is_private(launcher):
    assert os.stat(launcher[0]).st_mode & 0o777 == 0o600
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    probe.connect(launcher[0])
    probe.close()


def test_a_targets_before_spawn_runs_in_the_launcher_and_its_children_inherit_what_it_made(client):
    first = client.spawn("workers:report_prepared", {"mark": "a"}, {"name": "nx:t-prep"})
    assert client.wait(first, "ready")["info"] == {"prepared": ["a"]}
    second = client.spawn("workers:report_prepared", {"mark": "b"}, {"name": "nx:t-prep"})
    assert client.wait(second, "ready")["info"] == {"prepared": ["a", "b"]}, "kept in the launcher"


def test_a_failing_before_spawn_still_spawns_the_child(client):
    pid = client.spawn("workers:report_prepared", {"mark": "c", "fail_to_prepare": True}, {"name": "nx:t-prep"})
    assert "c" not in client.wait(pid, "ready")["info"]["prepared"]
    client.wait(pid, "exit")


def test_a_spawn_request_longer_than_a_packet_goes_in_parts_and_arrives_whole(client):
    args = {"names": [f"L{i // 100}.n{i % 100}-{'x' * 200}" for i in range(5000)]}  # about 1.1 MB
    assert len(pack(args)) > 4 * PART_BYTES
    pid = client.spawn("workers:report_args_size", args, {"name": "nx:t-long"})
    assert client.wait(pid, "ready")["info"] == {"bytes": len(pack(args)), "last": args["names"][-1]}
    client.wait(pid, "exit")
    short = client.spawn("workers:exit_with", {"code": 0}, {"name": "nx:t-after"})
    client.wait(short, "exit")  # the connection goes on with one-packet requests


def test_a_respawn_child_that_crashes_once_ready_is_started_again_at_once_and_only_then(client, tmp_path):
    env = {"name": "nx:t-respawn", "control": f"ipc://{tmp_path}/c"}
    pid = client.client.spawn("workers:serve", {}, env, respawn=True)
    assert client.wait(pid, "ready")["info"]["after"] is None
    os.kill(pid, signal.SIGKILL)  # from outside: a crash
    second = client.wait(pid, "exit")["replacement"]
    assert second != pid and client.wait(second, "ready")["info"]["after"] == "crash", "told what it replaces"
    os.kill(second, signal.SIGKILL)
    third = client.wait(second, "exit")["replacement"]
    assert client.wait(third, "ready")["info"]["after"] == "crash", "again: its supervisor counts the restarts"
    client.signal(third, signal.SIGKILL)  # asked for by its own connection: a kill, not a crash to undo
    assert client.wait(third, "exit")["reason"]["kind"] == "crash" and "replacement" not in client.wait(third, "exit")
    silent = client.client.spawn("workers:exit_with", {"code": 2, "silent": True}, {"name": "nx:t-silent"}, respawn=True)
    assert "replacement" not in client.wait(silent, "exit"), "never ready: a failed start is not repeated"
    plain = client.spawn("workers:exit_with", {"code": 3}, {"name": "nx:t-plain"})
    assert "replacement" not in client.wait(plain, "exit"), "only on request"
