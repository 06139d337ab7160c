"""The extension API: its public names, settings checked before anything starts, MessengerIn/Out and
the built-ins as implementations of it, the books every input keeps, the example of
docs/extensions.md run for real, and garbage and unknown packets on an input's sockets survived."""
import os
import re
import types

import numpy as np
import pytest
import zmq

import neurox.ext
from _extutil import ext_call, network_with, wait_metric, wait_until
from neurox.ext import (BUILT_IN, Extension, ExtensionError, Feed, InputExtension, MessengerIn, MessengerOut,
                        OutputExtension, SampleInput, Setting, extension_class, network_children)
from neurox.neuron import load_topology, parse_topology
from neurox.runtime import ipc_endpoint, pack

DOCS = os.path.join(os.path.dirname(__file__), "..", "docs", "extensions.md")
PUBLIC = {
    "BUILT_IN", "ChildSpec", "Dataset", "DatasetError", "Extension", "ExtensionError",
    "Feed", "InputError", "InputExtension", "MessengerIn", "MessengerOut", "Client", "Origin",
    "OutputExtension", "Pipe", "PRELOAD", "Sample", "SampleInput", "Setting", "Stream", "StreamProgress", "TargetSpace",
    "Topology", "decode_outputs", "digits", "encode_text", "extension_children", "extension_class", "load_dataset",
    "messenger_children", "network_children", "outputs_endpoint", "parse_sample", "parse_vector", "sample_records",
    "MESSENGERS", "EXTENSIONS", "TextEncoder", "text_encoder",
    "DEFAULT_API_URL", "MESSAGE_LIMIT", "TOKEN_ENV", "BotApi", "BotApiError", "refusal",
    "SCALE_MODES", "ScaleConfig", "Scaler", "ScalingError", "scale_config", "MISSING", "TASKS", "check_learnable",
    "RUN_BATCH", "RUN_WINDOW", "window_limit",
}


@pytest.mark.timeout(10)
def test_public_names():
    names = {n for n in dir(neurox.ext) if not n.startswith("_")
             and not isinstance(getattr(neurox.ext, n), types.ModuleType)}  # the built-in modules, once imported
    assert names == PUBLIC


@pytest.mark.timeout(10)
def test_messenger_in_and_out_and_the_built_ins_implement_the_api():
    assert issubclass(MessengerIn, InputExtension) and MessengerIn.kind == "input"
    assert issubclass(MessengerOut, Extension) and MessengerOut.kind == "output"
    kinds = {name: extension_class(name) for name in BUILT_IN}
    assert {n for n, c in kinds.items() if issubclass(c, SampleInput)} == {"eye", "webhook", "stream"}
    assert {n for n, c in kinds.items() if issubclass(c, OutputExtension)} == {"jsonl", "http_post", "zmq_pub"}
    assert extension_class("neurox.ext.eye") is kinds["eye"], "a short name is its module"


@pytest.mark.timeout(10)
def test_settings_are_checked_and_completed():
    schema = {"path": Setting("where", kind="path"), "n": Setting("how many", 3, "int", minimum=1),
              "rate": Setting("how fast", 1.5, "float"), "on": Setting("whether", True, "bool"),
              "mode": Setting("how", "a", choices=("a", "b")), "tags": Setting("which", None, "strings")}
    topology = load_topology()

    class Mine(Extension):
        settings_schema = schema

    settings = Mine.configure({"path": "rel/x", "n": 4.0, "rate": 2}, "t", topology)
    assert settings == {"path": os.path.abspath("rel/x"), "n": 4, "rate": 2.0, "on": True, "mode": "a", "tags": None}
    assert Mine.configure(settings, "t", topology) == settings, "checking twice changes nothing"
    assert Mine.configure({"path": "-"}, "t", topology)["path"] == "-"
    with pytest.raises(ExtensionError) as caught:
        Mine.configure({"n": 0, "rate": "fast", "on": 1, "mode": "c", "tags": "x", "colour": "red"}, "t", topology)
    message = str(caught.value)
    for words in ("extension 't'", "unknown settings ['colour']", "'path' is required", "'n': expected at least 1",
                  "'rate': expected a number", "'on': expected true or false", "'mode': expected one of 'a', 'b'",
                  "'tags': expected a list of strings"):
        assert words in message, message


