"""The Telegram messenger (``module = "telegram"``) in a real network, against the Bot API stand-in
(tests/_botapi.py): replies to the very message, refusals, teaching by chat, Telegram's limits, and
a SIGKILL of the extension between request and answer that loses nothing and doubles nothing."""
import os
import random
import signal

import psutil
import pytest

from _botapi import TOKEN, bot_api  # noqa: F401 (bot_api is a fixture)
from _extutil import ext_call, network_with, wait_until
from _netutil import neuron_call
from neurox.ext import TargetSpace
from neurox.ext._telegram_chat import Access, Journal, Pacer, answer_text, backoff, read_message
from neurox.neuron import load_topology

USER, STRANGER, GROUP, MEMBER = 1001, 6666, -300, 4242
LABELS = ["weather", "sport", "food", "computers"]


def text_topology():
    topology = load_topology()
    topology.text = {"encoder": "hashing"}
    topology.output["labels"] = LABELS
    topology.layers[-1].settings["units"] = len(LABELS)
    return topology.validate()


def chat_line(tmp_path, api, **more) -> dict:
    (tmp_path / "token").write_text(TOKEN + "\n")
    return {"name": "chat", "module": "telegram", "users": [USER], "chats": [GROUP], "api_url": api.url,
            "token_file": str(tmp_path / "token"), "poll_timeout_s": 1, "backoff_s": 0.05, "backoff_max_s": 0.3,
            "chat_interval_s": 0.0, "deadline_s": 10.0, **more}


def one_reply(api, message_id: int, chat: int, timeout: float = 30.0) -> str:
    """The text of the one reply to ``message_id``, sent in ``chat``."""
    api.reply_to(message_id, timeout)
    replies = api.replies_to(message_id)
    assert len(replies) == 1 and replies[0]["chat_id"] == chat, replies
    return replies[0]["text"]


@pytest.mark.timeout(150)
def test_each_message_gets_one_reply_to_itself_strangers_are_refused_and_limits_are_kept(
        tmp_path, bot_api, no_stray_processes):
    bot_api.send_failures = [(429, b'{"ok": false, "error_code": 429, "description": "Too Many Requests: retry '
                                   b'after 1", "parameters": {"retry_after": 1}}'),
                             (502, b"<html>bad gateway</html>")]
    with network_with(tmp_path, [chat_line(tmp_path, bot_api, chat_interval_s=0.4)], text_topology()) as network:
        first = bot_api.say(USER, "is it sunny today?")
        assert one_reply(bot_api, first, USER) in LABELS
        limited = [t for t, m in bot_api.calls if m == "sendMessage"]
        assert len(limited) == 3 and limited[2] - limited[0] >= 1.0  # the 429's retry_after was waited out
        ids = [bot_api.say(USER, f"question {i}") for i in range(3)]
        assert [one_reply(bot_api, m, USER) in LABELS for m in ids] == [True] * 3
        sent = [t for t, m in bot_api.calls if m == "sendMessage"][3:]
        assert all(b - a >= 0.38 for a, b in zip(sent, sent[1:])), sent  # one a chat_interval_s in a chat
        refused = bot_api.say(STRANGER, "let me in")
        assert one_reply(bot_api, refused, STRANGER).startswith("Sorry, this bot only answers the people") and \
            str(STRANGER) in bot_api.replies_to(refused)[0]["text"]
        in_group = bot_api.say(MEMBER, "what about the match?", chat=GROUP)
        assert one_reply(bot_api, in_group, GROUP) in LABELS
        learnt = bot_api.say(USER, "/learn sport the striker scored a goal")
        assert one_reply(bot_api, learnt, USER).startswith("Learnt: sport. (Before this, I would have said: ")
        assert one_reply(bot_api, bot_api.say(USER, "/learn hockey a puck"), USER).startswith(
            "I cannot learn that: unknown target 'hockey'; expected a label name (weather, sport")
        assert "/learn LABEL text" in one_reply(bot_api, bot_api.say(USER, "/help"), USER)
        metrics = wait_until(lambda: (m := ext_call(network, "chat")) and m["sent"] == 9 and m, 20, "9 sent")
        assert (metrics["asked"], metrics["learnt"], metrics["refused"], metrics["said"]) == (5, 1, 1, 3)
        assert metrics["rate_limited"] == 1 and metrics["send_retries"] == 1 and metrics["duplicates"] == 0
        assert ext_call(network, "messenger_in")["replied"] == 6
    assert len(bot_api.sent) == 9 and TOKEN.split(":")[1] not in (tmp_path / "net").joinpath(
        "extensions", "chat.journal.json").read_text()


