"""The stream extension: CSV, NPZ and JSON lines from files, a named pipe and standard input, learnt
from with prequential scores; bad rows and bad files counted with their line, nothing crashes."""
import contextlib
import json
import os

import numpy as np
import pytest

from _extutil import ext_call, network_on_stdin, network_with, read_jsonl, wait_metric, wait_until
from _netutil import neuron_call
from neurox.ext import ExtensionError, digits, network_children
from test_data_files import reviews
from neurox.ext._datasets import DIGITS
from neurox.neuron import load_topology

pytestmark = pytest.mark.timeout(120)


def digits_csv(path, rows, header: bool = True, scale: float = 16.0) -> None:
    data = digits()
    with open(path, "w") as f:
        if header:
            f.write(",".join(f"p{i}" for i in range(64)) + ",digit\n")
        for i in rows:
            f.write(",".join(f"{v * 16.0 / scale:g}" for v in data.features[i]) + f",{int(data.targets[i])}\n")


def test_an_npz_file_is_learnt_from_like_neurox_run_does(tmp_path, no_stray_processes):
    with network_with(tmp_path, [{"name": "train", "module": "stream", "path": DIGITS, "window": 4}]) as network:
        metrics = wait_metric(network, "train", "answered", 1797, timeout=90)
        status = ext_call(network, "train", "status")
    assert status["state"] == "done" and status["epoch"] == 1 and metrics["lost"] == 0
    assert metrics["scored"] == 1797 and metrics["accuracy"] > 0.4 and metrics["rolling_accuracy"] > 0.6, metrics


def test_what_has_room_in_the_window_goes_as_one_bundle_as_neurox_run_sends_it(tmp_path, no_stray_processes):
    """After the slow start the whole window goes in one frame (``bundles``: frames sent), and the first
    layer computes each as one bundle; packet by packet, 1,797 packets would be 1,797 frames."""
    with network_with(tmp_path, [{"name": "train", "module": "stream", "path": DIGITS}]) as network:
        metrics = wait_metric(network, "train", "answered", 1797, timeout=90)
        first = neuron_call(network, "L0.n0", "metrics")
    assert metrics["submitted"] == 1797 and metrics["lost"] == 0, metrics
    assert metrics["bundles"] <= 1797 / 4, metrics
    assert first["forwards"] >= 1797 and first["forward_bundles"] <= 1797 / 4, first


def test_a_csv_file_with_a_header_and_label_names_for_two_epochs(tmp_path, no_stray_processes):
    csv = tmp_path / "train.csv"
    digits_csv(csv, range(200))
    extensions = [{"name": "train", "module": "stream", "path": str(csv), "target": "digit", "epochs": 2,
                   "batch": 4}]
    with network_with(tmp_path, extensions) as network:
        metrics = wait_metric(network, "train", "answered", 400)
        status = ext_call(network, "train", "status")
    assert status["state"] == "done" and status["epoch"] == 2, status
    assert metrics["scored"] == 400 and metrics["submitted"] == 100 and metrics["bad_frames"] == 0, metrics


def test_a_csv_file_with_a_text_column_is_encoded_as_the_network_reads_text(tmp_path, no_stray_processes):
    """The file's text column goes through the topology's [text] encoder, in its place in the row
    (1 noise value + 63 text positions = the diamond's 64 inputs); the label only the text carries is learnt."""
    csv = tmp_path / "reviews.csv"
    reviews(csv, 300)
    topology = load_topology()
    topology.text = {"column_width": 63}
    topology.output["labels"] = ["neg", "pos", *map(str, range(2, 10))]
    extensions = [{"name": "train", "module": "stream", "path": str(csv), "target": "label", "epochs": 3,
                   "window": 4}]
    with network_with(tmp_path, extensions, topology) as network:
        metrics = wait_metric(network, "train", "answered", 900)
    assert metrics["bad_frames"] == 0 and metrics["lost"] == 0, metrics
    assert metrics["rolling_accuracy"] > 0.8, metrics  # chance is 0.5: the words were read


