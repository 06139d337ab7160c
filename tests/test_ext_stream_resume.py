"""A stream extension restarted after a crash goes on from the place saved in the data directory, not
from the file's start (neurox/ext/_offsets.py), for a file read line by line and for one read whole."""
import json
import os
import signal

import pytest

from _extutil import ext_call, network_with, wait_metric, wait_until
from neurox.ext import digits
from neurox.ext._offsets import file_identity, usable_place

pytestmark = pytest.mark.timeout(150)
ROWS = 600


def digits_csv(path) -> None:
    data = digits()
    with open(path, "w") as f:
        f.write(",".join(f"p{i}" for i in range(64)) + ",digit\n")
        for i in range(ROWS):
            f.write(",".join(f"{v:g}" for v in data.features[i]) + f",{int(data.targets[i])}\n")


@pytest.mark.parametrize("scale", ["none", "minmax"])
def test_a_crashed_stream_resumes_from_its_saved_place(tmp_path, scale, no_stray_processes):
    csv = tmp_path / "train.csv"
    digits_csv(csv)
    extension = {"name": "train", "module": "stream", "path": str(csv), "target": "digit", "scale": scale,
                 "rate": 150.0, "window": 2}
    with network_with(tmp_path, [extension]) as network:
        saved = tmp_path / "net" / "extensions" / "train.offset"
        wait_metric(network, "train", "answered", 300, timeout=60)
        wait_until(lambda: saved.exists(), what="the saved place")
        pid = ext_call(network, "train", "status")["pid"]
        os.kill(pid, signal.SIGKILL)
        place = json.loads(saved.read_text())["place"]  # the dead process wrote its last
        wait_until(lambda: (s := _status(network)) and s["pid"] != pid, what="the replacement")
        # the replacement reads what was left, no more: every row after the place, once
        left = ROWS - (place["line_number"] - 1 if scale == "none" else place["position"])
        assert 100 < ROWS - left < ROWS - 100, f"killed half-way, the place saved was {place}"
        metrics = wait_metric(network, "train", "answered", left, timeout=60)
        assert metrics["records"] == left, (place, metrics)
        assert wait_until(lambda: _status(network)["state"] == "done", what="the end of the file")
        # the finished state is kept too (within a second): a restart does not read the file again
        wait_until(lambda: json.loads(saved.read_text())["place"]["epoch"] == 1, what="the end saved")


def _status(network):
    try:
        return ext_call(network, "train", "status", timeout=1.0)
    except Exception:
        return None  # being replaced


def test_a_place_saved_for_another_file_is_not_used(tmp_path):
    data = tmp_path / "a.csv"
    data.write_text("1,2\n3,4\n")
    identity = file_identity(str(data))
    place = {"epoch": 0, "offset": 4, "line_number": 1, "header": None}
    saved = {"file": identity, "place": place}
    assert usable_place(saved, file_identity(str(data))) == place
    data.write_text("1\n")  # cut shorter than the offset
    assert usable_place(saved, file_identity(str(data))) is None
    other = tmp_path / "b.csv"
    other.write_text("1,2\n3,4\n")
    os.replace(other, data)  # another file under the same name
    assert usable_place(saved, file_identity(str(data))) is None
    assert usable_place({"file": identity}, identity) is None and usable_place(None, identity) is None
