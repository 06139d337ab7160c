"""The supervisor process: OTP's supervisor behaviour for children that are OS processes.

The state is one record per child (its spec and its pid, or that it is restarting) kept in start
order, the restart times inside the period, and a queue of restarts to try again. Decisions come
from the pure functions in ``_strategy``; this module does the I/O around them: forking through
the launcher, signalling, waiting for exits, answering the control socket, emitting events.
"""
from __future__ import annotations

import os
import signal
import time
from collections import deque
from dataclasses import dataclass

import zmq

from ..runtime import (EXIT_SHUTDOWN, BadFrames, EXIT_START_FAILED, EventPublisher, ExitReason, LauncherClient,
                       LauncherError, Reply, make_socket, notify_ready, serve_one)
from ._child_spec import BRUTAL_KILL, INFINITY, ChildSpec, ChildSpecError, normalize_child_spec
from ._naming import child_env, control_endpoint
from ._strategy import (DEFAULT_INTENSITY, DEFAULT_PERIOD_S, intensity_exceeded, record_restart,
                        restart_plan, should_restart, validate_flags)

SUPERVISOR_TARGET = "neurox.supervisor_tree._supervisor:run_supervisor"
DEFAULT_START_TIMEOUT_S = 30.0
KILL_WAIT_S = 10.0
"""How long to wait for the exit notice of a SIGKILLed child (the kernel is quick; this is a bound)."""


class StartFailed(Exception):
    """A child did not reach ``ready``: it exited, could not be forked, or timed out."""


@dataclass
class Child:
    """One child: its spec, its pid while running, and whether a restart of it is pending."""

    spec: ChildSpec
    pid: int | None = None
    restarting: bool = False

    @property
    def running(self) -> bool:
        return self.pid is not None


