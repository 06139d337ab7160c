"""Video frames in the eye (PyAV), and mixing an input's samples into the main input at declared positions."""
import collections
import io
import os
import signal
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

import av
import numpy as np
import pytest
import zmq

from _extutil import ext_call, image_bytes, network_with, read_jsonl, wait_metric, wait_until
from neurox.ext import Client, ExtensionError, Sample, extension_class
from neurox.ext._images import ImageSpec
from neurox.ext._mixing import Mixer, MixSource, check_join
from neurox.ext._video import VideoFrames, VideoSpec
from neurox.neuron import load_topology, messenger_in_endpoint, neuron_control
from neurox.neuron._frames import decode
from neurox.runtime import call, make_socket


def write_video(target, frames: int = 20, fps: int = 10, side: int = 16, format: str | None = None) -> None:
    """A video whose frame i is a flat grey of brightness 12 * i (mod 256), into a path or a file object."""
    with av.open(target if hasattr(target, "write") else str(target), "w", format=format) as container:
        stream = container.add_stream("mpeg4", rate=fps)
        stream.width = stream.height = side
        stream.pix_fmt = "yuv420p"
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(np.full((side, side, 3), 12 * i % 256, np.uint8), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def frames_of(path, **spec) -> list:
    video = VideoFrames(str(path), "clip.mp4", VideoSpec(**spec), ImageSpec((8, 8)))
    taken = []
    try:
        while (item := video.next()) is not None:
            taken.append(item)
    finally:
        video.close()
    return taken


def test_a_video_is_read_frame_by_frame_at_the_chosen_rate_and_within_its_bounds(tmp_path):
    write_video(tmp_path / "clip.mp4")
    every = frames_of(tmp_path / "clip.mp4", fps=0)
    assert [tag for tag, _ in every] == [f"clip.mp4#{i}" for i in range(20)]
    means = [float(row.mean()) for _, row in every]
    assert all(row.shape == (64,) and row.dtype == np.float32 for _, row in every)
    assert means[0] < 0.05 and abs(means[10] - 120 / 255) < 0.05 and means == sorted(means)
    assert [tag for tag, _ in frames_of(tmp_path / "clip.mp4", fps=5)] == [f"clip.mp4#{i}" for i in range(0, 20, 2)]
    assert len(frames_of(tmp_path / "clip.mp4", fps=1)) == 2  # 2 s of video
    assert len(frames_of(tmp_path / "clip.mp4", fps=0, max_frames=3)) == 3
    assert len(frames_of(tmp_path / "clip.mp4", fps=0, max_seconds=0.45)) == 5
    (tmp_path / "joined.ts").write_bytes(ts_bytes(16, 4) + ts_bytes(16, 4))  # its clock starts again mid-way
    assert len(frames_of(tmp_path / "joined.ts", fps=20)) == 8, "every frame at the video's own rate"
    (tmp_path / "grows.ts").write_bytes(ts_bytes(16, 3) + ts_bytes(32, 3))
    grows = VideoFrames(str(tmp_path / "grows.ts"), "grows.ts", VideoSpec(fps=0), ImageSpec((8, 8), max_pixels=300))
    try:
        assert [grows.next()[0] for _ in range(3)] == ["grows.ts#0", "grows.ts#1", "grows.ts#2"]
        with pytest.raises(Exception, match=r"too_large: frame 3 is 32x32 pixels, more than max_pixels \(300\)"):
            grows.next()
    finally:
        grows.close()
    (tmp_path / "bad.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + os.urandom(4000))
    with pytest.raises(Exception, match="bad_video: not a video PyAV can read"):
        frames_of(tmp_path / "bad.mp4")
    with pytest.raises(Exception, match="too_large: 16x16 pixels is more than max_pixels"):
        VideoFrames(str(tmp_path / "clip.mp4"), "clip", VideoSpec(), ImageSpec((8, 8), max_pixels=100))


@pytest.mark.timeout(120)
def test_the_eye_sends_each_frame_of_a_video_and_a_corrupt_one_is_one_error(tmp_path, no_stray_processes):
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "a-corrupt.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + os.urandom(20000))
    write_video(tmp_path / ".clip.mp4")
    os.replace(tmp_path / ".clip.mp4", folder / "b-clip.mp4")
    lines = [{"name": "eye", "module": "eye", "path": str(folder), "fps": 5.0, "poll_s": 0.1},
             {"name": "out", "module": "jsonl", "path": str(tmp_path / "out.jsonl"), "output": False}]
    with network_with(tmp_path, lines) as network:
        pid = ext_call(network, "eye", "status")["pid"]
        metrics = wait_metric(network, "eye", "answered", 10)
        assert metrics["frames"] == 10 and metrics["videos"] == 1
        assert metrics["bad_frames_by_kind"] == {"bad_video": 1}
        status = ext_call(network, "eye", "status")
        assert status["pid"] == pid and "a-corrupt.mp4: not a video PyAV can read" in \
            status["recent_rejects"][0]["detail"]
        # and it goes on: an image and another video after the broken one
        (folder / "c-digit.png").write_bytes(image_bytes(np.zeros((8, 8), np.uint8), "PNG"))
        write_video(tmp_path / ".d.mp4", frames=5)
        os.replace(tmp_path / ".d.mp4", folder / "d-short.mp4")
        metrics = wait_metric(network, "eye", "answered", 14)
        assert (metrics["images"], metrics["frames"], metrics["videos"]) == (1, 13, 2)
        tags = wait_until(lambda: (r := [x["message_hash_id"] for x in read_jsonl(tmp_path / "out.jsonl")])
                          and len(r) == 14 and r, 20, "14 records")
        assert tags == [f"b-clip.mp4#{i}" for i in range(0, 20, 2)] + ["c-digit.png"] + \
            [f"d-short.mp4#{i}" for i in (0, 2, 4)]
        assert ext_call(network, "eye", "status")["pid"] == pid


def test_mixing_is_checked_and_writes_the_latest_sample_into_its_positions():
    topology = load_topology()
    for line, words in [({"join": "mix"}, "needs positions"), ({"join": "mix", "positions": [60, 70]}, "<= 64"),
                        ({"positions": [0, 4]}, "is for join")]:
        with pytest.raises(ExtensionError, match=words):
            extension_class("stream").configure({"path": "-", "format": "csv", **line}, "x", topology)
    assert check_join({"join": "mix", "positions": [48, 64]}, "x", topology)["positions"] == [48, 64]
    topology.extensions = [{"name": "cam", "module": "eye", "join": "mix", "positions": [2, 5]}]
    ctx = zmq.Context.instance()
    run_dir = tempfile.mkdtemp(prefix="nx-mix-")  # short: an ipc path has at most ~100 characters
    source, mixer = MixSource(ctx, run_dir, "cam", 0.0), Mixer(ctx, run_dir, topology, "messenger_in")
    queue = Queued([[1, 2, 3], [7, 8, 9]])
    try:
        rows = np.zeros((2, 8), np.float32)
        assert mixer.apply(rows) is rows  # nothing published yet: the main input as it is

        def mixed():
            source.pump(queue, time.monotonic())
            out = mixer.apply(rows)
            return out is not rows and out[0, 2] == 7 and out.tolist()
        out = wait_until(mixed, 10, "the latest sample to be mixed in")  # the repeat reaches a late subscriber
        assert out == [[0, 0, 7, 8, 9, 0, 0, 0]] * 2 and queue.counters["mixed"] == 2
        assert not rows.any()  # the caller's rows are not written to
    finally:
        source.close()
        mixer.close()
        shutil.rmtree(run_dir)


class Queued:
    """What MixSource.pump needs of a SampleInput: its queue of samples and its counters."""

    def __init__(self, rows):
        self.pending = collections.deque(Sample(np.asarray(r, np.float32)) for r in rows)
        self.counters = {}

    def count(self, name, n=1):
        self.counters[name] = self.counters.get(name, 0) + n


@pytest.mark.timeout(120)
def test_a_mixed_sample_reaches_the_start_node_in_its_positions(tmp_path, no_stray_processes):
    folder = tmp_path / "cam"
    folder.mkdir()
    pixels = (np.arange(16, dtype=np.uint8) * 16 + 15).reshape(4, 4)
    (folder / "frame.png").write_bytes(image_bytes(pixels, "PNG"))
    lines = [{"name": "cam", "module": "eye", "path": str(folder), "join": "mix", "positions": [48, 64],
              "poll_s": 0.1}]
    base = np.linspace(0.0, 0.5, 64, dtype=np.float32)
    expected = base.copy()
    expected[48:64] = pixels.reshape(-1) / 255.0
    with network_with(tmp_path, lines) as network:
        wait_metric(network, "cam", "mixed", 1)
        assert ext_call(network, "cam")["answered"] == 0  # mixed samples are no packets of their own
        ctx = zmq.Context.instance()
        control = neuron_control(network.run_dir, network.topology, "L0.n0")
        tapped = make_socket(ctx, zmq.SUB, connect=call(ctx, control, "tap", on=True)["endpoint"], linger_ms=0)
        tapped.setsockopt(zmq.SUBSCRIBE, b"")
        client = Client(messenger_in_endpoint(network.run_dir), deadline_s=30)
        try:
            def start_output():
                """L0.n0's output for one MessengerIn request of ``base``, once the mix has arrived."""
                while tapped.poll(0):
                    tapped.recv_multipart()
                assert client.ask(vector=base.tolist())["ok"]
                assert tapped.poll(5000)
                message = decode(tapped.recv_multipart()[1])
                return np.frombuffer(message[4], dtype="<f4")
            as_mixed = np.asarray(call(ctx, control, "inject", vector=expected.tolist())["output"], np.float32)
            as_sent = np.asarray(call(ctx, control, "inject", vector=base.tolist())["output"], np.float32)
            assert not np.allclose(as_mixed, as_sent, atol=1e-4)
            seen = wait_until(lambda: (y := start_output()) is not None and np.allclose(y, as_mixed, atol=1e-5)
                              and y.tolist(), 20, "the start node to compute on the mixed row")
            assert np.allclose(seen, as_mixed, atol=1e-5) and not np.allclose(seen, as_sent, atol=1e-4)
        finally:
            client.close()
            tapped.close()
            call(ctx, control, "tap", on=False)


def _pid_or_none(network, name):
    try:
        return ext_call(network, name, "status", timeout=0.5)["pid"]
    except Exception:  # noqa: BLE001 -- not answering yet while it is replaced
        return None


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.timeout(60)
def test_an_eye_killed_mid_video_resumes_it_where_it_was(tmp_path, no_stray_processes):
    folder = tmp_path / "in"
    folder.mkdir()
    write_video(tmp_path / ".long.mp4", frames=100, fps=20)
    os.replace(tmp_path / ".long.mp4", folder / "long.mp4")
    lines = [{"name": "eye", "module": "eye", "path": str(folder), "fps": 0.0, "rate": 40.0, "poll_s": 0.1},
             {"name": "out", "module": "jsonl", "path": str(tmp_path / "out.jsonl"), "output": False}]
    everything = [f"long.mp4#{i}" for i in range(100)]
    with network_with(tmp_path, lines) as network:
        pid = ext_call(network, "eye", "status")["pid"]
        wait_metric(network, "eye", "answered", 60)  # 1.5 s at 40 a second: past a second place saved
        os.kill(pid, signal.SIGKILL)
        wait_until(lambda: _pid_or_none(network, "eye") not in (None, pid), what="a new eye")
        records = wait_until(lambda: (r := read_jsonl(tmp_path / "out.jsonl"))
                             and {x["message_hash_id"] for x in r} >= set(everything) and r, 30, "every frame")
        metrics = ext_call(network, "eye")
    tags = [r["message_hash_id"] for r in records]
    assert metrics["videos_resumed"] == 1 and metrics["videos"] == 1, metrics
    assert metrics["frames"] <= 100 - 20, "resumed mid-way, not from the start"
    assert tags.count("long.mp4#0") == 1 and set(tags) == set(everything)
    assert len(tags) - 100 <= 40 + 20, f"{len(tags) - 100} frames sent twice: more than a second's and the queue's"


STREAMER = """
import sys, av, numpy as np
url, frames = sys.argv[1], int(sys.argv[2])
with av.open(url, "w", format="mpegts") as container:
    stream = container.add_stream("mpeg4", rate=20)
    stream.width = stream.height = 16
    stream.pix_fmt = "yuv420p"
    for i in range(frames):
        frame = av.VideoFrame.from_ndarray(np.full((16, 16, 3), 12 * i % 256, np.uint8), format="rgb24")
        for packet in stream.encode(frame):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)
"""


def stream_video(url: str, frames: int) -> None:
    """A live MPEG-TS stream of ``frames`` frames served once at ``url`` (a listening TCP socket or a named
    pipe), by another process: PyAV's writer blocks while it waits for the reader."""
    writer = subprocess.Popen([sys.executable, "-c", STREAMER, url, str(frames)], stderr=subprocess.PIPE)
    try:
        assert writer.wait(timeout=20) == 0, writer.stderr.read()
    finally:
        writer.kill()
        writer.wait()
        writer.stderr.close()


@pytest.mark.timeout(60)
def test_the_eye_reads_a_live_stream_and_reconnects_when_it_drops(tmp_path, no_stray_processes):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    os.mkfifo(tmp_path / "camera.ts")
    lines = [{"name": "cam", "module": "eye", "path": f"tcp://127.0.0.1:{port}", "fps": 0.0, "reconnect_s": 0.05,
              "reconnect_max_s": 0.2},
             {"name": "pipe", "module": "eye", "path": str(tmp_path / "camera.ts"), "pipe": "video", "fps": 10.0},
             {"name": "out", "module": "jsonl", "path": str(tmp_path / "out.jsonl"), "output": False}]
    with network_with(tmp_path, lines) as network:
        pid = ext_call(network, "cam", "status")["pid"]
        wait_until(lambda: "reconnecting" in ext_call(network, "cam", "status")["live"], 10,
                   "a first try to fail")  # nobody serves it yet
        stream_video(f"tcp://127.0.0.1:{port}?listen=1", 10)
        wait_metric(network, "cam", "answered", 10)
        stream_video(f"tcp://127.0.0.1:{port}?listen=1", 6)  # the stream dropped; served again
        metrics = wait_metric(network, "cam", "answered", 16)
        status = ext_call(network, "cam", "status")
        assert status["pid"] == pid and status["connections"] == 2 and metrics["frames"] == 16, (status, metrics)
        stream_video(str(tmp_path / "camera.ts"), 20)  # 1 s of video into a named pipe, at 10 frames a second
        wait_metric(network, "pipe", "answered", 10)
        records = wait_until(lambda: len(r := read_jsonl(tmp_path / "out.jsonl")) >= 26 and r, 20, "26 records")
    cam = [r["message_hash_id"] for r in records if r["source"] == "cam"]
    piped = [r["message_hash_id"] for r in records if r["source"] == "pipe"]
    assert sorted(cam) == list(range(16)) and sorted(piped) == list(range(10)), (cam, piped)


def test_what_is_a_live_stream_and_the_back_off_between_tries(tmp_path):
    from neurox.ext._live_video import is_live, next_backoff
    os.mkfifo(tmp_path / "pipe")
    assert is_live("rtsp://camera/1", "images") and is_live("udp://127.0.0.1:5000", "images")
    assert is_live(str(tmp_path / "pipe"), "video") and not is_live(str(tmp_path / "pipe"), "images")
    assert not is_live(str(tmp_path), "video") and not is_live("file://x.mp4", "images")
    assert is_live(str(tmp_path / "later.ts"), "video"), "a video pipe not there yet is waited for"
    waits, delay = [], 0.5
    for _ in range(8):
        waits.append(delay)
        delay = next_backoff(delay, {"reconnect_max_s": 10.0})
    assert waits == [0.5, 1.0, 2.0, 4.0, 8.0, 10.0, 10.0, 10.0]


def test_a_saved_video_place_is_for_that_very_file_only(tmp_path):
    from neurox.ext._offsets import SavedPlaces
    video, saved = tmp_path / "clip.mp4", str(tmp_path / "ext" / "eye.videos")
    video.write_bytes(b"frames")
    places = SavedPlaces(saved)
    places.put("clip.mp4", str(video), {"frame": 40})
    places.write(now=0.0)
    places.put("clip.mp4", str(video), {"frame": 41})
    places.write(now=0.5)  # within the second: not written
    assert SavedPlaces(saved).get("clip.mp4", str(video)) == {"frame": 40}
    places.write(now=1.0)
    assert SavedPlaces(saved).get("clip.mp4", str(video)) == {"frame": 41}
    assert SavedPlaces(saved).get("other.mp4", str(video)) is None
    damaged = SavedPlaces(saved)
    damaged.put("clip.mp4", str(video), {"frame": "forty"})  # a saved file edited by hand: from the start
    damaged.write(now=2.0, force=True)
    assert SavedPlaces(saved).get("clip.mp4", str(video)) is None
    damaged.put("clip.mp4", str(video), {"frame": 41})
    damaged.write(now=2.0, force=True)
    (tmp_path / "new.mp4").write_bytes(b"other frames")
    os.replace(tmp_path / "new.mp4", video)  # another file under the same name: from its start
    assert SavedPlaces(saved).get("clip.mp4", str(video)) is None
    places.drop("clip.mp4", now=1.1)
    assert SavedPlaces(saved).entries == {}


def ts_bytes(side: int, frames: int) -> bytes:
    """``frames`` frames of ``side`` x ``side`` pixels as MPEG-TS (its clock starting at 0), in memory."""
    out = io.BytesIO()
    write_video(out, frames, fps=20, side=side, format="mpegts")
    return out.getvalue()


class Served:
    """A loopback TCP server in a thread: its n-th connection gets ``payloads[n]`` and is then held open
    (``hold``: a stream gone silent) or closed; connections past the payloads are closed at once."""

    def __init__(self, payloads: list[bytes], hold: bool):
        self.payloads, self.hold, self.open = payloads, hold, []
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"tcp://127.0.0.1:{self.listener.getsockname()[1]}"
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return  # closed
            n = len(self.open)
            self.open.append(conn)
            if n < len(self.payloads):
                conn.sendall(self.payloads[n])
            if n >= len(self.payloads) or not self.hold:
                conn.close()

    def close(self):
        self.listener.shutdown(socket.SHUT_RDWR)  # wakes the accept
        self.listener.close()
        self.thread.join(5)
        for conn in self.open:
            conn.close()


@pytest.fixture
def served():
    servers = []
    yield lambda payloads, hold=False: servers.append(Served(payloads, hold)) or servers[-1]
    for server in servers:
        server.close()


@pytest.mark.timeout(60)
def test_a_live_stream_gone_silent_is_opened_again(tmp_path, served, no_stray_processes):
    server = served([ts_bytes(16, 6), ts_bytes(16, 6)], hold=True)  # each connection sends, then stays silent
    lines = [{"name": "cam", "module": "eye", "path": server.url, "fps": 0.0, "live_timeout_s": 0.5,
              "reconnect_s": 0.05}]
    with network_with(tmp_path, lines) as network:
        first = wait_metric(network, "cam", "frames", 3)["frames"]  # the last one or two wait for more data
        metrics = wait_metric(network, "cam", "frames", first + 3)  # from a second connection
        status = ext_call(network, "cam", "status")
    assert status["connections"] == 2 and len(server.open) >= 2, status
    assert server.open[0].fileno() != -1, "the first connection was held open (silent), not closed by the server"
    assert metrics.get("bad_frames_by_kind", {}) == {}, metrics


@pytest.mark.timeout(60)
def test_a_live_frame_too_large_is_one_error_and_the_stream_goes_on(tmp_path, served, no_stray_processes):
    # one connection: 3 small frames, 3 too large, 3 small; each part's clock starts again at 0 (every frame
    # is still taken at the stream's own 20 frames a second)
    server = served([ts_bytes(16, 3) + ts_bytes(32, 3) + ts_bytes(16, 3)])
    (tmp_path / "labels.csv").write_text("".join(f"{i},{i}\n" for i in range(6)))  # frame i is a digit i
    lines = [{"name": "cam", "module": "eye", "path": server.url, "fps": 20.0, "max_pixels": 300,
              "reconnect_s": 0.05, "labels_file": str(tmp_path / "labels.csv")},
             {"name": "out", "module": "jsonl", "path": str(tmp_path / "out.jsonl"), "output": False}]
    with network_with(tmp_path, lines) as network:
        metrics = wait_metric(network, "cam", "answered", 6)
        status = ext_call(network, "cam", "status")
        records = wait_until(lambda: len(r := read_jsonl(tmp_path / "out.jsonl")) >= 6 and r, 20, "6 records")
    assert metrics["frames"] == 6 and metrics["bad_frames_by_kind"] == {"too_large": 3}, metrics
    assert status["connections"] == 1 and "a frame of 32x32 pixels is more than max_pixels (300)" in \
        status["recent_rejects"][0]["detail"], status
    assert sorted(r["message_hash_id"] for r in records) == list(range(6))
    assert all(r.get("target") == r["message_hash_id"] for r in records) and metrics["scored"] == 6, \
        "the labels file names the frames"


@pytest.mark.timeout(60)
def test_a_live_stream_faster_than_the_network_drops_its_oldest_frames(tmp_path, served, no_stray_processes):
    server = served([ts_bytes(16, 20)])
    lines = [{"name": "cam", "module": "eye", "path": server.url, "fps": 0.0, "live_buffer": 2, "queue": 1,
              "window": 1, "rate": 8.0, "reconnect_s": 0.05},
             {"name": "out", "module": "jsonl", "path": str(tmp_path / "out.jsonl"), "output": False}]
    with network_with(tmp_path, lines) as network:
        def all_accounted():
            status = ext_call(network, "cam", "status")
            return status["answered"] + status["dropped_frames"] == 20 and status
        status = wait_until(all_accounted, 20, "every frame answered or dropped")
        records = wait_until(lambda: len(r := read_jsonl(tmp_path / "out.jsonl")) >= status["answered"] and r,
                             20, "the answered frames")
    tags = [r["message_hash_id"] for r in records]
    assert 0 < status["dropped_frames"] <= 20 - 3, status
    assert tags == sorted(tags) and tags[-2:] == [18, 19], "the newest frames are kept, the oldest dropped"
    assert len(tags) == 20 - status["dropped_frames"]


def _wait_state(live, words, timeout=10.0):
    return wait_until(lambda: words in live.state and live.state, timeout, f"live state {words!r}")


@pytest.mark.timeout(30)
def test_a_live_thread_stops_at_once_even_waiting_and_logs_each_reason_once(tmp_path):
    from neurox.ext._live_video import LiveVideo, LIVE_SETTINGS
    settings = {**{name: s.default for name, s in LIVE_SETTINGS.items()}, "reconnect_s": 0.01,
                "reconnect_max_s": 0.02}
    path, logged, unserved = tmp_path / "cam.ts", [], []
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        url = f"tcp://127.0.0.1:{probe.getsockname()[1]}"
    refused = LiveVideo(url, settings, VideoSpec(), ImageSpec((8, 8)), unserved.append)
    missing = LiveVideo(str(path), settings, VideoSpec(), ImageSpec((8, 8)), logged.append)
    _wait_state(missing, f"no named pipe {path} yet")
    path.write_bytes(ts_bytes(16, 4))  # a video file where the pipe should be: not read again and again
    _wait_state(missing, f"waiting: {path} is not a named pipe")
    assert missing.connections == 0 and missing.take() is None
    path.unlink()
    _wait_state(missing, f"no named pipe {path} yet")
    _wait_state(refused, "reconnecting in 0.02 s: cannot be opened")  # a second try at least, for one reason
    assert logged == [f"{path}: waiting: no named pipe {path} yet", f"{path}: waiting: {path} is not a named pipe",
                      f"{path}: waiting: no named pipe {path} yet"] and len(unserved) == 1, (logged, unserved)
    assert unserved[0].startswith(f"{url}: cannot be opened (") and "Connection refused" in unserved[0], unserved
    os.mkfifo(path)
    writer = os.open(path, os.O_RDWR)  # a writer that holds the pipe open and sends nothing
    silent = LiveVideo(str(path), settings, VideoSpec(), ImageSpec((8, 8)))
    try:
        _wait_state(silent, "waiting for the stream")
        for live in (missing, silent, refused):
            started = time.monotonic()
            live.close()
            assert time.monotonic() - started < 0.5 and not live.running, live.state
    finally:
        os.close(writer)


@pytest.mark.timeout(60)
def test_the_eye_waits_for_its_video_pipe_and_reopens_it_when_silent(tmp_path, no_stray_processes):
    path = tmp_path / "camera.ts"
    lines = [{"name": "cam", "module": "eye", "path": str(path), "pipe": "video", "fps": 0.0,
              "live_timeout_s": 0.5, "reconnect_s": 0.05},
             {"name": "late", "module": "eye", "path": str(tmp_path / "never.ts"), "pipe": "video"}]
    with network_with(tmp_path, lines) as network:
        status = wait_until(lambda: (s := ext_call(network, "cam", "status"))["live"] != "connecting" and s, 10,
                            "the eye to look for its pipe")  # its control socket answers while it waits
        assert status["live"] == f"waiting: no named pipe {path} yet" and status["connections"] == 0, status
        late = ext_call(network, "late", "status")["pid"]
        stopping = time.monotonic()
        os.kill(late, signal.SIGTERM)  # a polite stop while it waits: at once (its supervisor starts another)
        wait_until(lambda: not _alive(late), 5, "the waiting eye to stop")
        assert time.monotonic() - stopping < 1.0
        wait_until(lambda: _pid_or_none(network, "late") not in (None, late), 10, "another eye")
        wait_until(lambda: ext_call(network, "late", "status")["live"].startswith("waiting: no named pipe"), 10,
                   "the new eye to wait in turn")
        os.mkfifo(path)
        with open(path, "wb", buffering=0) as writer:  # opens once the eye reads it
            writer.write(ts_bytes(16, 6))
            first = wait_metric(network, "cam", "frames", 3)["frames"]  # the last one or two wait for more data
            wait_until(lambda: ext_call(network, "cam", "status")["live"] == "waiting for the stream", 10,
                       "the silent pipe to be given up and opened again")
            writer.write(ts_bytes(16, 6))  # the writer speaks again: a second connection
            metrics = wait_metric(network, "cam", "frames", first + 3)
            status = ext_call(network, "cam", "status")
    assert status["connections"] == 2 and metrics.get("bad_frames_by_kind", {}) == {}, (status, metrics)