@pytest.mark.timeout(180)
def test_a_sigkill_between_request_and_answer_loses_nothing_and_doubles_nothing(tmp_path, bot_api,
                                                                                no_stray_processes):
    with network_with(tmp_path, [chat_line(tmp_path, bot_api)], text_topology()) as network:
        assert one_reply(bot_api, bot_api.say(USER, "warming up"), USER) in LABELS
        # an answer the network gave but Telegram has not taken yet ...
        bot_api.send_failures = [(500, b'{"ok": false, "error_code": 500, "description": "Internal"}')] * 10000
        asked = bot_api.say(USER, "rain and wind all day")
        wait_until(lambda: ext_call(network, "chat")["send_retries"] >= 1, 30, "the answer to be retried")
        # ... and a lesson MessengerIn has taken but not answered yet
        messenger_in = ext_call(network, "messenger_in", "status")["pid"]
        updates_before = neuron_call(network, "L4.n0", "metrics")["updates"]
        os.kill(messenger_in, signal.SIGSTOP)
        try:
            lesson = bot_api.say(USER, "/learn weather a cold grey morning")
            wait_until(lambda: ext_call(network, "chat")["learnt"] == 1, 30, "the lesson to be taken")
            old = ext_call(network, "chat", "status")["pid"]
            os.kill(old, signal.SIGSTOP)  # it sends nothing more; what it has sent is lost with it:
            with bot_api.cond:           # (a request it wrote may still be read after its death)
                bot_api.cut_off_ports |= {c.laddr.port for c in psutil.Process(old).net_connections("tcp")
                                          if c.raddr and c.raddr.port == bot_api.server.server_port}
            os.kill(old, signal.SIGKILL)
            with bot_api.cond:
                bot_api.send_failures.clear()
        finally:
            os.kill(messenger_in, signal.SIGCONT)
        assert one_reply(bot_api, asked, USER) in LABELS
        assert one_reply(bot_api, lesson, USER).startswith("Learnt: weather.")
        status = wait_until(lambda: (s := ext_call(network, "chat", "status")) and s["to_send"] == s["waiting"] == 0
                            and s, 20, "the journal to empty")
        assert status["pid"] != old and status["resumed"] == 2
        later = bot_api.say(USER, "and now?")  # a message after: answered once, and nothing before comes again
        assert one_reply(bot_api, later, USER) in LABELS
        assert [len(bot_api.replies_to(m)) for m in (asked, lesson)] == [1, 1]
        assert len(bot_api.sent) == 4
        # the lesson was learnt once: the restarted messenger's request found MessengerIn's answer
        assert neuron_call(network, "L4.n0", "metrics")["updates"] == updates_before + 1
        repeats = ext_call(network, "messenger_in")
        assert repeats["repeats_answered"] + repeats["repeats_in_flight"] >= 1


def test_what_a_message_asks_and_what_its_answer_says():
    targets = TargetSpace(text_topology())
    access = Access(frozenset({USER}), frozenset({GROUP}))

    def message(text, user=USER, chat=None):
        return {"message_id": 7, "text": text, "from": {"id": user}, "chat": {"id": chat or user}}
    assert read_message(message("hello there"), access, targets, 100) == ("ask", {"text": "hello there"})
    assert read_message(message("/learn food hot soup"), access, targets, 100) == \
        ("learn", {"text": "hot soup", "target": 2, "label": "food"})
    assert read_message(message("/learn@NeuroxBot 1 a goal"), access, targets, 100)[1]["target"] == 1
    assert read_message(message("/learn food"), access, targets, 100)[1].startswith("Usage: /learn LABEL text")
    assert read_message(message("hi", STRANGER), access, targets, 100) == ("refuse", None)
    assert read_message(message("hi", STRANGER, GROUP), access, targets, 100)[0] == "ask"
    assert read_message(message("x" * 101), access, targets, 100)[1] == "That is 101 characters; I read at most 100."
    assert read_message({**message(""), "text": None}, access, targets, 100) == ("say", "I only read text messages.")
    assert read_message({"message_id": 1, "text": "no sender"}, access, targets, 100) == ("ignore", None)
    assert read_message(message("/frob"), access, targets, 100)[1].startswith("I do not know /frob")
    assert answer_text({}, {"ok": True, "label": 1, "text": "sport"}) == "sport"
    assert answer_text({}, {"ok": True, "output": [0.5, 0.25]}) == "[0.5, 0.25]"
    assert answer_text({"target": 0, "label": "weather"}, {"ok": True, "text": "food"}) == \
        "Learnt: weather. (Before this, I would have said: food.)"
    assert answer_text({}, {"ok": False, "error": "deadline"}) is None  # asked again, not answered
    assert answer_text({}, {"ok": False, "error": "bad_input", "detail": "x"}).startswith("Sorry, the network could")


def test_pacing_backoff_and_the_journal(tmp_path):
    pacer = Pacer(rate=10, chat_interval_s=1.0)
    pacer.sent(5, 100.0)
    assert pacer.ready_at(5) == 101.0 and pacer.ready_at(6) == pytest.approx(100.1)
    pacer.pause(130.0)
    assert pacer.ready_at(6) == 130.0
    rng = random.Random(1)
    waits = [backoff(n, 0.5, 4.0, rng) for n in (1, 2, 3, 4, 5)]
    assert 0.25 <= waits[0] <= 0.5 and 0.5 <= waits[1] <= 1.0 and 2.0 <= waits[4] <= 4.0
    journal = Journal(str(tmp_path / "j.json"))
    journal.offset = 42
    journal.jobs["tg:1:2"] = {"key": "tg:1:2", "chat": 1, "message_id": 2, "text": "hi"}
    journal.deliver("tg:1:3", 1, 3, "answer")
    journal.save()
    again = Journal(str(tmp_path / "j.json"))
    assert (again.offset, list(again.jobs), list(again.deliveries)) == (42, ["tg:1:2"], ["tg:1:3"])
    again.delivered("tg:1:3")
    assert again.knows("tg:1:3") and not again.deliveries and again.waiting == 1
