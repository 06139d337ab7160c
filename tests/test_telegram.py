"""Telegram chat-ops: ``neurox telegram`` against a fake Bot API on loopback (tests/_botapi.py) and a
real running network."""
import contextlib
import json
import os
import signal
import subprocess
import sys

import pytest

from _botapi import TOKEN, FakeBotApi, bot_api  # noqa: F401 (bot_api is a fixture)
from _netutil import neuron_call
from _opsutil import all_reporting, network_with_service, wait_until
from neurox.neuron import load_topology
from neurox.ops import BotConfig, BotConfigError, TOKEN_ENV
from neurox.runtime import ControlError
from neurox.supervisor_tree import SupervisorClient, control_endpoint

USER, OPERATOR, STRANGER = 1001, 2002, 6666


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
    for doc, words in [({"users": []}, "must list at least one"), ({"users": ["alice"]}, r"^bot config: users\[0\] has the wrong type: accepted int, got .alice. \(str\)$"),
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
