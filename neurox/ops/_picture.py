"""The Supervisor service's picture of a network: what every process last said, kept from events.

Pure state, no sockets (the service process in ``_service`` feeds it): one :class:`ProcessView` per
process of every host's tree, changed by three kinds of input --

- **events** from each host's bus: a neuron's ``neuron_report`` (its ``status`` and ``metrics``,
  every second) and the supervisors' lifecycle events (``child_started``, ``child_exited``, ...),
  which also count restarts, deaths and replacements;
- **walks**: each supervisor's ``status`` (its children in start order, with their pids and control
  endpoints), asked every few seconds and soon after a lifecycle event, which reconciles whatever
  events were lost (a slow subscriber, a peer that was unreachable) and prunes what is gone;
- **polls**: ``status`` and ``metrics`` of the workers that are not neurons (MessengerIn/Out, the
  reshaper, extensions), which do not report by themselves.

Lifecycle events can arrive out of order across sources (a neuron's last report after its
supervisor's ``child_exited``), so each view remembers the time of its last change and an older
event only counts, it never turns the state back.
"""
from __future__ import annotations

import re
from collections import Counter, deque
from dataclasses import dataclass, field

from ..brain import POOL_ID
from ..supervisor_tree import control_endpoint

REPORT_EVENT = "neuron_report"
REPORT_INTERVAL_S = 1.0
"""How often a neuron of a network of up to 100 reports (``neurox.neuron._process.report_interval_s``)."""


def silent_after_s(report_interval_s: float) -> float:
    """A running neuron whose last report is older than this is shown ``silent`` (hung, or its events lost)."""
    return 3 * report_interval_s + 1.0


SILENT_AFTER_S = silent_after_s(REPORT_INTERVAL_S)
HISTORY = 1000
"""Lifecycle events kept (every host together), newest last."""
SAMPLES = 120
"""Reports kept per neuron for its recent history (two minutes at one a second)."""
NEURON_MODULES = ("neurox.neuron._process",)
RATE_WINDOW_S = 5.0

STATES = ("running", "silent", "restarting", "down", "stopped", "unknown")
"""``running``: alive (and, for a neuron, reporting); ``silent``: alive but no report for a while;
``restarting``: its supervisor is starting it again; ``down``: it exited and has not been restarted
yet; ``stopped``: terminated by its supervisor (kept as a spec, or on the way out); ``unknown``:
named by an event, not yet seen by a walk."""


class Unknown(LookupError):
    """No such neuron (``known`` lists some that exist)."""


class Ambiguous(LookupError):
    """The id exists on several hosts; the query must name one."""


@dataclass
class ProcessView:
    """One process of one host's tree, as last seen."""

    host: str
    path: str
    kind: str = "worker"
    """``supervisor``, ``neuron``, ``twin`` (a neuron's twin in the maintenance pool: not one of the
    network's neurons) or ``worker`` (any other worker: messengers, reshaper, extensions)."""
    pid: int | str | None = None
    state: str = "unknown"
    control: str | None = None
    status: dict = field(default_factory=dict)
    metrics: dict | None = None
    seen: float = 0.0
    """The service's clock when the process last reported (or answered a poll); 0: never."""
    changed: float = 0.0
    """The event time of its last lifecycle change."""
    restarts: int = 0
    deaths: Counter = field(default_factory=Counter)
    replacements: Counter = field(default_factory=Counter)
    children: list[str] = field(default_factory=list)
    samples: deque = field(default_factory=lambda: deque(maxlen=SAMPLES))
    no_metrics: bool = False

    @property
    def id(self) -> str:
        return self.path.rsplit("/", 1)[-1]

    @property
    def parent(self) -> str:
        return self.path.rsplit("/", 1)[0] if "/" in self.path else ""

    @property
    def layer(self) -> str | None:
        if self.kind != "neuron":
            return None
        return self.status.get("layer") or self.parent.rsplit("/", 1)[-1]

    @property
    def report_interval_s(self) -> float:
        """How often this neuron reports, as its status says (a large network's neurons report less often)."""
        return float(self.status.get("report_interval_s", REPORT_INTERVAL_S))

    def shown_state(self, now: float) -> str:
        if self.state == "running" and self.kind == "neuron" and now - self.seen > silent_after_s(self.report_interval_s):
            return "silent"
        return self.state

    def rate(self, key: str, now: float) -> float | None:
        """Per second over the last few reports (None until there are two)."""
        recent = [s for s in self.samples if now - s["t"] <= max(RATE_WINDOW_S, 2 * self.report_interval_s)
                  + self.report_interval_s]
        if len(recent) < 2 or recent[-1]["t"] <= recent[0]["t"]:
            return None
        delta = recent[-1].get(key, 0) - recent[0].get(key, 0)
        return max(0.0, delta) / (recent[-1]["t"] - recent[0]["t"])