class Supervisor:
    """A supervisor's state and loop; ``run_supervisor`` is the process entry point."""

    def __init__(self, args: dict, env: dict):
        self.path = env["path"]
        self.env = env
        self.strategy = args.get("strategy", "one_for_one")
        self.intensity = args.get("intensity", DEFAULT_INTENSITY)
        self.period = args.get("period", DEFAULT_PERIOD_S)
        validate_flags(self.strategy, self.intensity, self.period)
        self.start_timeout = float(args.get("start_timeout_s", DEFAULT_START_TIMEOUT_S))
        self.start_concurrently = bool(args.get("start_concurrently", False))
        self.template = normalize_child_spec(args["template"]) if self.strategy == "simple_one_for_one" else None
        specs = [normalize_child_spec(s) for s in args.get("children", [])]
        if self.template is not None and specs:
            raise ChildSpecError("a simple_one_for_one supervisor starts with no children, only a template")
        ids = [s.id for s in specs]
        if len(set(ids)) != len(ids):
            raise ChildSpecError(f"duplicate child ids in {ids}")
        self.order: list[str] = ids
        self.children: dict[str, Child] = {s.id: Child(s) for s in specs}
        self.restarts: tuple[float, ...] = ()
        self.retries: deque[tuple[str, ...]] = deque()
        self.deferred: deque[dict] = deque()
        self.dynamic_serial = 0
        self.stop_requested = False
        self.launcher = LauncherClient(env["launcher"])
        self.ctx = zmq.Context()
        self.control_endpoint = env.get("control") or control_endpoint(env["run_dir"], self.path)
        self.control = make_socket(self.ctx, zmq.ROUTER, bind=self.control_endpoint)
        self.bad = BadFrames(f"supervisor {self.path}")
        self.events = EventPublisher(self.ctx, env.get("events"), self.path)
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_w, False)
        signal.set_wakeup_fd(self.wake_w)
        signal.signal(signal.SIGTERM, self._on_term)
        signal.signal(signal.SIGINT, self._on_term)
        self.handlers = {
            "ping": lambda r: "pong",
            "start_child": self._api_start_child,
            "terminate_child": self._api_terminate_child,
            "restart_child": self._api_restart_child,
            "delete_child": self._api_delete_child,
            "which_children": lambda r: self.which_children(),
            "count_children": lambda r: self.count_children(),
            "status": lambda r: self.status(),
        }

    def _on_term(self, *_):
        self.stop_requested = True

    # -- process life ---------------------------------------------------------------------------
    def run(self) -> None:
        try:
            self.start_all()
        except StartFailed as exc:
            self.events.emit("supervisor_start_failed", detail=str(exc))
            self._close()
            raise SystemExit(EXIT_START_FAILED) from None
        notify_ready({"control": self.control_endpoint, "strategy": self.strategy})
        self.events.emit("supervisor_started", strategy=self.strategy, children=list(self.order))
        poller = zmq.Poller()
        poller.register(self.control, zmq.POLLIN)
        poller.register(self.launcher.fileno(), zmq.POLLIN)
        poller.register(self.wake_r, zmq.POLLIN)
        while not self.stop_requested:
            self._handle_launcher_events(self.launcher.events(0.0))
            busy = bool(self.retries or self.deferred)
            for sock, _ in poller.poll(0 if busy else None):
                if sock is self.control:
                    serve_one(self.control, self.handlers, self.bad)
                elif sock == self.wake_r:
                    os.read(self.wake_r, 512)
            if self.retries and not self.stop_requested:
                # one queued restart per round, so that requests and exits get in between (as in OTP)
                self._try_again(self.retries.popleft())
        self.shutdown("shutdown")

    def shutdown(self, reason: str) -> None:
        """Stop every child in reverse start order, then exit with reason ``shutdown``."""
        self.stop_all()
        self.events.emit("supervisor_shutdown", reason=reason)
        self._close()
        raise SystemExit(EXIT_SHUTDOWN)

    def _close(self) -> None:
        self.events.close()
        self.control.close(linger=0)
        self.ctx.term()
        self.launcher.close()

    def start_all(self) -> None:
        """Start children in order; on a failure stop those started (reverse order) and fail.

        With ``start_concurrently`` (a NeuroX flag, for children that do not depend on each other,
        like the neurons of a layer) all are forked first and then awaited in order: the same
        outcome, without paying each child's initialisation one after the other.
        """
        if not self.start_concurrently:
            for child_id in self.order:
                try:
                    self._start(self.children[child_id], restart=False)
                except StartFailed:
                    self.stop_all()
                    raise
            return
        spawned: list[tuple[Child, int]] = []
        failure: StartFailed | None = None
        for child_id in self.order:
            try:
                spawned.append((self.children[child_id], self._spawn(self.children[child_id])))
            except StartFailed as exc:
                failure = exc
                break
        for child, pid in spawned:
            if failure is None:
                try:
                    self._await_start(child, pid, restart=False)
                except StartFailed as exc:
                    failure = exc
            else:  # forked but no longer wanted: the start is being rolled back
                self.launcher.signal(pid, signal.SIGKILL)
                self._wait_for(pid, ("exit",), KILL_WAIT_S)
        if failure is not None:
            self.stop_all()
            raise failure

    def stop_all(self) -> None:
        running = [self.children[c] for c in reversed(self.order) if self.children[c].running]
        if stops_concurrently(self.strategy, self.start_concurrently, [c.spec.type for c in running]):
            self._stop_concurrently(running)
        else:
            for child in running:
                self._stop(child)

    # -- starting and stopping one child -------------------------------------------------------
    def _start(self, child: Child, restart: bool) -> int:
        return self._await_start(child, self._spawn(child), restart)

    def _spawn(self, child: Child) -> int:
        spec = child.spec
        try:
            return self.launcher.spawn(spec.target, spec.args, child_env(self.env, spec.id))
        except LauncherError as exc:
            self.events.emit("start_failed", id=spec.id, detail=str(exc))
            raise StartFailed(f"{spec.id}: {exc}") from None

    def _await_start(self, child: Child, pid: int, restart: bool) -> int:
        spec = child.spec
        timeout = start_bound_s(spec, self.start_timeout)
        outcome = self._wait_for(pid, ("ready", "exit"), timeout)
        if outcome is None:
            self.launcher.signal(pid, signal.SIGKILL)
            self._wait_for(pid, ("exit",), KILL_WAIT_S)
            detail = f"{spec.id} did not become ready within {timeout} s"
        elif outcome["ev"] == "exit":
            detail = f"{spec.id} exited while starting: {ExitReason.from_wire(outcome['reason']).describe()}"
        else:
            child.pid, child.restarting = pid, False
            info = outcome.get("info") or {}
            self.events.emit("child_restarted" if restart else "child_started",
                             id=spec.id, pid=pid, type=spec.type, info=info)
            if "seeding" in info:
                self.events.emit("neuron_seeded", id=spec.id, pid=pid, **info["seeding"])
            return pid
        self.events.emit("start_failed", id=spec.id, detail=detail)
        raise StartFailed(detail)

    def _stop(self, child: Child) -> None:
        """Stop one child by its shutdown rule: SIGKILL at once, or SIGTERM then SIGKILL on timeout."""
        pid = child.pid
        shutdown = child.spec.shutdown
        if shutdown == BRUTAL_KILL:
            self.launcher.signal(pid, signal.SIGKILL)
            outcome = self._wait_for(pid, ("exit",), KILL_WAIT_S)
        else:
            self.launcher.signal(pid, signal.SIGTERM)
            timeout = None if shutdown == INFINITY else shutdown / 1000.0
            outcome = self._wait_for(pid, ("exit",), timeout)
            if outcome is None:
                self.events.emit("shutdown_timeout", id=child.spec.id, pid=pid, timeout_ms=shutdown)
                self.launcher.signal(pid, signal.SIGKILL)
                outcome = self._wait_for(pid, ("exit",), KILL_WAIT_S)
        self._terminated(child, outcome)

    def _stop_concurrently(self, children: list[Child]) -> None:
        """Signal all at once (in reverse start order), then wait for each by its own shutdown rule."""
        signalled = time.monotonic()
        for child in children:
            self.launcher.signal(child.pid, signal.SIGKILL if child.spec.shutdown == BRUTAL_KILL else signal.SIGTERM)
        for child in children:
            shutdown = child.spec.shutdown
            if shutdown == BRUTAL_KILL:
                outcome = self._wait_for(child.pid, ("exit",), KILL_WAIT_S)
            else:
                deadline = None if shutdown == INFINITY else signalled + shutdown / 1000.0
                outcome = self._wait_for(child.pid, ("exit",),
                                         None if deadline is None else max(0.0, deadline - time.monotonic()))
                if outcome is None:
                    self.events.emit("shutdown_timeout", id=child.spec.id, pid=child.pid, timeout_ms=shutdown)
                    self.launcher.signal(child.pid, signal.SIGKILL)
                    outcome = self._wait_for(child.pid, ("exit",), KILL_WAIT_S)
            self._terminated(child, outcome)

    def _terminated(self, child: Child, outcome: dict | None) -> None:
        """A child stopped by its supervisor: forget its pid and say how it ended."""
        reason = ExitReason.from_wire(outcome["reason"]) if outcome else ExitReason("crash")
        self.events.emit("child_terminated", id=child.spec.id, pid=child.pid, reason=reason.to_wire())
        child.pid = None

    def _wait_for(self, pid: int, kinds: tuple[str, ...], timeout: float | None) -> dict | None:
        """Wait for a launcher notice of ``kinds`` about ``pid``; other notices are kept for later."""
        for notice in list(self.deferred):
            if notice.get("pid") == pid and notice["ev"] in kinds:
                self.deferred.remove(notice)
                return notice
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return None
            found = None
            for notice in self.launcher.events(remaining):
                if found is None and notice.get("pid") == pid and notice["ev"] in kinds:
                    found = notice
                else:
                    self.deferred.append(notice)  # kept, in order, for whoever waits for it next
            if found is not None:
                return found

    # -- exits and restarts --------------------------------------------------------------------
    def _handle_launcher_events(self, notices: list[dict]) -> None:
        self.deferred.extend(notices)
        while self.deferred and not self.stop_requested:
            notice = self.deferred.popleft()
            if notice["ev"] == "exit":
                self._on_exit(notice["pid"], ExitReason.from_wire(notice["reason"]))

    def _child_by_pid(self, pid: int) -> Child | None:
        return next((c for c in self.children.values() if c.pid == pid), None)

    def _on_exit(self, pid: int, reason: ExitReason) -> None:
        child = self._child_by_pid(pid)
        if child is None:
            return  # a notice about a process this supervisor already let go of
        child.pid = None
        child_id = child.spec.id
        self.events.emit("child_exited", id=child_id, pid=pid, reason=reason.to_wire(),
                         description=reason.describe())
        if not should_restart(child.spec.restart, reason.kind):
            if child.spec.restart == "temporary" or self.template is not None:
                self._forget(child_id)
            return
        self._restart(child_id)

    def _restart(self, dead: str) -> None:
        """Count a restart against the intensity, then apply the strategy to ``dead``'s death."""
        self._count_restart()
        running = {c for c in self.order if self.children[c].running}
        types = {c: self.children[c].spec.restart for c in self.order}
        plan = restart_plan(self.strategy, dead, self.order, types, running)
        for child_id in plan.stop:
            self._stop(self.children[child_id])
        for child_id in plan.remove:
            self._forget(child_id)
        self._start_in_turn(tuple(c for c in plan.start if not self.children[c].running))

    def _count_restart(self) -> None:
        """Record a restart; one more than the intensity allows in the period and the supervisor gives up."""
        self.restarts = record_restart(self.restarts, time.monotonic(), self.period)
        if intensity_exceeded(self.restarts, self.intensity):
            self.events.emit("intensity_exceeded", intensity=self.intensity, period=self.period,
                             restarts=len(self.restarts))
            self.shutdown("reached_max_restart_intensity")

    def _start_in_turn(self, ids: tuple[str, ...]) -> None:
        """Start ``ids`` in order; if one fails, mark it and the rest restarting and queue a retry."""
        for n, child_id in enumerate(ids):
            try:
                self._start(self.children[child_id], restart=True)
            except StartFailed:
                for rest in ids[n:]:
                    self.children[rest].restarting = True
                self.retries.append(ids[n:])
                return

    def _try_again(self, ids: tuple[str, ...]) -> None:
        """A queued restart (OTP's try_again_restart): it counts against the intensity too."""
        ids = tuple(c for c in ids if c in self.children and self.children[c].restarting)
        if ids:
            self._count_restart()
            self._start_in_turn(ids)

    def _forget(self, child_id: str) -> None:
        self.children.pop(child_id, None)
        if child_id in self.order:
            self.order.remove(child_id)

    # -- the administration API ------------------------------------------------------------------
    def _lookup(self, request: dict) -> Child:
        child_id = request.get("id")
        if not isinstance(child_id, str):
            raise Reply("bad_request", "'id' must be a string")
        child = self.children.get(child_id)
        if child is None:
            raise Reply("not_found", f"no child {child_id!r} under {self.path}")
        return child

    def _api_start_child(self, request: dict) -> dict:
        if self.template is not None:
            extra = request.get("args", {})
            if not isinstance(extra, dict):
                raise Reply("bad_request", "'args' must be a map merged into the template's args")
            self.dynamic_serial += 1
            spec = ChildSpec(f"{self.template.id}-{self.dynamic_serial}", self.template.target,
                             {**self.template.args, **extra}, self.template.restart,
                             self.template.shutdown, self.template.type, self.template.modules)
        else:
            try:
                spec = normalize_child_spec(request.get("spec"))
            except ChildSpecError as exc:
                raise Reply("bad_child_spec", str(exc)) from None
            existing = self.children.get(spec.id)
            if existing is not None:
                if existing.running:
                    raise Reply("already_started", f"{spec.id} is running as pid {existing.pid}")
                raise Reply("already_present", f"{spec.id} is known but not running")
        child = Child(spec)
        self.children[spec.id] = child
        self.order.append(spec.id)
        try:
            pid = self._start(child, restart=False)
        except StartFailed as exc:
            self._forget(spec.id)
            raise Reply("start_failed", str(exc)) from None
        return {"id": spec.id, "pid": pid}

    def _api_terminate_child(self, request: dict) -> str:
        child = self._lookup(request)
        if child.running:
            self._stop(child)
        child.restarting = False
        if child.spec.restart == "temporary" or self.template is not None:
            self._forget(child.spec.id)
        return "ok"

    def _stopped_child(self, request: dict, op: str) -> Child:
        """The child a restart_child or delete_child names, if it may be restarted or deleted."""
        self._refuse_for_dynamic(op)
        child = self._lookup(request)
        if child.running:
            raise Reply("running", f"{child.spec.id} is running as pid {child.pid}")
        if child.restarting:
            raise Reply("restarting", f"{child.spec.id} is waiting for a restart")
        return child

    def _api_restart_child(self, request: dict) -> dict:
        child = self._stopped_child(request, "restart_child")
        try:
            return {"id": child.spec.id, "pid": self._start(child, restart=True)}
        except StartFailed as exc:
            raise Reply("start_failed", str(exc)) from None

    def _api_delete_child(self, request: dict) -> str:
        child = self._stopped_child(request, "delete_child")
        self._forget(child.spec.id)
        return "ok"

    def _refuse_for_dynamic(self, op: str) -> None:
        if self.template is not None:
            raise Reply("simple_one_for_one", f"{op} is not supported by a simple_one_for_one supervisor")

    def which_children(self) -> list[dict]:
        rows = []
        for child_id in self.order:
            child = self.children[child_id]
            state = child.pid if child.running else ("restarting" if child.restarting else "undefined")
            rows.append({"id": child_id, "pid": state, "type": child.spec.type,
                         "modules": list(child.spec.modules), "restart": child.spec.restart,
                         "control": child_env(self.env, child_id)["control"]})
        return rows

    def count_children(self) -> dict:
        specs = list(self.children.values())
        return {"specs": len(specs), "active": sum(c.running for c in specs),
                "supervisors": sum(c.spec.type == "supervisor" for c in specs),
                "workers": sum(c.spec.type == "worker" for c in specs)}

    def status(self) -> dict:
        now = time.monotonic()
        return {"path": self.path, "pid": os.getpid(), "strategy": self.strategy,
                "intensity": self.intensity, "period": self.period,
                "restarts_in_period": sum(1 for t in self.restarts if t > now - self.period),
                "bad_frames": self.bad.total, "bad_frames_by_kind": dict(self.bad.by_kind),
                "children": self.which_children()}


