"""Every bad data file (or topology) given to the real ``neurox run``: exit 2, one line naming the row and
the column, no traceback, the data directory untouched; and the reader's decisions as pure functions."""
import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest

from neurox.ext import DatasetError, load_dataset
from neurox.ext import TextEncoder
from neurox.ext._datasets import check_learnable, detect_task, text_columns
from neurox.neuron import load_topology
from neurox.neuron._topology import DIAMOND_TOML

GOOD_HEAD = "a,b,label\n0,10,cat\n1,20,dog\n"
BAD_FILES = [  # name, content, extra options, what the one line must say
    ("nan.csv", GOOD_HEAD + "2,nan,cat\n", [], "row 4, column 1 ('b'): 'nan' is not a finite number"),
    ("inf.csv", GOOD_HEAD + "-inf,3,cat\n", [], "row 4, column 0 ('a'): '-inf' is not a finite number"),
    ("empty.csv", GOOD_HEAD + "2,,cat\n", [], "row 4, column 1 ('b'): empty cell"),
    ("notarget.csv", GOOD_HEAD + "2,30,\n", [], "row 4, column 2 ('label'): empty target cell"),
    ("target99.csv", GOOD_HEAD, ["--target", "99"], "--target 99: no such column; the file has 3 columns, 0..2"),
    ("random.csv", bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8)), [],
     "a binary file (row 2 holds a NUL byte), not CSV text"),
    ("latin1.csv", "a,b,label\n0,1,caf\xe9\n".encode("latin-1"), [], "row 2: not UTF-8 text (byte 0xe9)"),
    ("header.csv", "a,b,label\n", [], "only a header row (a, b, label), no data rows"),
    ("oneclass.csv", "a,b,label\n0,10,cat\n1,20,cat\n", [], "the target 'label' has one class only ('cat' in 2 rows)"),
    ("nofeatures.csv", "label\ncat\ndog\n", [], "no feature columns: 'label' is the only column"),
    ("text.csv", GOOD_HEAD + "2,thirty,cat\n", [], "row 4, column 1 ('b'): 'thirty' is not a number"),
    ("ragged.csv", GOOD_HEAD + "2,cat\n", [], "row 4: 2 cells; the header has 3"),
    ("classes.csv", GOOD_HEAD, ["--task", "regression"], "row 2, target 'label': 'cat' is not a number"),
    ("bad.npz", b"PK\x03\x04 not really a zip", [], "not an NPZ file"),
    ("notext.csv", "a,review,label\n0,good,cat\n1,,dog\n", [], "row 3, column 1 ('review'): empty cell"),
    ("noword.csv", "a,review,label\n0,good,cat\n1,!!!,dog\n2,bad,dog\n", [],
     "row 3, column 1 ('review'): '!!!' holds no word to encode"),
]


def neurox_run(*args, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "neurox.cli", "run", "--no-service", *args],
                          capture_output=True, text=True, timeout=timeout)


@pytest.mark.timeout(600)
def test_every_bad_file_is_one_line_and_exit_2_and_the_data_dir_is_untouched(tmp_path, no_stray_processes):
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    (data_dir / "notes.txt").write_text("a user's file")
    for name, content, options, expected in BAD_FILES:
        path = tmp_path / name
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
        done = neurox_run("--data", str(path), "--data-dir", str(data_dir), "--epochs", "1", *options)
        lines = [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]
        assert done.returncode == 2, (name, done.returncode, lines)
        assert len(lines) == 1 and "Traceback" not in done.stderr, (name, lines)
        assert lines[0].startswith(f"neurox run: {path}") and expected in lines[0], (name, lines[0])
        assert sorted(os.listdir(data_dir)) == ["notes.txt"], name