@pytest.mark.timeout(30)
def test_a_bad_line_is_refused_before_anything_starts(tmp_path):
    topology = load_topology()
    for line, words in [
        ({"module": "no.such.module"}, "cannot import extension module 'no.such.module'"),
        ({"module": "json"}, "json has no class Extension"),
        ({"module": "jsonl"}, "'path' is required"),
        ({"module": "jsonl", "path": "x", "colour": "red"}, "unknown settings ['colour']"),
        ({"module": "http_post", "url": "ftp://x"}, "expected an http:// or https:// URL"),
        ({"module": "zmq_pub", "bind": "5601"}, "expected a ZeroMQ endpoint"),
        ({"module": "jsonl", "path": "x", "sources": "eye"}, "'sources': expected a list of strings"),
    ]:
        topology.extensions = [{"name": "x", **line}]
        with pytest.raises(ExtensionError) as caught:
            network_children(topology, str(tmp_path))
        assert words in str(caught.value), caught.value


@pytest.mark.timeout(10)
def test_docs_list_every_setting_of_every_built_in():
    with open(DOCS) as f:
        docs = f.read()
    for name in BUILT_IN:
        cls = extension_class(name)
        base = SampleInput if issubclass(cls, SampleInput) else OutputExtension
        section = docs.split(f"### `{name}`", 1)[1].split("\n### ", 1)[0]
        for key, setting in cls.settings_schema.items():
            where = section if key not in base.settings_schema else docs
            assert re.search(rf"^\| `{key}` \| .* \| {re.escape(setting.doc)} \|$", where, re.M), \
                f"{name}.{key} is not in its table in docs/extensions.md"


def _docs_blocks() -> dict[str, str]:
    """The code blocks of docs/extensions.md whose first line names a file (``# name``)."""
    with open(DOCS) as f:
        blocks = re.findall(r"```(?:python|toml)\n(# [^\n]+)\n(.*?)```", f.read(), re.S)
    return {head[2:].strip(): body for head, body in blocks}


@pytest.mark.timeout(120)
def test_the_example_of_the_docs_runs_in_a_real_network(tmp_path, monkeypatch, no_stray_processes):
    blocks = _docs_blocks()
    modules = tmp_path / "modules"
    modules.mkdir()
    for name in ("random_digits.py", "labels_log.py"):
        (modules / name).write_text(blocks[name])
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(modules), os.environ["PYTHONPATH"]]))
    monkeypatch.syspath_prepend(str(modules))
    monkeypatch.chdir(tmp_path)  # the example's relative path
    import tomllib
    lines = tomllib.loads(blocks["in the topology file"])["extension"]
    with network_with(tmp_path, lines) as network:
        metrics = wait_metric(network, "random_digits", "answered", 40)
        written = wait_until(lambda: len((tmp_path / "labels.txt").read_text().splitlines()) >= 40,
                             what="40 labels written")
        labels = ext_call(network, "labels")
    rows = [line.split() for line in (tmp_path / "labels.txt").read_text().splitlines()]
    assert written and all(r[0].startswith("digit-") and 0 <= int(r[1]) <= 9 and 0 <= int(r[2]) <= 9 for r in rows)
    assert metrics["scored"] >= 40 and labels["skipped"] == 0 and labels["received"] >= 40


@pytest.mark.timeout(10)
def test_the_feed_paces_scores_and_gives_up_on_lost_packets():
    feed = Feed(window=2, rate=10.0, packet_timeout_s=1.0, ramp=0)
    now = 100.0
    assert feed.may_send(now)
    feed.sending(1, 1, [3], now)
    assert not feed.may_send(now + 0.05) and feed.may_send(now + 0.1), "one sample every 0.1 s"
    feed.sending(2, 2, [4, 5], now + 0.1)
    assert not feed.may_send(now + 5), "the window is full"
    assert feed.answer({"packet": 1, "label": [3], "loss": 0.5}) and not feed.answer({"packet": 99})
    assert feed.next_due(now + 0.2) == pytest.approx(0.1), "the next rate slot (the expiry is at 1.1)"
    assert feed.may_send(now + 30)
    assert feed.expire(now + 1.2) == 2 and not feed.in_flight
    feed.sending(3, 1, None, now + 30)
    assert feed.next_slot == pytest.approx(now + 30.1), "time spent idle earns no burst"
    assert feed.answer({"packet": 3, "label": [0]})
    progress = feed.progress()
    assert (progress.sent, progress.answered, progress.lost, progress.scored) == (4, 2, 2, 1)
    assert progress.accuracy == 1.0 and progress.mean_loss == 0.5