def test_bad_rows_are_counted_with_their_line_and_skipped(tmp_path, no_stray_processes):
    good = digits()
    csv = tmp_path / "rows.csv"
    lines = [",".join(f"{v:g}" for v in good.features[i]) + f",{int(good.targets[i])}" for i in range(10)]
    lines[2] = lines[2].replace("0,", "zero,", 1)                # a feature that is not a number
    lines[4] = "1,2,3"                                         # wrong number of columns
    lines[6] = lines[6].rsplit(",", 1)[0] + ",eleven"          # an unknown label
    lines[8] = lines[8].replace("0,", "nan,", 1)                # NaN
    csv.write_text("\n".join(lines))                           # and no newline after the last line
    jsonl = tmp_path / "rows.jsonl"
    records = [json.dumps({"vector": good.features[i].tolist(), "target": int(good.targets[i])}) for i in range(6)]
    records[1] = "{not json"
    records[2] = json.dumps({"vector": [0.5] * 10, "target": 1})
    records[3] = json.dumps({"vector": good.features[3].tolist(), "label": 3})
    records[4] = json.dumps({"vector": [0.25] * 64, "target": 1, "pad": "x" * 3000})
    jsonl.write_text("\n".join(records) + "\n\n")
    extensions = [{"name": "csv", "module": "stream", "path": str(csv), "scale": "none"},
                  {"name": "json", "module": "stream", "path": str(jsonl), "max_line_bytes": 2048}]
    with network_with(tmp_path, extensions) as network:
        pids = {n: ext_call(network, n, "status")["pid"] for n in ("csv", "json")}
        csv_metrics = wait_metric(network, "csv", "answered", 6)
        json_metrics = wait_metric(network, "json", "answered", 2)
        csv_status, json_status = ext_call(network, "csv", "status"), ext_call(network, "json", "status")
        assert {n: ext_call(network, n, "status")["pid"] for n in pids} == pids, "nothing crashed"
    assert csv_metrics["bad_frames_by_kind"] == {"bad_row": 2, "wrong_shape": 1, "unknown_label": 1}, csv_metrics
    details = [r["detail"] for r in csv_status["recent_rejects"]]
    assert details[0].startswith("line 3: a feature is not a number") and details[1].startswith("line 5: 3 columns")
    assert details[2].startswith("line 7: unknown target 'eleven'") and details[3] == "line 9: a feature is NaN or " \
                                                                                         "infinite"
    assert csv_status["state"] == "done"
    assert json_metrics["bad_frames_by_kind"] == {"bad_json": 1, "wrong_shape": 1, "bad_input": 1, "too_large": 1}
    assert [r["detail"].split(":")[0] for r in json_status["recent_rejects"]] == ["line 2", "line 3", "line 4",
                                                                                    "line 5"]


def test_a_file_that_cannot_be_used_is_reported_and_the_process_idles(tmp_path, no_stray_processes):
    ragged = tmp_path / "ragged.csv"
    ragged.write_text("a,b,label\n1,2,0\n1,2\n")
    narrow = tmp_path / "narrow.npz"
    np.savez(narrow, X=np.zeros((5, 3)), y=np.arange(5) % 2)
    extensions = [{"name": "ragged", "module": "stream", "path": str(ragged)},
                  {"name": "narrow", "module": "stream", "path": str(narrow)},
                  {"name": "missing", "module": "stream", "path": str(tmp_path / "nope.jsonl")}]
    with network_with(tmp_path, extensions) as network:
        states = {n: ext_call(network, n, "status") for n in ("ragged", "narrow", "missing")}
    assert states["ragged"]["state"].startswith("failed:") and "row 3: 2 cells; the header has 3" in states["ragged"]["state"]
    assert "3 features a row; the network takes 64" in states["narrow"]["state"]
    assert "No such file" in states["missing"]["state"]
    assert [r["error"] for r in states["narrow"]["recent_rejects"]] == ["wrong_shape"]


