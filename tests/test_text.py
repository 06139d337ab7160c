"""Text that means something: the hashing encoder of a topology's [text] table, alone and in a network."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from _opsutil import network_with_service
from neurox.ext import Client, ExtensionError, InputError, TextEncoder, encode_text, text_encoder
from neurox.neuron import TopologyError, load_topology, messenger_in_endpoint, parse_topology


def cosine(a, b) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def test_texts_that_share_words_are_nearer_than_texts_that_do_not():
    encoder = TextEncoder()
    cat, cats, stocks = (encoder.encode(t, 64) for t in ("the cat sat on the mat", "a cat sat on a mat",
                                                         "stock prices fell sharply"))
    assert cosine(cat, cats) > 0.4 > 0.15 > abs(cosine(cat, stocks))
    # character n-grams carry pieces of words: a plural, or a typo, stays near
    typo = encoder.encode("runing dog", 128)
    assert cosine(encoder.encode("running dogs", 128), typo) > 0.35 > 0.1 > abs(cosine(encoder.encode("stock prices",
                                                                                                  128), typo))
    # the old bytes / 255 make anagrams neighbours and meaning nothing; hashing does not
    utf8 = TextEncoder("utf8")
    assert cosine(utf8.encode("listen", 64), utf8.encode("silent", 64)) > 0.95
    assert cosine(encoder.encode("listen", 64), encoder.encode("silent", 64)) < 0.5
    for row in (cat, stocks):
        assert row.dtype == np.float32 and row.shape == (64,) and abs(np.linalg.norm(row) - 1) < 1e-5
    assert not encoder.encode("  ,;!  ", 64).any()  # no word at all: zeros, not NaN


def test_the_same_text_always_encodes_the_same_even_in_another_process():
    encoder = TextEncoder.from_table({"words": [1, 2], "chars": [3, 5]})
    texts = ["Hello, world!", "the quick brown fox", "ünïcödé wörds and 数字 123"]
    here = encoder.encode_many(texts, 48)
    assert np.array_equal(here, encoder.encode_many(texts, 48))
    code = ("import json, sys; from neurox.ext import TextEncoder; "
            "e = TextEncoder.from_table({'words': [1, 2], 'chars': [3, 5]}); "
            "print(json.dumps(e.encode_many(json.loads(sys.argv[1]), 48).tolist()))")
    for seed in ("0", "12345"):  # Python's own hash() would differ between these two
        done = subprocess.run([sys.executable, "-c", code, json.dumps(texts)], capture_output=True, text=True,
                              timeout=60, env={**os.environ, "PYTHONHASHSEED": seed}, check=True)
        assert np.array_equal(np.asarray(json.loads(done.stdout), dtype=np.float32), here)
    # and the hash itself is fixed: a network saved today reads the same words the same way tomorrow
    one_word = TextEncoder.from_table({"words": [1, 1], "chars": [0, 0]}).encode("cat", 16)
    assert np.flatnonzero(one_word).tolist() == [4] and one_word[4] == -1.0


def test_text_tables_with_mistakes_are_refused_and_requests_must_match_the_encoder():
    for table, words in [({"encoder": "bert"}, "encoder must be one of"), ({"words": [2, 1]}, "words is"),
                         ({"chars": [1, 99]}, "chars is"), ({"word": [1, 2]}, "unknown keys"),
                         ({"words": [0, 0], "chars": [0, 0]}, "needs words or chars"), ({"lowercase": 1}, "lowercase")]:
        with pytest.raises(ExtensionError, match=words):
            TextEncoder.from_table(table)
    topology = load_topology()
    topology.text = {"encoder": "utf8"}
    assert text_encoder(topology) == TextEncoder("utf8")
    assert isinstance(ExtensionError("x"), TopologyError)
    with pytest.raises(TopologyError, match="unknown top-level"):
        parse_topology({"txt": {}, "layer": [{"neurons": 1}]})
    assert encode_text("abc", None, 4, TextEncoder("utf8")).tolist() == pytest.approx([97 / 255, 98 / 255, 99 / 255, 0])
    assert encode_text("abc", "hashing", 8).any()
    with pytest.raises(InputError, match="encodes text with 'hashing'.*may not ask for 'utf8'"):
        encode_text("abc", "utf8", 8)
    with pytest.raises(InputError, match="unknown text encoding 'ebcdic'"):
        encode_text("abc", "ebcdic", 8)


WEATHER = ["sunny and warm today", "rain and wind all day", "a cold grey morning with snow", "hot sun, clear sky",
           "storm clouds and thunder tonight", "light rain and fog"]
SPORT = ["the match ended in a draw", "our team scored two goals", "the striker missed a penalty",
         "a great win for the home side", "the keeper saved the shot", "the final whistle and the cup"]


@pytest.mark.timeout(180)
def test_ask_text_after_learning_from_text_gets_the_learnt_label(tmp_path, no_stray_processes):
    topology = load_topology()
    topology.text = {"encoder": "hashing", "words": [1, 1], "chars": [3, 4]}
    topology.output["labels"] = ["weather", "sport", *topology.output["labels"][2:]]
    with network_with_service(topology, tmp_path / "data", service=False) as network:
        client = Client(messenger_in_endpoint(network.run_dir), deadline_s=60)
        try:
            for round_ in range(30):
                for i in range(len(WEATHER)):
                    client.submit(text=WEATHER[i], target=0)
                    client.submit(text=SPORT[i], target=1)
                replies = []
                while len(replies) < 2 * len(WEATHER):
                    replies += client.results(30)
                assert all(r["ok"] for r in replies), replies[:3]
        finally:
            client.close()
        asks = {"warm sunny weather with no rain": "weather", "two goals in the match": "sport"}
        for text, label in asks.items():
            done = subprocess.run([sys.executable, "-m", "neurox.cli", "ask", "--text", text, "--data-dir",
                                   str(tmp_path / "data")], capture_output=True, text=True, timeout=60)
            reply = json.loads(done.stdout.strip().splitlines()[-1])
            assert done.returncode == 0 and reply["ok"] and reply["text"] == label, (text, reply)
        done = subprocess.run([sys.executable, "-m", "neurox.cli", "ask", "--text", "rain", "--encoding", "utf8",
                               "--data-dir", str(tmp_path / "data")], capture_output=True, text=True, timeout=60)
        reply = json.loads(done.stdout.strip().splitlines()[-1])
        assert done.returncode == 1 and reply["error"] == "bad_input"
        assert "encodes text with 'hashing'" in reply["detail"]


@pytest.mark.timeout(170)
def test_text_bench_learns_generated_texts_beside_a_linear_model():
    done = subprocess.run([sys.executable, "-m", "neurox.cli", "bench", "text", "--train", "600", "--test", "200",
                           "--epochs", "2"], capture_output=True, text=True, timeout=160)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["errors"] == 0 and result["lost"] == 0 and result["test"] == 200
    assert result["linear_accuracy"] > 0.6 > 0.4 > result["linear_utf8_accuracy"]  # hashing carries the topic
    assert result["accuracy"] > 0.5 and result["ratio"] == round(result["accuracy"] / result["linear_accuracy"], 4)
