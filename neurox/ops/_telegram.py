"""Telegram chat-ops: a bot that tells designated people about a running network, and lets operators act.

Commands (docs/operations.md):

- ``/neuron_status``, ``/neuron_metrics <id>``, ``/help`` -- for everyone on the ``users`` list;
- ``/kill <id>`` (SIGKILL a neuron; its supervisor replaces it) and ``/mode <state>`` (send
  ``set_state`` to every neuron: awake, meditative or maintenance) -- for the ``operators`` too.

Anyone else gets a polite refusal, and the attempt is logged. The bot long-polls the Bot API
(``getUpdates`` with an offset and a timeout; ``sendMessage``) at a configurable base URL, so it can
be pointed at a local Bot API server (or a test's fake one). The token comes from a file or from
``$NEUROX_TELEGRAM_TOKEN`` and is never written anywhere: it is only ever part of request URLs, and
every log line goes through :class:`RedactingFormatter`, which blanks it even inside a traceback.

It reads the network through its Supervisor service and falls back to asking the neurons directly
(their control sockets, found from the network's ``run.json`` and topology) when the service is not
there; ``/kill`` and ``/mode`` always talk to the neurons themselves, so the bot runs on a host of the
network, as the user the network runs as.
"""
from __future__ import annotations

import logging
import os
import signal
import time
from collections.abc import Callable
import zmq

from ..ext import MESSAGE_LIMIT, BotApi, BotApiError, refusal
from ..neuron import Topology, neuron_control, topology_path
from ..runtime import ControlClient, ControlError, fan_out
from ._bot_config import BotConfig
from ._client import ServiceClient

NETWORK_STATES = ("awake", "meditative", "maintenance")
STATUS_LINES = 40
KILL_REPLACED_WAIT_S = 5.0
MAX_BACKOFF_S = 30.0

log = logging.getLogger("neurox.telegram")