def test_settings_that_cannot_work_are_refused_before_anything_starts(tmp_path):
    topology = load_topology()
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    for line, words in [
        ({"path": "-"}, "cannot tell the format"),
        ({"path": "-", "format": "csv", "scale": "minmax"}, "minmax needs the whole"),
        ({"path": str(fifo), "format": "npz", "scale": "minmax"}, "minmax needs the whole"),
        ({"path": "x.csv", "epochs": -1}, "at least 0"),
        ({"path": "x.parquet"}, "cannot tell the format"),
    ]:
        topology.extensions = [{"name": "s", "module": "stream", **line}]
        with pytest.raises(ExtensionError, match=words):
            network_children(topology, str(tmp_path))


def test_json_lines_through_a_named_pipe(tmp_path, no_stray_processes):
    fifo = tmp_path / "train.pipe"
    os.mkfifo(fifo)
    out = tmp_path / "answers.jsonl"
    data = digits()
    extensions = [{"name": "feed", "module": "stream", "path": str(fifo), "format": "jsonl"},
                  {"name": "answers", "module": "jsonl", "path": str(out), "output": False}]

    def write(ids, tag="s"):
        with open(fifo, "w") as f:
            for i in ids:
                f.write(json.dumps({"vector": data.features[i].tolist(), "target": int(data.targets[i]),
                                    "message_hash_id": f"{tag}{i}"}) + "\n")

    with network_with(tmp_path, extensions) as network:
        # The output's SUB joins the outputs bus late (docs/protocol.md): one sample at a time until one is written.
        warm = 0
        while not read_jsonl(out):
            assert warm < 20, "no answer ever reached the output"
            write([warm], "w")
            warm += 1
            wait_metric(network, "feed", "answered", warm)
            with contextlib.suppress(AssertionError):
                wait_until(lambda: read_jsonl(out), 1.0)
        for writer in range(2):
            write(range(writer * 50, writer * 50 + 50))
        metrics = wait_metric(network, "feed", "answered", warm + 100)
        records = wait_until(lambda: len(lines := [r for r in read_jsonl(out) if r["message_hash_id"][0] == "s"]) >= 100
                             and lines, what="100 JSON lines")
        assert ext_call(network, "feed", "status")["state"] == "reading", "a named pipe does not end"
    assert metrics["scored"] == warm + 100 and sorted(r["message_hash_id"] for r in records) == \
        sorted(f"s{i}" for i in range(100))
    assert all(r["target"] == int(data.targets[int(r["message_hash_id"][1:])]) for r in records)


@pytest.mark.parametrize("fmt", ["csv", "npz"])
def test_standard_input(tmp_path, no_stray_processes, fmt):
    out = tmp_path / "answers.jsonl"
    extensions = [{"name": "feed", "module": "stream", "path": "-", "format": fmt},
                  {"name": "answers", "module": "jsonl", "path": str(out), "output": False}]
    if fmt == "csv":
        digits_csv(tmp_path / "in", range(300), header=False)
    else:
        data = digits()
        np.savez(tmp_path / "in.npz", X=data.features[:300], y=data.targets[:300])
        os.rename(tmp_path / "in.npz", tmp_path / "in")
    with network_on_stdin(tmp_path, extensions) as (stdin, run_dir):
        stdin.write((tmp_path / "in").read_bytes())
        stdin.close()
        records = wait_until(lambda: len(read_jsonl(out)) >= 300 and read_jsonl(out), what="300 JSON lines")
        assert ext_call(run_dir, "feed", "status")["state"] == "done"
    targets = digits().targets
    ids = sorted(r["message_hash_id"] for r in records)
    assert ids == (list(range(1, 301)) if fmt == "csv" else list(range(300))), "CSV: line numbers; NPZ: rows"
    offset = 1 if fmt == "csv" else 0
    assert all(r["target"] == int(targets[r["message_hash_id"] - offset]) for r in records)
