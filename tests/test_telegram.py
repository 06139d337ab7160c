"""Telegram chat-ops: ``neurox telegram`` against a fake Bot API on loopback and a real running network.

``FakeBotApi`` speaks the part of the Bot API the bot uses (``getUpdates`` with offset and long-poll
timeout, ``sendMessage``) at ``http://127.0.0.1:PORT/bot<token>/<method>``; tests put messages in
as Telegram would deliver them and read what the bot sent back.
"""
import contextlib
import itertools
import json
import os
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from _netutil import neuron_call
from _opsutil import all_reporting, network_with_service, wait_until
from neurox.neuron import load_topology
from neurox.ops import BotConfig, BotConfigError, TOKEN_ENV
from neurox.runtime import ControlError
from neurox.supervisor_tree import SupervisorClient, control_endpoint

TOKEN = "4242424242:AAHx-secret_Token-do-not-log-me"
USER, OPERATOR, STRANGER = 1001, 2002, 6666


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        pass  # a bot stopped in the middle of a long poll closes its connection: nothing to report


class FakeBotApi:
    """A Bot API that keeps updates until they are confirmed and records every sendMessage."""

    def __init__(self, token: str = TOKEN):
        self.token = token
        self.updates: list[dict] = []
        self.sent: list[dict] = []
        self.failures: list[tuple[int, bytes]] = []  # (status, body) answered to the next getUpdates calls
        self.ids = itertools.count(1)
        self.cond = threading.Condition()
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                length = int(self.headers.get("Content-Length", 0))
                payload = json.loads(self.rfile.read(length) or b"{}")
                prefix = f"/bot{api.token}/"
                if not self.path.startswith(prefix):
                    return self._answer(401, {"ok": False, "error_code": 401, "description": "Unauthorized"})
                method = self.path[len(prefix):]
                if method == "getUpdates":
                    with api.cond:
                        if api.failures:
                            status, body = api.failures.pop(0)
                            return self._raw(status, body)
                    return self._answer(200, {"ok": True, "result": api.get_updates(payload)})
                if method == "sendMessage":
                    with api.cond:
                        api.sent.append(payload)
                        api.cond.notify_all()
                    return self._answer(200, {"ok": True, "result": {"message_id": next(api.ids)}})
                return self._answer(404, {"ok": False, "error_code": 404, "description": "Not Found: method"})

            def _answer(self, status: int, body: dict):
                self._raw(status, json.dumps(body).encode())

            def _raw(self, status: int, body: bytes):
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = _QuietServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}"

    def get_updates(self, payload: dict) -> list[dict]:
        offset, timeout = payload.get("offset"), min(float(payload.get("timeout", 0)), 5.0)
        deadline = time.monotonic() + timeout
        with self.cond:
            if offset is not None:  # confirmed: Telegram forgets them
                self.updates = [u for u in self.updates if u["update_id"] >= offset]
            while not self.updates and (left := deadline - time.monotonic()) > 0:
                self.cond.wait(left)
            return list(self.updates)

    def say(self, user: int, text: str, username: str = "someone") -> int:
        """A private message from ``user``; returns its message id."""
        message_id = next(self.ids)
        with self.cond:
            self.updates.append({"update_id": 500 + message_id, "message": {
                "message_id": message_id, "date": int(time.time()), "text": text, "chat": {"id": user, "type": "private"},
                "from": {"id": user, "is_bot": False, "first_name": username, "username": username}}})
            self.cond.notify_all()
        return message_id

    def reply_to(self, message_id: int, timeout: float = 20.0) -> str:
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for sent in self.sent:
                    if sent.get("reply_to_message_id") == message_id:
                        return sent["text"]
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no answer to message {message_id}; sent: {self.sent[-5:]}")
                self.cond.wait(left)

    def ask(self, user: int, text: str, timeout: float = 20.0) -> str:
        return self.reply_to(self.say(user, text), timeout)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def bot_api():
    api = FakeBotApi()
    yield api
    api.close()