class NetworkAccess:
    """What the bot asks of and does to the network. ``locate()`` returns its ``run.json`` (or {})."""

    def __init__(self, ctx: zmq.Context, locate: Callable[[], dict], timeout: float = 3.0):
        self.ctx, self.locate, self.timeout = ctx, locate, timeout

    def _network(self) -> dict:
        found = self.locate()
        if not found or "run_dir" not in found:
            raise ControlError("no_network", "no running network was found (is it started? is data_dir right?)")
        return found

    def _service(self) -> ServiceClient | None:
        return ServiceClient.find(self.ctx, self._network()["run_dir"], self.timeout)

    def _topology_neurons(self) -> dict[str, tuple[str, str]]:
        """{id: (layer, control endpoint)} from the live topology file (without the service)."""
        network = self._network()
        try:
            topology = Topology.load(topology_path(network["data_dir"]), validate=False)
        except (OSError, ValueError, KeyError) as exc:
            raise ControlError("no_topology", f"cannot read the network's topology: {exc}") from None
        return {n: (topology.layer_of(n).name, neuron_control(network["run_dir"], topology, n))
                for n in topology.neurons()}

    def neuron_status(self) -> dict:
        service = self._service()
        if service is not None:
            with service:
                return {**service.neuron_status(), "source": "service"}
        neurons = self._topology_neurons()
        endpoints = {n: control for n, (_, control) in neurons.items()}
        statuses = fan_out(self.ctx, endpoints, "status", self.timeout)
        metrics = fan_out(self.ctx, endpoints, "metrics", self.timeout)
        rows = []
        for n, (layer, _) in neurons.items():
            status, m = statuses[n], metrics[n]
            alive = not isinstance(status, ControlError)
            rows.append({"id": n, "layer": layer, "host": None, "state": "running" if alive else "not answering",
                         "pid": status.get("pid") if alive else None,
                         "uptime_s": status.get("uptime_s") if alive else None, "restarts": None,
                         "samples": m.get("samples") if isinstance(m, dict) else None, "samples_per_s": None,
                         "rss_bytes": m.get("rss_bytes") if isinstance(m, dict) else None})
        counts: dict[str, int] = {}
        for row in rows:
            counts[row["state"]] = counts.get(row["state"], 0) + 1
        return {"neurons": rows, "counts": counts, "source": "neurons"}

    def neuron_metrics(self, neuron_id: str) -> dict:
        service = self._service()
        if service is not None:
            with service:
                return {**service.neuron_metrics(neuron_id), "source": "service"}
        layer, control = self._neuron(neuron_id)
        client = ControlClient(self.ctx, control, self.timeout)
        try:
            status, metrics = client.call("status"), client.call("metrics")
        finally:
            client.close()
        return {"id": neuron_id, "layer": layer, "host": None, "state": "running", "pid": status.get("pid"),
                "uptime_s": status.get("uptime_s"), "status": status, "metrics": metrics, "source": "neurons"}

    def _neuron(self, neuron_id: str) -> tuple[str, str]:
        """(layer, control endpoint) of a neuron: from the service's picture, else from the topology."""
        service = self._service()
        if service is not None:
            with service:
                row = service.neuron_metrics(neuron_id)
            if row.get("control"):
                return row["layer"], row["control"]
        neurons = self._topology_neurons()
        if neuron_id not in neurons:
            known = ", ".join(sorted(neurons)[:20])
            raise ControlError("not_found", f"no neuron {neuron_id!r}; known: {known}")
        return neurons[neuron_id]

    def neuron_endpoints(self) -> dict[str, str]:
        service = self._service()
        if service is not None:
            with service:
                rows = service.neuron_status()["neurons"]
            found = {r["id"]: r["control"] for r in rows if r.get("control")}
            if found:
                return found
        return {n: control for n, (_, control) in self._topology_neurons().items()}

    def kill(self, neuron_id: str) -> dict:
        """SIGKILL a neuron (its pid as the neuron itself says) and wait a little for its replacement."""
        _, control = self._neuron(neuron_id)
        client = ControlClient(self.ctx, control, self.timeout)
        try:
            pid = client.call("status", timeout=1.0)["pid"]
            killed = time.monotonic()
            os.kill(pid, signal.SIGKILL)
            deadline = killed + KILL_REPLACED_WAIT_S
            while time.monotonic() < deadline:
                try:
                    new_pid = client.call("status", timeout=0.2)["pid"]
                except ControlError:
                    continue
                if new_pid != pid:
                    return {"pid": pid, "replaced_by": new_pid, "after_s": time.monotonic() - killed}
                time.sleep(0.02)
            return {"pid": pid, "replaced_by": None, "after_s": None}
        finally:
            client.close()

    def set_state(self, state: str) -> dict[str, object]:
        return fan_out(self.ctx, self.neuron_endpoints(), "set_state", self.timeout, state=state)