@dataclass
class HostView:
    """One host of the network: where its bus and root are, and when the service last heard of it."""

    name: str
    events: str
    control: str | None = None
    events_control: str | None = None
    heard: float = 0.0
    walked: float = 0.0
    walk_error: str | None = None
    local: bool = False
    run_dir: str | None = None
    """The host's run directory when it is this machine's: every control endpoint follows from it."""

    def describe(self, now: float) -> dict:
        return {"host": self.name, "local": self.local, "events": self.events, "control": self.control,
                "heard_s_ago": round(now - self.heard, 3) if self.heard else None,
                "walked_s_ago": round(now - self.walked, 3) if self.walked else None,
                "walk_error": self.walk_error}


class Picture:
    """The current picture and the recent history of every host of a network."""

    def __init__(self, hosts: list[HostView], history: int = HISTORY):
        self.hosts = {h.name: h for h in hosts}
        self.processes: dict[tuple[str, str], ProcessView] = {}
        self.recent: deque[dict] = deque(maxlen=history)
        self.counts = Counter()
        self.losses: dict[str, deque] = {h.name: deque(maxlen=1000) for h in hosts}

    # -- inputs ------------------------------------------------------------------------------------
    def view(self, host: str, path: str, kind: str | None = None) -> ProcessView:
        if kind == "neuron" and path.split("/")[-2:-1] == [POOL_ID]:
            kind = "twin"
        found = self.processes.get((host, path))
        if found is None:
            found = self.processes[(host, path)] = ProcessView(host, path, kind or "worker")
            run_dir = self.hosts[host].run_dir if host in self.hosts else None
            if run_dir:
                found.control = control_endpoint(run_dir, path)
            parent = self.processes.get((host, found.parent))
            if parent is not None and found.id not in parent.children:
                parent.children.append(found.id)
        elif kind is not None and not (found.kind == "neuron" and kind == "worker"):
            found.kind = kind
        return found

    def on_event(self, host: str, event: dict, now: float) -> bool:
        """Apply one event from ``host``'s bus; True when it changed the tree (a walk is due)."""
        self.counts["events"] += 1
        if host in self.hosts:
            self.hosts[host].heard = now
        name, source, t = event.get("event"), event.get("source"), event.get("t", 0.0)
        if not isinstance(name, str) or not isinstance(source, str):
            self.counts["bad_events"] += 1
            return False
        if not isinstance(t, (int, float)):
            t = 0.0
        if name == REPORT_EVENT:
            self._on_report(host, source, event, t, now)
            return False
        self.recent.append({**event, "host": host})
        child_id = event.get("id")
        path = f"{source}/{child_id}" if isinstance(child_id, str) else None
        if name in ("child_started", "child_restarted") and path:
            info = event.get("info") if isinstance(event.get("info"), dict) else {}
            kind = "neuron" if "neuron" in info else "supervisor" if event.get("type") == "supervisor" else "worker"
            view = self.view(host, path, kind)
            if name == "child_restarted":
                view.restarts += 1
            if t >= view.changed:
                view.state, view.pid, view.changed = "running", event.get("pid"), t
            return True
        if name == "child_exited" and path:
            view = self.view(host, path)
            reason = event.get("reason") if isinstance(event.get("reason"), dict) else {}
            view.deaths[str(reason.get("kind", "crash"))] += 1
            if t >= view.changed:
                view.state, view.pid, view.changed = "down", "restarting", t
            return True
        if name == "child_terminated" and path:
            view = self.view(host, path)
            if t >= view.changed:
                view.state, view.pid, view.changed = "stopped", "undefined", t
            return True
        if name == "neuron_seeded" and path:
            self.view(host, path, "neuron").replacements[str(event.get("method", "unknown"))] += 1
            return False
        if name == "supervisor_started":
            view = self.view(host, source, "supervisor")
            if t >= view.changed:
                view.state, view.changed = "running", t
            return True
        if name in ("supervisor_shutdown", "intensity_exceeded"):
            view = self.view(host, source, "supervisor")
            if name == "intensity_exceeded":
                view.deaths["intensity_exceeded"] += 1
            return True
        return name in ("start_failed", "reshaped")

    def _on_report(self, host: str, source: str, event: dict, t: float, now: float) -> None:
        status, metrics = event.get("status"), event.get("metrics")
        if not isinstance(status, dict) or not isinstance(metrics, dict):
            self.counts["bad_events"] += 1
            return
        self.counts["reports"] += 1
        view = self.view(host, source, "neuron")
        if t < view.changed and view.state != "running":
            return  # the last words of a process its supervisor has already seen exit
        view.status, view.metrics, view.seen = status, metrics, now
        view.pid = status.get("pid", view.pid)
        if view.state != "running":
            view.state, view.changed = "running", t
        view.samples.append({"t": now, **{k: metrics.get(k, 0) for k in ("samples", "forwards", "backwards",
                                                                         "updates", "rss_bytes")}})

    def on_supervisor_status(self, host: str, path: str, status: dict, now: float,
                             asked: float | None = None) -> list[dict]:
        """A supervisor answered ``status`` (asked at ``asked``): reconcile its children. Returns its
        children rows. A child whose events told of a change after the question keeps that state."""
        asked = now if asked is None else asked
        view = self.view(host, path, "supervisor")
        view.status = {k: v for k, v in status.items() if k != "children"}
        view.pid, view.state, view.seen = status.get("pid", view.pid), "running", now
        rows = [c for c in status.get("children", []) if isinstance(c, dict) and isinstance(c.get("id"), str)]
        view.children = [c["id"] for c in rows]
        for row in rows:
            kind = "supervisor" if row.get("type") == "supervisor" else \
                "neuron" if set(row.get("modules") or ()) & set(NEURON_MODULES) else None
            child = self.view(host, f"{path}/{row['id']}", kind)
            child.control = row.get("control", child.control)
            if child.changed > asked:
                continue  # an event newer than this answer already said how it is
            child.pid = row.get("pid")
            if isinstance(child.pid, int):
                if child.state in ("unknown", "down", "restarting", "stopped"):
                    child.state, child.changed = "running", asked
            else:
                child.state = "restarting" if child.pid == "restarting" else "stopped"
        gone = [v.path for v in self.processes.values()
                if v.host == host and v.parent == path and v.id not in view.children]
        for child_path in gone:
            self._forget(host, child_path)
        if host in self.hosts:
            self.hosts[host].walked, self.hosts[host].walk_error = now, None
        return rows

    def on_worker(self, host: str, path: str, status: dict | None, metrics: dict | None, now: float) -> None:
        """A worker that is not a neuron answered a poll."""
        view = self.processes.get((host, path))
        if view is None:
            return
        if status is not None:
            view.status, view.seen = status, now
        if metrics is not None:
            view.metrics = metrics

    def on_loss(self, host: str, loss: float) -> None:
        self.losses.setdefault(host, deque(maxlen=1000)).append(float(loss))

    def _forget(self, host: str, path: str) -> None:
        for key in [k for k in self.processes if k[0] == host and (k[1] == path or k[1].startswith(path + "/"))]:
            del self.processes[key]

    # -- queries -------------------------------------------------------------------------------------
    def neurons(self, host: str | None = None) -> list[ProcessView]:
        return sorted((v for v in self.processes.values() if v.kind == "neuron" and host in (None, v.host)),
                      key=lambda v: (v.host, v.layer or "", _natural(v.id)))

    def find(self, neuron_id: str, host: str | None = None) -> ProcessView:
        """The neuron ``neuron_id`` (on ``host`` if given); Unknown or Ambiguous otherwise."""
        found = [v for v in self.neurons(host) if v.id == neuron_id]
        if not found:
            known = [v.id for v in self.neurons(host)]
            raise Unknown(f"no neuron {neuron_id!r}" + (f" on host {host!r}" if host else "") +
                          (f"; known: {', '.join(known[:20])}{' ...' if len(known) > 20 else ''}" if known else
                           "; no neuron has reported yet"))
        if len(found) > 1:
            raise Ambiguous(f"{neuron_id!r} is on several hosts ({', '.join(v.host for v in found)}): give a host")
        return found[0]

    def neuron_row(self, view: ProcessView, now: float) -> dict:
        """The short line every status query shows for a neuron."""
        status, metrics = view.status, view.metrics or {}
        return {"id": view.id, "host": view.host, "layer": view.layer, "path": view.path, "pid": view.pid,
                "state": view.shown_state(now), "control": view.control, "uptime_s": self._uptime(view, now),
                "report_age_s": round(now - view.seen, 3) if view.seen else None,
                "restarts": view.restarts, "deaths": sum(view.deaths.values()),
                "replacements": sum(view.replacements.values()),
                "samples": metrics.get("samples"), "samples_per_s": view.rate("samples", now),
                "rss_bytes": metrics.get("rss_bytes"), "learning": status.get("learning"),
                "network_state": status.get("state")}

    def neuron_detail(self, view: ProcessView, now: float) -> dict:
        return {**self.neuron_row(view, now), "status": view.status, "metrics": view.metrics,
                "deaths_by_reason": dict(view.deaths), "replacements_by_method": dict(view.replacements),
                "rates": {k + "_per_s": view.rate(k, now) for k in ("samples", "forwards", "backwards", "updates")},
                "history": list(view.samples)}

    def tree(self, host: str | None, now: float, detail: bool = False) -> list[dict]:
        """Every host's tree depth first from its root, children in start order."""
        rows: list[dict] = []
        for name in self.hosts if host is None else [host]:
            if (name, "root") in self.processes:
                self._tree_rows(self.processes[(name, "root")], 0, now, detail, rows)
        return rows

    def _tree_rows(self, view: ProcessView, depth: int, now: float, detail: bool, rows: list[dict]) -> None:
        row = {"host": view.host, "path": view.path, "depth": depth,
               "type": "supervisor" if view.kind == "supervisor" else "worker", "kind": view.kind,
               "pid": view.pid, "state": view.shown_state(now), "restarts": view.restarts,
               "deaths": sum(view.deaths.values()), "uptime_s": self._uptime(view, now),
               "rss_bytes": (view.metrics or {}).get("rss_bytes"),
               "restarts_in_period": view.status.get("restarts_in_period")}
        if detail:
            row["status"] = {**view.status, **({"metrics": view.metrics} if view.metrics is not None else {})}
        rows.append(row)
        for child_id in view.children:
            child = self.processes.get((view.host, f"{view.path}/{child_id}"))
            if child is not None:
                self._tree_rows(child, depth + 1, now, detail, rows)

    @staticmethod
    def _uptime(view: ProcessView, now: float) -> float | None:
        if view.state != "running" or "uptime_s" not in view.status or not view.seen:
            return None
        return view.status["uptime_s"] + (now - view.seen)

    def events(self, limit: int, prefix: str = "", host: str | None = None) -> list[dict]:
        matching = [e for e in self.recent if str(e.get("event", "")).startswith(prefix) and host in (None, e["host"])]
        return matching[-limit:] if limit else []

    def loss(self, host: str) -> float | None:
        losses = self.losses.get(host)
        return sum(losses) / len(losses) if losses else None

    def export(self, now: float) -> dict:
        """Everything the Prometheus collector needs, in one map (no weight histograms)."""
        processes = []
        for view in self.processes.values():
            metrics = dict(view.metrics or {})
            weights = metrics.pop("weights", None)
            metrics.pop("bad_frames_by_kind", None)
            if isinstance(weights, dict):
                metrics["weights"] = {k: weights[k] for k in ("mean", "std") if k in weights}
            status = {k: v for k, v in view.status.items() if isinstance(v, (int, float, str, bool, type(None)))}
            if isinstance(view.status.get("neuromodulators"), dict):
                status["neuromodulators"] = view.status["neuromodulators"]
            processes.append({"host": view.host, "path": view.path, "kind": view.kind, "layer": view.layer,
                              "pid": view.pid, "state": view.shown_state(now),
                              "report_age_s": now - view.seen if view.seen else None,
                              "restarts": view.restarts, "deaths": dict(view.deaths),
                              "replacements": dict(view.replacements), "status": status, "metrics": metrics})
        return {"t": now, "hosts": [h.describe(now) | {"loss": self.loss(h.name), "losses": len(self.losses.get(h.name, ()))}
                                    for h in self.hosts.values()],
                "processes": processes, "counts": dict(self.counts)}


def _natural(text: str) -> tuple:
    """Sort key that puts n2 before n10."""
    return tuple(int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text))