@contextlib.contextmanager
def running_bot(tmp_path, api: FakeBotApi, data_dir, token_in: str = "env", token: str = TOKEN, **config):
    """``neurox telegram`` as a subprocess; yields (process, log path). Stopped by SIGTERM on the way out."""
    lines = [f"users = [{USER}]", f"operators = [{OPERATOR}]", f'api_url = "{api.url}"', "poll_timeout_s = 2",
             f'data_dir = "{data_dir}"', *[f"{k} = {json.dumps(v)}" for k, v in config.items()]]
    env = {k: v for k, v in os.environ.items() if k != TOKEN_ENV}
    if token_in == "env":
        env[TOKEN_ENV] = token
    else:
        (tmp_path / "token").write_text(token + "\n")
        lines.append('token_file = "token"')
    (tmp_path / "bot.toml").write_text("\n".join(lines) + "\n")
    log = tmp_path / "bot.log"
    with open(log, "w") as out:
        bot = subprocess.Popen([sys.executable, "-m", "neurox.cli", "telegram", "--config", str(tmp_path / "bot.toml")],
                               stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        yield bot, log
    finally:
        if bot.poll() is None:
            bot.send_signal(signal.SIGTERM)
        bot.wait(30)


def assert_no_token(log, *also: str) -> str:
    text = log.read_text()
    for where in (text, *also):
        assert TOKEN not in where and TOKEN.split(":")[1] not in where
    return text


@pytest.mark.timeout(180)
def test_the_bot_answers_a_designated_user_and_refuses_a_stranger(tmp_path, bot_api, no_stray_processes):
    topology = load_topology()
    with network_with_service(topology, tmp_path / "data") as network:
        all_reporting(network)
        with running_bot(tmp_path, bot_api, tmp_path / "data") as (bot, log):
            refusal = bot_api.ask(STRANGER, "/neuron_status")
            assert refusal.startswith("Sorry") and str(STRANGER) in refusal and "neuron" not in refusal
            assert bot_api.ask(STRANGER, "/kill L2.n1").startswith("Sorry")
            help_text = bot_api.ask(USER, "/help")
            assert "/neuron_status" in help_text and "/neuron_metrics" in help_text and "/kill" not in help_text
            status = bot_api.ask(USER, "/neuron_status")
            assert status.startswith("9 neurons: 9 running")
            assert all(f"{n}  running  pid " in status for n in topology.neurons())
            metrics = bot_api.ask(USER, "/neuron_metrics L2.n1")
            pid = neuron_call(network, "L2.n1", "status")["pid"]
            assert metrics.startswith("L2.n1 (layer L2, host ") and f"running, pid {pid}" in metrics
            assert "samples 0" in metrics and "restarts 0, deaths: none" in metrics
            assert bot_api.ask(USER, "/neuron_metrics@NeuroxBot L2.n1").startswith("L2.n1 (layer L2")
            assert bot_api.ask(USER, "/neuron_metrics nobody").startswith("Not found: no neuron 'nobody'; known: L0.n0")
            assert bot_api.ask(USER, "/neuron_metrics").startswith("Usage: /neuron_metrics <id>")
            assert bot_api.ask(USER, "/kill L2.n1") == "Sorry, /kill is for operators only, and you are not on that list."
            assert bot_api.ask(USER, "/mode awake").startswith("Sorry, /mode is for operators only")
            assert bot_api.ask(USER, "/frobnicate").startswith("I do not know /frobnicate")
            assert bot_api.ask(USER, "how are you?") == "I only understand commands; /help lists them."
            assert "/kill <id>" in bot_api.ask(OPERATOR, "/help")
            assert neuron_call(network, "L2.n1", "status")["pid"] == pid  # nobody killed anything
        assert bot.returncode == 0
        text = assert_no_token(log, *[json.dumps(s) for s in bot_api.sent])
        assert f"refused user {STRANGER} (@someone) in chat {STRANGER}: /neuron_status" in text
        assert f"refused user {USER} (@someone): /kill is for operators only" in text


def set_state_known(network) -> bool:
    """Whether these neurons answer set_state (the network states of the brain work) at all."""
    try:
        neuron_call(network, "L0.n0", "no_such_op")
    except ControlError as exc:
        return "set_state" in exc.detail
    raise AssertionError("a neuron accepted an unknown op")


@pytest.mark.timeout(180)
def test_operators_kill_and_set_the_mode_and_get_clear_errors(tmp_path, bot_api, no_stray_processes):
    with network_with_service(load_topology(), tmp_path / "data") as network:
        all_reporting(network)
        with running_bot(tmp_path, bot_api, tmp_path / "data", token_in="file") as (bot, log):
            old = neuron_call(network, "L2.n1", "status")["pid"]
            answer = bot_api.ask(OPERATOR, "/kill L2.n1")
            new = neuron_call(network, "L2.n1", "status")["pid"]
            assert new != old and answer.startswith(f"Killed L2.n1 (pid {old}). Its supervisor replaced it in ")
            assert answer.endswith(f"ms: pid {new}.")

            def restart_counted():
                return "restarts 1, deaths: crash 1" in bot_api.ask(USER, "/neuron_metrics L2.n1")
            wait_until(restart_counted, 20, "the restart to show in /neuron_metrics")
            assert bot_api.ask(OPERATOR, "/kill L9.n9").startswith("Not found: no neuron 'L9.n9'")
            assert bot_api.ask(OPERATOR, "/kill").startswith("Usage: /kill <id>")
            assert bot_api.ask(OPERATOR, "/mode sleepy").startswith(
                "Usage: /mode <state>, with state one of: awake, meditative, maintenance")
            mode = bot_api.ask(OPERATOR, "/mode meditative")
            if set_state_known(network):
                assert mode == "Mode meditative: 9 of 9 neurons set."
                assert neuron_call(network, "L1.n1", "status")["state"] == "meditative"
            else:
                assert mode == ("The neurons do not know set_state yet (this NeuroX has no network states): "
                                "nothing was changed.")
            # a dead neuron: terminated by its supervisor, it cannot be killed, and it is shown stopped
            layer = SupervisorClient(control_endpoint(network.run_dir, "root/L3"))
            try:
                layer.terminate_child("L3.n0")
                wait_until(lambda: "1 stopped" in bot_api.ask(USER, "/neuron_status"), 20, "L3.n0 shown stopped")
                assert bot_api.ask(OPERATOR, "/kill L3.n0") == \
                    "L3.n0 does not answer (it may be down or restarting): nothing was killed."
                assert "L3.n0 (layer L3" in bot_api.ask(USER, "/neuron_metrics L3.n0")
                assert ": stopped, pid undefined" in bot_api.ask(USER, "/neuron_metrics L3.n0")
                if not set_state_known(network):
                    assert bot_api.ask(OPERATOR, "/mode awake") == (
                        "Mode awake: 0 of 9 neurons set.\n8 do not know set_state yet (this NeuroX has no network "
                        "states): L0.n0, L1.n0, L1.n1, L2.n0, L2.n1, L2.n2, L3.n1, L4.n0\n1 did not answer: L3.n0")
            finally:
                layer.restart_child("L3.n0")
                layer.close()
        assert bot.returncode == 0
        text = assert_no_token(log)
        assert f"user {OPERATOR} killed L2.n1 (pid {old})" in text


@pytest.mark.timeout(120)
def test_without_the_service_the_bot_asks_the_neurons(tmp_path, bot_api, no_stray_processes):
    topology = load_topology()
    with network_with_service(topology, tmp_path / "data", service=False) as network:
        with running_bot(tmp_path, bot_api, tmp_path / "data") as (bot, log):
            status = bot_api.ask(USER, "/neuron_status")
            assert status.startswith("9 neurons: 9 running\n(the Supervisor service is not running: asked the "
                                     "neurons directly)")
            pid = neuron_call(network, "L1.n1", "status")["pid"]
            assert f"L1.n1 (layer L1): running, pid {pid}" in bot_api.ask(USER, "/neuron_metrics L1.n1")
            assert bot_api.ask(USER, "/neuron_metrics L1.n9").startswith("Not found: no neuron 'L1.n9'")
            assert bot_api.ask(OPERATOR, "/kill L1.n1").startswith(f"Killed L1.n1 (pid {pid}).")
    assert bot.returncode == 0
    # and with no network at all
    with running_bot(tmp_path, bot_api, tmp_path / "nothing-here") as (bot, log):
        assert bot_api.ask(USER, "/neuron_status") == \
            "No running network was found (is it started? is data_dir right?)."
    assert bot.returncode == 0
    assert_no_token(log)


@pytest.mark.timeout(120)
def test_the_token_stays_out_of_the_logs_whatever_goes_wrong(tmp_path, bot_api, no_stray_processes):
    bot_api.failures = [(500, b'{"ok": false, "error_code": 500, "description": "Internal Server Error"}'),
                        (502, b"<html>bad gateway</html>"), (200, b"not json at all"),
                        (429, b'{"ok": false, "error_code": 429, "description": "Too Many Requests: retry after 1",'
                              b' "parameters": {"retry_after": 1}}')]
    with running_bot(tmp_path, bot_api, tmp_path / "none", token_in="file") as (bot, log):
        assert bot_api.ask(USER, "/help", timeout=60).startswith("I watch a NeuroX network")
    assert bot.returncode == 0
    text = assert_no_token(log)
    assert text.count("getUpdates failed") == 4 and "Too Many Requests" in text
    # a token the Bot API refuses: the bot says so and stops, still without writing the token anywhere
    wrong = TOKEN.replace("secret", "forged")
    with running_bot(tmp_path, bot_api, tmp_path / "none", token=wrong) as (bot, log):
        assert bot.wait(30) == 2
    text = log.read_text()
    assert "the Bot API refused the token (401 Unauthorized)" in text and wrong.split(":")[1] not in text
    # a token file that is missing, and a config with a mistake: clear errors, exit 2
    (tmp_path / "bad.toml").write_text(f'users = [{USER}]\ntoken_file = "missing"\n')
    done = subprocess.run([sys.executable, "-m", "neurox.cli", "telegram", "--config", str(tmp_path / "bad.toml")],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "cannot read the token file" in done.stderr


def test_bot_configs_with_mistakes_are_refused_with_the_key_named(tmp_path, monkeypatch):
    config = BotConfig.from_mapping({"users": [1], "operators": [2]})
    assert config.users == {1, 2} and config.operators == {2} and config.api_url == "https://api.telegram.org"
    for doc, words in [({"users": []}, "must list at least one"), ({"users": ["alice"]}, "list of Telegram user ids"),
                       ({"users": [1], "api_url": "api.telegram.org"}, "must start with http"),
                       ({"users": [1], "poll_timeout_s": 9999}, "poll_timeout_s"),
                       ({"users": [1], "tokn": "x"}, "unknown key 'tokn'"), ({"users": 1}, "wrong type")]:
        with pytest.raises(BotConfigError, match=words):
            BotConfig.from_mapping(doc)
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    with pytest.raises(BotConfigError, match="no token"):
        config.token()
    monkeypatch.setenv(TOKEN_ENV, "has a space")
    with pytest.raises(BotConfigError, match="does not hold a Bot API token") as caught:
        config.token()
    assert "has a space" not in str(caught.value)
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    assert config.token() == TOKEN