class ChatOps:
    """Commands in, answers out; every refusal and every action is logged."""

    def __init__(self, config: BotConfig, network: NetworkAccess):
        self.config, self.network = config, network
        self.commands = {"/help": (False, self.help), "/start": (False, self.help),
                         "/neuron_status": (False, self.neuron_status), "/neuron_metrics": (False, self.neuron_metrics),
                         "/kill": (True, self.kill), "/mode": (True, self.mode)}

    def handle(self, message: dict) -> str | None:
        """The answer to one message (None: nothing to answer)."""
        sender = message.get("from") or {}
        user = sender.get("id")
        text = message.get("text")
        if not isinstance(text, str) or not isinstance(user, int):
            return None
        words = text.split()
        command = words[0].split("@", 1)[0].lower() if words and words[0].startswith("/") else None
        who = f"user {user}" + (f" (@{sender['username']})" if isinstance(sender.get("username"), str) else "")
        if user not in self.config.users:
            log.warning("refused %s in chat %s: %s", who, (message.get("chat") or {}).get("id"),
                        command[:40] if command else "a message that is not a command")
            return refusal(user)
        if command is None:
            return "I only understand commands; /help lists them."
        if command not in self.commands:
            return f"I do not know {command}; /help lists what I understand."
        for_operators, handler = self.commands[command]
        if for_operators and user not in self.config.operators:
            log.warning("refused %s: %s is for operators only", who, command)
            return f"Sorry, {command} is for operators only, and you are not on that list."
        log.info("%s: %s", who, " ".join([command, *words[1:3]])[:80])
        try:
            return handler(words[1:], user)
        except ControlError as exc:
            return _explain(exc)

    def help(self, args: list[str], user: int) -> str:
        lines = ["I watch a NeuroX network for you.", "",
                 "/neuron_status - every neuron: state, pid, uptime, restarts, samples",
                 "/neuron_metrics <id> - one neuron in detail, e.g. /neuron_metrics L2.n1",
                 "/help - this text"]
        if user in self.config.operators:
            lines += ["", "For operators:",
                      "/kill <id> - SIGKILL a neuron; its supervisor replaces it",
                      f"/mode <state> - set every neuron's state: {', '.join(NETWORK_STATES)}"]
        return "\n".join(lines)

    def neuron_status(self, args: list[str], user: int) -> str:
        answer = self.network.neuron_status()
        rows = answer["neurons"]
        if not rows:
            return "No neuron has reported yet."
        counts = ", ".join(f"{n} {state}" for state, n in sorted(answer["counts"].items()))
        hosts = {r.get("host") for r in rows if r.get("host")}
        head = f"{len(rows)} neurons: {counts}" + (f" on {len(hosts)} hosts" if len(hosts) > 1 else "")
        if answer.get("source") != "service":
            head += "\n(the Supervisor service is not running: asked the neurons directly)"
        ordered = sorted(rows, key=lambda r: r["state"] == "running")  # trouble first
        lines = [_status_line(r, len(hosts) > 1) for r in ordered[:STATUS_LINES]]
        if len(rows) > STATUS_LINES:
            lines.append(f"... and {len(rows) - STATUS_LINES} more (/neuron_metrics <id> for one)")
        return _cut("\n".join([head, "", *lines]))

    def neuron_metrics(self, args: list[str], user: int) -> str:
        if len(args) != 1:
            return "Usage: /neuron_metrics <id>, for example /neuron_metrics L2.n1"
        return _cut(_metrics_text(self.network.neuron_metrics(args[0])))

    def kill(self, args: list[str], user: int) -> str:
        if len(args) != 1:
            return "Usage: /kill <id>, for example /kill L2.n1"
        neuron_id = args[0]
        try:
            done = self.network.kill(neuron_id)
        except ControlError as exc:
            if exc.error == "timeout":
                return f"{neuron_id} does not answer (it may be down or restarting): nothing was killed."
            raise
        except ProcessLookupError:
            return f"{neuron_id} exited by itself meanwhile: nothing was killed."
        except PermissionError:
            return f"I may not signal {neuron_id}'s process (the bot runs as another user): nothing was killed."
        log.info("user %s killed %s (pid %s)", user, neuron_id, done["pid"])
        if done["replaced_by"] is None:
            return (f"Killed {neuron_id} (pid {done['pid']}). It was not replaced within "
                    f"{KILL_REPLACED_WAIT_S:.0f} s; /neuron_status shows how it is.")
        return (f"Killed {neuron_id} (pid {done['pid']}). Its supervisor replaced it in "
                f"{done['after_s'] * 1000:.0f} ms: pid {done['replaced_by']}.")

    def mode(self, args: list[str], user: int) -> str:
        if len(args) != 1 or args[0].lower() not in NETWORK_STATES:
            return f"Usage: /mode <state>, with state one of: {', '.join(NETWORK_STATES)}"
        state = args[0].lower()
        answers = self.network.set_state(state)
        if not answers:
            return "The network has no neurons to set."
        errors = {n: a for n, a in answers.items() if isinstance(a, ControlError)}
        unknown = sorted(n for n, e in errors.items() if e.error == "unknown_op")
        silent = sorted(n for n, e in errors.items() if e.error == "timeout")
        if len(unknown) == len(answers):
            return ("The neurons do not know set_state yet (this NeuroX has no network states): "
                    "nothing was changed.")
        done = len(answers) - len(errors)
        log.info("user %s set the mode %s: %d of %d neurons", user, state, done, len(answers))
        lines = [f"Mode {state}: {done} of {len(answers)} neurons set."]
        if unknown:
            lines.append(f"{len(unknown)} do not know set_state yet (this NeuroX has no network states): "
                         f"{_some(unknown)}")
        if silent:
            lines.append(f"{len(silent)} did not answer: {_some(silent)}")
        for n, exc in sorted(errors.items())[:STATUS_LINES]:
            if exc.error not in ("unknown_op", "timeout"):
                lines.append(f"{n}: {exc.error}: {exc.detail}")
        return _cut("\n".join(lines))


