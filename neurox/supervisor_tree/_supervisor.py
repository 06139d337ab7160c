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

from ..runtime import (BadFrames, EXIT_START_FAILED, ExitReason, LauncherClient, LauncherError, Process, Reply,
                       Stop, typed_ops)
from ._child_spec import INFINITY, ChildSpec, ChildSpecError, normalize_child_spec
from ._naming import child_env, control_endpoint
from ._ops import SUPERVISOR_ARGS, ChildId, StartChild
from ._shutdown import shutdown_order, stop_rule, stops_concurrently
from ._strategy import (DEFAULT_INTENSITY, DEFAULT_PERIOD_S, DEFAULT_START_TIMEOUT_S, intensity_exceeded,
                        record_restart, respawns, restart_plan, should_restart, start_bound_s, validate_flags)

SUPERVISOR_TARGET = "neurox.supervisor_tree._supervisor:run_supervisor"


class StartFailed(Exception):
    """A child did not reach ``ready``: it exited, could not be forked, or timed out."""


@dataclass
class Child:
    """One child: its spec, its pid while running, and whether a restart of it is pending."""

    spec: ChildSpec
    pid: int | None = None
    restarting: bool = False
    crashed: bool = False
    """Its last run crashed and it has not been ready since: its next start is told so (``after``)."""

    @property
    def running(self) -> bool:
        return self.pid is not None