def start_bound_s(spec: ChildSpec, start_timeout_s: float) -> float:
    """How long a supervisor waits for the child ``spec`` to be ready.

    A worker gets the supervisor's start timeout. A child supervisor is ready only once each of its
    own children is, and it bounds each of those by its own start timeout; so it gets that bound once
    per child: a layer of a thousand-neuron network on a loaded host may take longer than one timeout,
    and is still making progress, not hung.
    """
    if spec.type != "supervisor":
        return start_timeout_s
    own = float(spec.args.get("start_timeout_s", DEFAULT_START_TIMEOUT_S))
    return max(start_timeout_s, own * max(1, len(spec.args.get("children", ()))))


def stops_concurrently(strategy: str, start_concurrently: bool, types: list[str]) -> bool:
    """Whether a supervisor stops its running children all at once rather than one after another.

    simple_one_for_one children always go at once (as in OTP). Workers that were started at once
    (``start_concurrently``: the neurons of a layer) do not depend on one another, so they stop at
    once too: a layer of 100 neurons then flushes its states on both cores, not one neuron after the
    other. A supervisor with supervisors among its children (the root) keeps the reverse order.
    """
    return strategy == "simple_one_for_one" or (start_concurrently and all(t == "worker" for t in types))


def run_supervisor(args: dict, env: dict) -> None:
    """Process entry point for a supervisor child (``start = [SUPERVISOR_TARGET, args]``)."""
    Supervisor(args, env).run()