def _explain(exc: ControlError) -> str:
    if exc.error == "not_found":
        return f"Not found: {exc.detail}"
    if exc.error == "timeout":
        return "The network did not answer in time; is it running?"
    if exc.error in ("no_network", "no_topology"):
        return exc.detail[:1].upper() + exc.detail[1:] + "."
    return f"The network answered with an error: {exc.error}: {exc.detail}"


def _some(names: list[str], shown: int = 20) -> str:
    return ", ".join(names[:shown]) + (f" and {len(names) - shown} more" if len(names) > shown else "")


def _cut(text: str) -> str:
    return text if len(text) <= MESSAGE_LIMIT else text[:MESSAGE_LIMIT - 20] + "\n... (cut)"


def _seconds(value) -> str:
    if not isinstance(value, (int, float)):
        return "-"
    return f"{value:.0f} s" if value < 120 else f"{value / 60:.0f} min" if value < 7200 else f"{value / 3600:.1f} h"


def _mib(value) -> str:
    return f"{value / 2 ** 20:.1f} MiB" if isinstance(value, (int, float)) else "-"


def _status_line(row: dict, show_host: bool) -> str:
    parts = [row["id"] + (f"@{row['host']}" if show_host and row.get("host") else ""), row["state"]]
    if row.get("pid") is not None:
        parts.append(f"pid {row['pid']}")
    parts.append(f"up {_seconds(row.get('uptime_s'))}")
    if row.get("restarts") is not None:
        parts.append(f"restarts {row['restarts']}")
    if isinstance(row.get("samples"), int):
        rate = row.get("samples_per_s")
        parts.append(f"{row['samples']:,} samples" + (f" ({rate:,.0f}/s)" if isinstance(rate, (int, float)) else ""))
    return "  ".join(parts)