@pytest.mark.timeout(10)
def test_a_paced_feed_spreads_its_window_over_the_round_trip():
    feed = Feed(window=4, pace=True, ramp=0)
    now = 100.0
    feed.sending(1, 1, [3], now)
    assert feed.may_send(now), "no pacing before a round trip is known"
    assert feed.answer({"packet": 1, "label": [3]}, now + 0.04) and feed.round_trip == pytest.approx(0.04)
    feed.sending(2, 1, [3], now + 0.04)
    assert feed.may_send(now + 0.04), "a send later than its slot may catch up by one gap"
    feed.sending(3, 1, [3], now + 0.04)
    assert not feed.may_send(now + 0.045) and feed.may_send(now + 0.0501), "then one packet per 0.04 / 4 s"
    assert feed.next_due(now + 0.045) == pytest.approx(0.005)
    assert feed.answer({"packet": 2, "label": [3]}, now + 0.09)
    assert feed.round_trip == pytest.approx(0.04 + 0.1 * (0.05 - 0.04)), "a moving average of the round trips"
    unpaced = Feed(window=4, ramp=0)
    unpaced.sending(1, 1, [3], now)
    unpaced.answer({"packet": 1, "label": [3]}, now + 0.04)
    unpaced.sending(2, 1, [3], now + 0.04)
    assert unpaced.may_send(now + 0.04) and unpaced.next_due(now + 0.04) == pytest.approx(5.0), "bursts by default"


@pytest.mark.timeout(60)
def test_garbage_and_unknown_packets_on_an_inputs_return_socket_are_counted(tmp_path, no_stray_processes):
    csv = tmp_path / "rows.csv"
    csv.write_text("\n".join(",".join(["0.5"] * 64) + ",1" for _ in range(5)) + "\n")
    with network_with(tmp_path, [{"name": "feed", "module": "stream", "path": str(csv)}]) as network:
        wait_metric(network, "feed", "answered", 5)
        pid = ext_call(network, "feed", "status")["pid"]
        push = zmq.Context.instance().socket(zmq.PUSH)
        push.setsockopt(zmq.LINGER, 1000)
        push.connect(ipc_endpoint(network.run_dir, f"feed.{pid}.ret"))
        for frame in (b"\xc1 garbage", pack({"not": "a list"}), pack([{"packet": 12345, "label": [1]}]),
                      pack([{"packet": "what", "rows": -1}, "not a map"])):
            push.send(frame)
        push.close()
        metrics = wait_metric(network, "feed", "late", 2)
        assert metrics["bad_frames_by_kind"] == {"malformed": 1, "wrong_type": 1}, metrics
        assert ext_call(network, "feed", "status")["pid"] == pid


@pytest.mark.timeout(60)
def test_a_regression_network_takes_vector_targets(tmp_path, no_stray_processes):
    topology = parse_topology({"name": "reg", "input_width": 4, "output": {"decode": "vector"},
                               "layer": [{"name": "L0", "neurons": 1}, {"name": "L1", "neurons": 1, "units": 2,
                                                                          "activation": "linear"}]})
    rows = tmp_path / "rows.jsonl"
    rng = np.random.default_rng(0)
    rows.write_text("".join(f'{{"vector": {rng.random(4).tolist()}, "target": [0.5, -0.5]}}\n' for _ in range(20))
                    + '{"vector": [0, 0, 0, 0], "target": 1}\n')
    out = tmp_path / "out.jsonl"
    with network_with(tmp_path, [{"name": "feed", "module": "stream", "path": str(rows)},
                                 {"name": "answers", "module": "jsonl", "path": str(out)}], topology) as network:
        metrics = wait_metric(network, "feed", "answered", 20)
    assert metrics["mean_loss"] is not None and metrics["accuracy"] is None, metrics
    assert metrics["bad_frames_by_kind"] == {"wrong_shape": 1}, "a class where a vector is expected"


@pytest.mark.parametrize("sample,words", [
    ({"vector": [0.0] * 64, "message_hash_id": True}, "'message_hash_id' must be a string or an integer"),
    ({"text": 5}, "'text' must be a string"), ({"vector": "0,0"}, "'vector' must be a list of numbers"),
    ({"vector": [0.0] * 64, "tag": 1, "lbl": 2}, "unknown keys ['lbl', 'tag']"),
    ({"vector": [0.0] * 63}, "expected 64 values, got 63"), ({"encoding": "utf8"}, "needs 'vector' or 'text'"),
])
def test_a_sample_of_the_wrong_shape_is_refused_with_what_was_wrong(sample, words):
    targets = neurox.ext.TargetSpace(load_topology())
    with pytest.raises(neurox.ext.InputError) as info:
        neurox.ext.parse_sample(sample, 64, targets)
    assert words in info.value.detail, info.value.detail


def test_a_sample_decodes_into_its_row_target_and_tag():
    sample = neurox.ext.parse_sample({"vector": [1] * 64, "target": "3", "message_hash_id": 9}, 64,
                                     neurox.ext.TargetSpace(load_topology()))
    assert sample.row.dtype == np.float32 and sample.row.tolist() == [1.0] * 64 and (sample.target, sample.tag) == (3, 9)