class Supervisor(Process):
    """A supervisor: a callback module of the process behaviour (``runtime.Process``).

    ``init`` starts the children (a failure there is a failed start, exit 65); the launcher's notices
    arrive as a readable descriptor (``handle_frame``); queued restarts are tried one per round from
    ``handle_timer``, so requests and exits get in between (as in OTP); ``terminate`` stops every child.
    """

    target = SUPERVISOR_TARGET
    type = "supervisor"
    shutdown = INFINITY

    def control_endpoint(self, args: dict, env: dict) -> str:
        return env.get("control") or control_endpoint(env["run_dir"], env["path"])

    def init(self, args: dict, env: dict) -> dict:
        self.path = env["path"]
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
        self.gave_up = False
        self.endpoint = self.control_endpoint(args, env)
        self.bad = BadFrames(f"supervisor {self.path}")
        self.launcher = LauncherClient(env["launcher"])
        self.watch(self.launcher.fileno())
        self.handlers.update(typed_ops(SUPERVISOR_ARGS, {
            "start_child": self._api_start_child,
            "terminate_child": self._api_terminate_child,
            "restart_child": self._api_restart_child,
            "delete_child": self._api_delete_child,
            "which_children": lambda r: self.which_children(),
            "count_children": lambda r: self.count_children(),
            "status": lambda r: self.status(),
        }))
        try:
            self.start_all()
        except StartFailed as exc:
            self.emit("supervisor_start_failed", detail=str(exc))
            self.launcher.close()
            raise Stop("crash", EXIT_START_FAILED) from None
        self.emit("supervisor_started", strategy=self.strategy, children=list(self.order))
        return {"control": self.endpoint, "strategy": self.strategy}

    # -- process life ---------------------------------------------------------------------------
    def handle_frame(self, source, frames) -> None:
        self._handle_launcher_events(self.launcher.events(0.0))

    def handle_timer(self, now: float) -> float | None:
        """Notices kept while waiting for another, then one queued restart; again at once while busy."""
        self._handle_launcher_events(self.launcher.events(0.0))
        if self.retries and not self.stop_requested:
            self._try_again(self.retries.popleft())
        return now if self.retries or self.deferred else None

    def terminate(self, reason: ExitReason) -> None:
        """Stop every child in reverse start order (a crashed supervisor leaves that to the launcher)."""
        if reason.kind != "crash":
            self.stop_all()
            self.emit("supervisor_shutdown",
                      reason="reached_max_restart_intensity" if self.gave_up else "shutdown")
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
            else:  # forked, maybe not ready yet: rolled back by its own shutdown rule like the others
                child.pid = pid
        if failure is not None:
            self.stop_all()
            raise failure

    def stop_all(self) -> None:
        """Every running child, last started first, each by its own shutdown rule (``_shutdown``)."""
        running = [self.children[c] for c in shutdown_order(self.order, {c for c in self.order
                                                                           if self.children[c].running})]
        if stops_concurrently(self.strategy, self.start_concurrently, [c.spec.type for c in running]):
            self._stop_together(running)
        else:
            for child in running:
                self._stop_together([child])

    # -- starting and stopping one child -------------------------------------------------------
    def _start(self, child: Child, restart: bool) -> int:
        return self._await_start(child, self._spawn(child), restart)

    def _spawn(self, child: Child) -> int:
        spec = child.spec
        try:
            env = child_env(self.env, spec.id)
            if child.crashed:
                env["after"] = "crash"
            return self.launcher.spawn(spec.target, spec.args, env, respawn=respawns(self.strategy, spec.restart))
        except LauncherError as exc:
            self.emit("start_failed", id=spec.id, detail=str(exc))
            raise StartFailed(f"{spec.id}: {exc}") from None

    def _await_start(self, child: Child, pid: int, restart: bool) -> int:
        spec = child.spec
        timeout = start_bound_s(spec, self.start_timeout)
        outcome = self._wait_for(pid, ("ready", "exit"), timeout)
        if outcome is None:
            self.launcher.signal(pid, signal.SIGKILL)
            self._wait_for(pid, ("exit",), stop_rule("brutal_kill").deadline(0.0))
            detail = f"{spec.id} did not become ready within {timeout} s"
        elif outcome["ev"] == "exit":
            detail = f"{spec.id} exited while starting: {ExitReason.from_wire(outcome['reason']).describe()}"
        else:
            child.pid, child.restarting, child.crashed = pid, False, False
            info = outcome.get("info") or {}
            self.emit("child_restarted" if restart else "child_started", id=spec.id, pid=pid, type=spec.type,
                      info=info)
            if "seeding" in info:
                self.emit("neuron_seeded", id=spec.id, pid=pid, **info["seeding"])
            return pid
        self.emit("start_failed", id=spec.id, detail=detail)
        raise StartFailed(detail)

    def _stop(self, child: Child) -> None:
        """Stop one child by its shutdown rule."""
        self._stop_together([child])

    def _stop_together(self, children: list[Child]) -> None:
        """Signal each (in the order given) by its rule, then await each until its own deadline, after
        which it is SIGKILLed (``shutdown_timeout`` event)."""
        signalled = time.monotonic()
        rules = [stop_rule(child.spec.shutdown) for child in children]
        for child, rule in zip(children, rules):
            self.launcher.signal(child.pid, rule.signal)
        for child, rule in zip(children, rules):
            deadline = rule.deadline(signalled)
            outcome = self._wait_for(child.pid, ("exit",), None if deadline is None
                                     else max(0.0, deadline - time.monotonic()))
            if outcome is None and rule.kill_after_s is not None:
                self.emit("shutdown_timeout", id=child.spec.id, pid=child.pid, timeout_ms=child.spec.shutdown)
                self.launcher.signal(child.pid, signal.SIGKILL)
                outcome = self._wait_for(child.pid, ("exit",), stop_rule("brutal_kill").deadline(0.0))
            self._terminated(child, outcome)

    def _terminated(self, child: Child, outcome: dict | None) -> None:
        """A child stopped by its supervisor: forget its pid and say how it ended."""
        reason = ExitReason.from_wire(outcome["reason"]) if outcome else ExitReason("crash")
        self.emit("child_terminated", id=child.spec.id, pid=child.pid, reason=reason.to_wire())
        child.pid = None

    def _wait_for(self, pid: int, kinds: tuple[str, ...], timeout: float | None) -> dict | None:
        """Wait for a launcher notice of ``kinds`` about ``pid``; other notices are kept for later."""
        for notice in list(self.deferred):
            if notice.get("pid") == pid and notice["ev"] in kinds:
                self.deferred.remove(notice)
                return self._unrestarted(notice)
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
                return self._unrestarted(found)

    def _unrestarted(self, notice: dict) -> dict:
        """An exit awaited as a stop or a failed start is not restarted: a replacement the launcher
        started meanwhile (it crashed on its own just then) is killed."""
        if notice.get("replacement"):
            self.launcher.signal(notice["replacement"], signal.SIGKILL)
        return notice

    # -- exits and restarts --------------------------------------------------------------------
    def _handle_launcher_events(self, notices: list[dict]) -> None:
        self.deferred.extend(notices)
        while self.deferred and not self.stop_requested:
            notice = self.deferred.popleft()
            if notice["ev"] == "exit":
                self._on_exit(notice["pid"], ExitReason.from_wire(notice["reason"]), notice.get("replacement"))

    def _child_by_pid(self, pid: int) -> Child | None:
        return next((c for c in self.children.values() if c.pid == pid), None)

    def _on_exit(self, pid: int, reason: ExitReason, replacement: int | None = None) -> None:
        child = self._child_by_pid(pid)
        if child is None:  # a notice about a process this supervisor already let go of
            self._unrestarted({"replacement": replacement})
            return
        child.pid, child.crashed = None, reason.abnormal
        child_id = child.spec.id
        self.emit("child_exited", id=child_id, pid=pid, reason=reason.to_wire(),
                         description=reason.describe())
        if not should_restart(child.spec.restart, reason.kind):
            if child.spec.restart == "temporary" or self.template is not None:
                self._forget(child_id)
            return
        if replacement is not None:
            self._respawned(child, replacement)
            return
        self._restart(child_id)

    def _respawned(self, child: Child, pid: int) -> None:
        """A restart the launcher made at once (``respawn``: one_for_one, where nothing else is stopped
        first): counted against the intensity as any restart, then awaited as any start. Giving up kills
        it first, unannounced: as in OTP, a restart past the intensity never happened."""
        try:
            self._count_restart()
        except Stop:
            self.launcher.signal(pid, signal.SIGKILL)
            self._wait_for(pid, ("exit",), stop_rule("brutal_kill").deadline(0.0))
            raise
        try:
            self._await_start(child, pid, restart=True)
        except StartFailed:
            child.restarting = True
            self.retries.append((child.spec.id,))

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
        """Record a restart; one more than the intensity allows in the period and the supervisor gives up:
        it stops (``terminate`` stops its children) with reason ``shutdown``."""
        self.restarts = record_restart(self.restarts, time.monotonic(), self.period)
        if intensity_exceeded(self.restarts, self.intensity):
            self.emit("intensity_exceeded", intensity=self.intensity, period=self.period,
                      restarts=len(self.restarts))
            self.gave_up = True
            raise Stop("shutdown")

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
    def _lookup(self, request: ChildId) -> Child:
        child = self.children.get(request.id)
        if child is None:
            raise Reply("not_found", f"no child {request.id!r} under {self.path}")
        return child

    def _api_start_child(self, request: StartChild) -> dict:
        if self.template is not None:
            extra = request.args
            self.dynamic_serial += 1
            spec = ChildSpec(f"{self.template.id}-{self.dynamic_serial}", self.template.target,
                             {**self.template.args, **extra}, self.template.restart,
                             self.template.shutdown, self.template.type, self.template.modules)
        else:
            try:
                spec = normalize_child_spec(request.spec)
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

    def _api_terminate_child(self, request: ChildId) -> str:
        child = self._lookup(request)
        if child.running:
            self._stop(child)
        child.restarting = False
        if child.spec.restart == "temporary" or self.template is not None:
            self._forget(child.spec.id)
        return "ok"

    def _stopped_child(self, request: ChildId, op: str) -> Child:
        """The child a restart_child or delete_child names, if it may be restarted or deleted."""
        self._refuse_for_dynamic(op)
        child = self._lookup(request)
        if child.running:
            raise Reply("running", f"{child.spec.id} is running as pid {child.pid}")
        if child.restarting:
            raise Reply("restarting", f"{child.spec.id} is waiting for a restart")
        return child

    def _api_restart_child(self, request: ChildId) -> dict:
        child = self._stopped_child(request, "restart_child")
        try:
            return {"id": child.spec.id, "pid": self._start(child, restart=True)}
        except StartFailed as exc:
            raise Reply("start_failed", str(exc)) from None

    def _api_delete_child(self, request: ChildId) -> str:
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
                **self.bad.counts(),
                "children": self.which_children()}


run_supervisor = Supervisor.main
"""Process entry point for a supervisor child (``start = [SUPERVISOR_TARGET, args]``)."""