def _metrics_text(answer: dict) -> str:
    status, metrics = answer.get("status") or {}, answer.get("metrics") or {}
    where = f"layer {answer.get('layer')}" + (f", host {answer['host']}" if answer.get("host") else "")
    head = f"{answer['id']} ({where}): {answer.get('state')}, pid {answer.get('pid')}, up {_seconds(answer.get('uptime_s'))}"
    if answer.get("report_age_s") is not None:
        head += f", last report {answer['report_age_s']:.1f} s ago"
    if not metrics:
        return head + "\nIt has not reported any metrics yet."
    rate = (answer.get("rates") or {}).get("samples_per_s")
    lines = [head,
             f"samples {metrics.get('samples', 0):,}" + (f" ({rate:,.0f}/s)" if isinstance(rate, (int, float)) else "")
             + f", forwards {metrics.get('forwards', 0):,}, backwards {metrics.get('backwards', 0):,},"
               f" updates {metrics.get('updates', 0):,}",
             f"missed inputs {metrics.get('missed_inputs', 0)}, missed gradients {metrics.get('missed_gradients', 0)},"
             f" dropped sends {metrics.get('dropped_sends', 0)}, bad frames {metrics.get('bad_frames', 0)}",
             f"memory {_mib(metrics.get('rss_bytes'))}, flushes {status.get('flushes', '-')}"
             + (f" (last {status['last_flush_ms']:.1f} ms)" if isinstance(status.get("last_flush_ms"), (int, float)) else "")
             + f", learning rate {status.get('learning_rate', '-')}, learning {'on' if status.get('learning') else 'off'}"]
    if "restarts" in answer:
        deaths = ", ".join(f"{k} {v}" for k, v in sorted((answer.get("deaths_by_reason") or {}).items())) or "none"
        seeded = ", ".join(f"{k} {v}" for k, v in sorted((answer.get("replacements_by_method") or {}).items())) or "none"
        lines.append(f"restarts {answer['restarts']}, deaths: {deaths}, replacements: {seeded}")
    if isinstance(status.get("state"), str):
        lines.append(f"state {status['state']}")
    chemistry = status.get("neuromodulators") or metrics.get("neuromodulators")
    if isinstance(chemistry, dict) and chemistry.get("levels"):
        levels = ", ".join(f"{k} {v:.3g}" for k, v in sorted(chemistry["levels"].items()) if isinstance(v, (int, float)))
        lines.append(f"neurotransmitters: {levels}")
    return "\n".join(lines)


class TelegramBot:
    """The long-polling loop: updates in, answers out, until :meth:`stop` or a signal."""

    def __init__(self, api: BotApi, chatops: ChatOps, poll_timeout_s: int = 30):
        self.api, self.chatops, self.poll_timeout_s = api, chatops, poll_timeout_s
        self.offset: int | None = None
        self.stopping = False

    def run(self) -> int:
        """Poll until stopped (0) or until the Bot API refuses the token (2)."""
        backoff = 1.0
        log.info("polling the Bot API for updates")
        try:
            while not self.stopping:
                try:
                    updates = self.api.get_updates(self.offset, self.poll_timeout_s)
                except BotApiError as exc:
                    if exc.code in (401, 403, 404):
                        log.error("the Bot API refused the token (%s): check it", exc)
                        return 2
                    wait = exc.retry_after or backoff
                    log.warning("getUpdates failed (%s); trying again in %.0f s", exc, wait)
                    self._sleep(wait)
                    backoff = min(MAX_BACKOFF_S, backoff * 2)
                    continue
                backoff = 1.0
                for update in updates:
                    self._on_update(update)
        except KeyboardInterrupt:
            pass
        finally:
            self._confirm()
        log.info("stopped")
        return 0

    def _on_update(self, update: dict) -> None:
        update_id = update.get("update_id")
        if isinstance(update_id, int):
            self.offset = max(self.offset or 0, update_id + 1)
        message = update.get("message")
        if not isinstance(message, dict):
            return
        try:
            answer = self.chatops.handle(message)
        except Exception:  # noqa: BLE001 -- one bad command must not stop the bot; it is logged whole
            log.exception("a command failed")
            answer = "Something went wrong while answering; it has been logged."
        chat = (message.get("chat") or {}).get("id")
        if answer and isinstance(chat, int):
            try:
                self.api.send_message(chat, answer, message.get("message_id"))
            except BotApiError as exc:
                log.warning("sendMessage failed (%s)", exc)

    def _confirm(self) -> None:
        """Tell the Bot API which updates were handled, so a restart does not handle them again."""
        if self.offset is None:
            return
        try:
            self.api.get_updates(self.offset, 0)
        except BotApiError:
            pass

    def _sleep(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while not self.stopping and time.monotonic() < deadline:
            time.sleep(min(0.2, deadline - time.monotonic()))

    def stop(self) -> None:
        self.stopping = True