@pytest.mark.timeout(120)
def test_a_bad_topology_or_option_is_one_line_too(tmp_path, no_stray_processes):
    topology = tmp_path / "t.toml"
    with open(DIAMOND_TOML) as f:
        diamond = f.read()
    topology.write_text(diamond + '\n[[extension]]\nname = "feed"\nmodule = "stream"\npath = "x.csv"\nwindoww = 3\n')
    done = neurox_run("--topology", str(topology), "--data-dir", str(tmp_path / "d"), "--epochs", "1")
    assert done.returncode == 2 and len(done.stdout.splitlines()) == 1 and not done.stderr, done
    assert "extension 'feed'" in done.stdout and "windoww" in done.stdout, done.stdout
    scaled = tmp_path / "s.toml"
    scaled.write_text(diamond + '\n[input]\nscale = "zscore"\n')
    done = neurox_run("--topology", str(scaled), "--data-dir", str(tmp_path / "d"), "--epochs", "1")
    assert done.returncode == 2 and "[input] scale: one of standard, minmax, none, frozen; got 'zscore'" in done.stdout
    assert not (tmp_path / "d").exists()


def test_missing_values_may_be_dropped_and_the_count_is_kept(tmp_path):
    path = tmp_path / "gaps.csv"
    path.write_text(GOOD_HEAD + "2,nan,cat\n3,,dog\n4,40,\n5,50,dog\n")
    data = load_dataset(str(path), missing="drop")
    assert data.dropped == 3 and data.features.tolist() == [[0, 10], [1, 20], [5, 50]] and data.classes == ["cat", "dog"]
    everything = tmp_path / "all.csv"
    everything.write_text("a,label\nnan,cat\n,dog\n")
    with pytest.raises(DatasetError, match="every one of 2 rows has a missing value"):
        load_dataset(str(everything), missing="drop")


def test_features_come_as_they_are_and_the_reader_copes_with_quoting_gzip_and_headerless_text_targets(tmp_path):
    quoted = tmp_path / "q.csv"
    quoted.write_text('"size, cm",weight,species\n"1,5",2,setosa\n"2,5",3,virginica\n')
    with pytest.raises(DatasetError, match=r"row 2, column 0 \('size, cm'\): '1,5' is not a number"):
        load_dataset(str(quoted))
    plain = "5.1,3.5,Iris-setosa\n7.0,3.2,Iris-versicolor\n6.3,3.3,Iris-virginica\n"
    (tmp_path / "iris.csv").write_text(plain)  # no header, text target: the first row is data
    data = load_dataset(str(tmp_path / "iris.csv"))
    assert data.features.tolist()[0] == pytest.approx([5.1, 3.5]) and len(data.classes) == 3
    import gzip
    with gzip.open(tmp_path / "big.csv.gz", "wt") as f:
        f.write("x,y\n" + "".join(f"{i * 1000.5},{i % 3}\n" for i in range(30)))
    data = load_dataset(str(tmp_path / "big.csv.gz"))
    assert data.features.max() == pytest.approx(29 * 1000.5) and data.classes == ["0", "1", "2"]


def test_the_task_is_detected_with_a_reason_and_can_be_said():
    assert detect_task(["1", "2", "3", "1"]) == ("classification", "the target holds 3 distinct whole numbers")
    task, why = detect_task([str(v) for v in np.random.default_rng(0).integers(25, 347, 442)])
    assert task == "regression" and "distinct whole numbers in 442 rows" in why
    assert detect_task(["0.5", "1.5"])[0] == "regression" and detect_task(["a", "1"])[0] == "classification"


def test_a_regression_target_and_the_task_option(tmp_path):
    path = tmp_path / "r.csv"
    path.write_text("x,y\n" + "".join(f"{i},{(i * 37) % 300 + 25}\n" for i in range(100)))
    data = load_dataset(str(path))
    assert data.task == "regression" and data.targets.shape == (100, 1) and data.classes is None
    assert "distinct whole numbers in 100 rows" in data.reason
    forced = load_dataset(str(path), task="classification")
    assert forced.task == "classification" and "said with --task" in forced.reason and len(forced.classes) == 100
    (tmp_path / "flat.csv").write_text("x,y\n1,5.5\n2,5.5\n")
    flat = load_dataset(str(tmp_path / "flat.csv"))  # a stream into a given network may hold one value
    with pytest.raises(DatasetError, match="flat.csv: the target 'y' is \\[5.5\\] in every row: nothing to learn"):
        check_learnable(flat, str(tmp_path / "flat.csv"))


@pytest.mark.timeout(60)
def test_data_that_does_not_fit_the_network_kept_in_the_data_dir_is_one_line(tmp_path, no_stray_processes):
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    load_topology().save(str(data_dir / "topology.json"))  # a digits network was run here
    path = tmp_path / "small.csv"
    path.write_text(GOOD_HEAD + "2,30,cat\n")
    done = neurox_run("--data", str(path), "--data-dir", str(data_dir), "--epochs", "1")
    assert done.returncode == 2 and not done.stderr, done
    assert done.stdout.strip() == (f"neurox run: the network in {data_dir} has 64 inputs, 10 classes; {path} needs "
                                   f"2 inputs, 2 classes: --fresh starts a new network for it (or another --data-dir)")
    assert sorted(os.listdir(data_dir)) == ["topology.json"]


def reviews(path, rows: int, seed: int = 0) -> None:
    """A CSV whose label only its text column carries: one sentiment word among shuffled filler words;
    the numeric column is noise."""
    rng = np.random.default_rng(seed)
    good, bad = "great fine lovely superb wonderful".split(), "awful poor dreadful terrible boring".split()
    filler = "the film was plot acting and really quite".split()
    lines = ["noise,review,label"]
    for _ in range(rows):
        positive = bool(rng.random() < 0.5)
        words = [*rng.choice(filler, 3, replace=False), rng.choice(good if positive else bad)]
        rng.shuffle(words)
        lines.append(f'{rng.random():.3f},"{" ".join(words)}",{"pos" if positive else "neg"}')
    path.write_text("\n".join(lines) + "\n")


def test_text_columns_are_the_mostly_worded_ones_and_are_encoded_in_place(tmp_path):
    body = [(2, ["1", "good film", "1,5", "x"]), (3, ["2", "42", "2,5", "y"]), (4, ["3", "bad", "n/a", "x"])]
    assert text_columns(body, target=3) == {1}  # "42" among words is a word; "1,5" is no word
    path = tmp_path / "r.csv"
    reviews(path, 20)
    encoder = TextEncoder(column_width=16)
    data = load_dataset(str(path), text=encoder)
    rows = [line.split(",") for line in path.read_text().splitlines()[1:]]
    assert data.text_columns == ("review",) and data.width == 1 + 16
    assert data.features[:, 0].tolist() == pytest.approx([float(r[0]) for r in rows])
    assert np.allclose(data.features[3, 1:], encoder.encode(rows[3][1].strip('"'), 16))
    with pytest.raises(DatasetError, match=r"row 2, column 1 \('review'\): '.*' is not a number"):
        load_dataset(str(path))  # without an encoder, text is refused


@pytest.mark.timeout(60)
def test_neurox_run_learns_a_label_only_a_text_column_carries(tmp_path, no_stray_processes):
    path = tmp_path / "reviews.csv"
    reviews(path, 300)
    run = subprocess.Popen([sys.executable, "-m", "neurox.cli", "run", "--no-service", "--data", str(path),
                            "--data-dir", str(tmp_path / "d")], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True)
    try:
        lines = [run.stdout.readline() for _ in range(4)]
        assert lines[-1].startswith("up in"), lines
        asked = subprocess.run([sys.executable, "-m", "neurox.cli", "ask", "--random", "--data-dir",
                                str(tmp_path / "d")], capture_output=True, text=True, timeout=30)
        while not (lines[-1].startswith("epoch") and int(lines[-1].split()[3].replace(",", "")) >= 900):  # 3 epochs learnt
            lines.append(run.stdout.readline())
            assert lines[-1], lines
        run.send_signal(signal.SIGTERM)
        out, err = run.communicate(timeout=30)
    finally:
        run.kill()
        run.wait()
    assert asked.returncode == 0 and ": 65 features, true class" in asked.stdout, asked  # encoded as learnt
    assert json.loads(asked.stdout.splitlines()[-1])["ok"], asked.stdout
    out = "".join(lines) + out
    assert run.returncode == 0 and "Traceback" not in err and out.endswith("stopped\n"), (out, err)
    assert "300 rows x 65 features (text columns review encoded into the row)" in out, out
    accuracy = float(lines[-1].split(" acc ", 1)[1].split()[0])
    assert accuracy > 0.8, out  # the noise column alone gives 0.5
    saved = json.loads((tmp_path / "d" / "topology.json").read_text())
    assert saved["text"] == TextEncoder().table()  # asking encodes as learning did
