"""The eye: images from a directory, a file, a named pipe and standard input, decoded, resized and
scaled to the start node's width; bad images counted and survived; end to end to JSON lines."""
import os
import random
import signal
import time

import numpy as np
import pytest

from _extutil import (digit_pixels, ext_call, image_bytes, network_on_stdin, network_with, read_jsonl, wait_metric,
                      wait_until, write_digit_images)
from neurox.ext import ExtensionError, InputError, digits, network_children
from neurox.ext._images import ImageSpec, ImageSplitter, decode_image
from neurox.neuron import load_topology

SPEC = ImageSpec((8, 8))


def png_of(pixels: np.ndarray) -> bytes:
    return image_bytes(pixels, "PNG")


# -- decoding ------------------------------------------------------------------------------------------
@pytest.mark.timeout(30)
@pytest.mark.parametrize("fmt", ["PNG", "PPM"])
def test_a_digit_image_decodes_to_the_digits_features(fmt):
    data = digits()
    for i in (0, 1, 17, 1796):
        row = decode_image(image_bytes(digit_pixels(i), fmt), SPEC)
        assert row.dtype == np.float32 and row.shape == (64,)
        assert np.abs(row - data.features[i]).max() <= 0.5 / 255 + 1e-6


@pytest.mark.timeout(30)
def test_images_are_resized_converted_and_scaled():
    pixels = digit_pixels(5)
    big_rgb = np.repeat(np.kron(pixels, np.ones((4, 4), np.uint8))[:, :, None], 3, axis=2)  # 32x32 RGB
    row = decode_image(png_of(big_rgb), SPEC)
    assert np.abs(row - pixels.reshape(-1) / 255.0).max() < 1e-5, "box-averaged down to 8x8 grey"
    assert decode_image(png_of(pixels), ImageSpec((4, 4), mode="RGB")).shape == (48,)
    inverted = decode_image(png_of(pixels), ImageSpec((8, 8), invert=True))
    assert np.allclose(inverted, 1.0 - pixels.reshape(-1) / 255.0, atol=1e-6)
    faint = (pixels // 4).astype(np.uint8)
    stretched = decode_image(png_of(faint), ImageSpec((8, 8), normalize="minmax"))
    assert stretched.min() == 0.0 and stretched.max() == 1.0
    sixteen_bit = b"P5\n2 2\n1000\n" + np.array([0, 500, 1000, 250], ">u2").tobytes()  # a 16-bit PGM
    assert np.allclose(decode_image(sixteen_bit, ImageSpec((2, 2))), [0.0, 0.5, 1.0, 0.25], atol=1e-3)
    ascii_pgm = b"P2\n# a comment\n2 1\n255\n0 255\n"
    assert np.allclose(decode_image(ascii_pgm, ImageSpec((2, 1))), [0.0, 1.0])


@pytest.mark.timeout(30)
def test_bad_images_are_clear_input_errors():
    big = np.random.default_rng(0).integers(0, 256, (600, 600), dtype=np.uint8)  # noise: it does not compress
    cases = [
        (b"", "bad_image", "not a PNG/PPM/JPEG/BMP image"),
        (b"\x89PNG\r\n\x1a\n but then garbage", "bad_image", "image"),
        (png_of(big)[:2000], "bad_image", "truncated"),
        (image_bytes(digit_pixels(0), "JPEG"), "bad_image", "not a PNG image"),
        (png_of(big), "too_large", "max_pixels"),
        (b"x" * 5000, "too_large", "max_bytes"),
    ]
    specs = [SPEC, SPEC, SPEC, ImageSpec((8, 8), formats=("PNG",)), ImageSpec((8, 8), max_pixels=100_000),
             ImageSpec((8, 8), max_bytes=4096)]
    for (data, error, words), spec in zip(cases, specs):
        with pytest.raises(InputError) as caught:
            decode_image(data, spec)
        assert caught.value.error == error and words in caught.value.detail, caught.value


@pytest.mark.timeout(30)
def test_the_splitter_cuts_a_byte_stream_into_its_images():
    images = [png_of(digit_pixels(i)) if i % 2 else image_bytes(digit_pixels(i), "PPM") for i in range(12)]
    stream = b"".join(images[:6]) + b"\n\n" + b"this is no image at all" + b"".join(images[6:])
    for chunking in (1, 7, 4096):
        splitter, out = ImageSplitter(), []
        for at in range(0, len(stream), chunking):
            splitter.feed(stream[at:at + chunking])
            while (item := splitter.next()) is not None:
                out.append(item)
        assert [o for o in out if isinstance(o, bytes)] == images, f"chunks of {chunking}"
        errors = [o for o in out if isinstance(o, InputError)]
        assert len(errors) == 1 and errors[0].error == "bad_stream", "one garbage run, one error"
        assert splitter.pending() == 0
    huge = ImageSplitter(max_pixels=1000)
    huge.feed(b"P5 5000 5000 255\n" + b"\x00" * 100 + images[1])
    assert huge.next().error == "too_large"
    assert huge.next() == images[1], "after a refused image the stream finds the next one"
    half = ImageSplitter()
    half.feed(images[1][:50])
    assert half.next() is None and half.pending() == 50, "waits for the rest"


@pytest.mark.timeout(30)
def test_a_bad_eye_line_is_refused_before_anything_starts(tmp_path):
    topology = load_topology()
    lines = [
        ({"name": "eye", "module": "eye"}, "'path' is required"),
        ({"name": "eye", "module": "eye", "path": str(tmp_path), "size": "3x3"}, "the network takes 64"),
        ({"name": "eye", "module": "eye", "path": str(tmp_path), "mode": "CMYK"}, "expected one of"),
        ({"name": "eye", "module": "eye", "path": str(tmp_path), "formats": ["PNG", "NOPE"]}, "unknown ['NOPE']"),
        ({"name": "eye", "module": "eye", "path": str(tmp_path), "target": "subdir", "labels_file": "x"},
         "not both"),
        ({"name": "eye", "module": "eye", "path": str(tmp_path), "windw": 3}, "unknown settings ['windw']"),
        ({"name": "eye", "module": "eye", "path": "-", "pipe": "video"}, "standard input carries images only"),
    ]
    for line, words in lines:
        topology.extensions = [line]
        with pytest.raises(ExtensionError, match="extension 'eye'") as caught:
            network_children(topology, str(tmp_path))
        assert words in str(caught.value), caught.value


# -- a running network -----------------------------------------------------------------------------
@pytest.mark.timeout(120)
def test_a_directory_with_class_folders_new_files_and_bad_images(tmp_path, no_stray_processes):
    images = tmp_path / "images"
    expected = write_digit_images(images, range(40))
    (images / "3").mkdir(exist_ok=True)
    (images / "3" / "broken.png").write_bytes(b"not an image at all")
    (images / "4").mkdir(exist_ok=True)
    (images / "4" / "cut.png").write_bytes(png_of(np.tile(digit_pixels(4), (40, 40)))[:300])
    (images / "cats").mkdir()
    (images / "cats" / "tom.png").write_bytes(png_of(digit_pixels(1)))
    (images / ".hidden.png").write_bytes(png_of(digit_pixels(2)))
    out = tmp_path / "answers.jsonl"
    extensions = [{"name": "eye", "module": "eye", "path": str(images), "target": "subdir", "order": "shuffled",
                   "poll_s": 0.1},
                  {"name": "answers", "module": "jsonl", "path": str(out)}]
    with network_with(tmp_path, extensions) as network:
        metrics = wait_metric(network, "eye", "answered", 40)
        metrics = wait_metric(network, "eye", "bad_frames", 3)
        assert metrics["bad_frames_by_kind"] == {"bad_image": 2, "unknown_label": 1}, metrics
        status = ext_call(network, "eye", "status")
        details = " | ".join(r["detail"] for r in status["recent_rejects"])
        assert "3/broken.png" in details and "4/cut.png" in details and "cats/tom.png: unknown target 'cats'" in \
            details, details
        pid = status["pid"]
        # files added while it runs are taken too
        expected.update(write_digit_images(images, range(40, 60)))
        wait_metric(network, "eye", "answered", 60)
        records = wait_until(lambda: len(read_jsonl(out)) >= 60 and read_jsonl(out), what="60 JSON lines")
        assert ext_call(network, "eye", "status")["pid"] == pid, "bad images crashed nothing"
        # a replaced eye does not send again what its predecessor took
        os.kill(pid, signal.SIGKILL)
        wait_until(lambda: _pid_or_none(network, "eye") not in (None, pid), what="a new eye")
        time.sleep(0.5)  # several scans of the directory
        assert ext_call(network, "eye")["offered"] == 0, "nothing taken twice"
        expected.update(write_digit_images(images, range(60, 65)))
        wait_metric(network, "eye", "answered", 5)
        records = wait_until(lambda: len(read_jsonl(out)) >= 65 and read_jsonl(out), what="65 JSON lines")
        time.sleep(0.3)
        records = read_jsonl(out)
    assert sorted(r["message_hash_id"] for r in records) == sorted(expected), "each image answered exactly once"
    for record in records:
        assert record["source"] == "eye" and record["target"] == expected[record["message_hash_id"]]
        assert 0 <= record["label"] <= 9 and len(record["output"]) == 10


def _pid_or_none(network, name):
    try:
        return ext_call(network, name, "status", timeout=0.5)["pid"]
    except Exception:  # noqa: BLE001 -- not answering yet while it is replaced
        return None


@pytest.mark.timeout(120)
def test_a_labels_file_and_a_single_file_that_changes(tmp_path, no_stray_processes):
    folder = tmp_path / "flat"
    expected = write_digit_images(folder, range(10), by_class=False)
    labels = tmp_path / "labels.csv"
    names = sorted(expected)
    labels.write_text("name,label\n" + "".join(f"{n},{expected[n]}\n" for n in names[:8]) +
                      f"{names[8]},seven-ish\n")  # not a label of the network
    single = tmp_path / "latest.png"
    single.write_bytes(png_of(digit_pixels(3)))
    os.utime(single, (time.time() - 10, time.time() - 10))
    out = tmp_path / "answers.jsonl"
    extensions = [{"name": "eye", "module": "eye", "path": str(folder), "labels_file": str(labels), "poll_s": 0.1},
                  {"name": "cam", "module": "eye", "path": str(single), "poll_s": 0.1, "remember": False},
                  {"name": "answers", "module": "jsonl", "path": str(out), "output": False}]
    with network_with(tmp_path, extensions) as network:
        wait_metric(network, "eye", "answered", 9)
        metrics = wait_metric(network, "eye", "bad_frames", 1)
        assert metrics["bad_frames_by_kind"] == {"unknown_label": 1} and metrics["scored"] == 8, metrics
        wait_metric(network, "cam", "answered", 1)
        single.write_bytes(png_of(digit_pixels(4)))  # the file changed: a new image
        wait_metric(network, "cam", "answered", 2)
        records = wait_until(lambda: len(read_jsonl(out)) >= 11 and read_jsonl(out), what="11 JSON lines")
    by_id = {r["message_hash_id"]: r for r in records if r["source"] == "eye"}
    assert set(by_id) == set(names) - {names[8]}
    assert all(by_id[n].get("target") == expected[n] for n in names[:8]), "labels from the file"
    assert "target" not in by_id[names[9]], "an image the file does not list has no target"
    assert [r["message_hash_id"] for r in records if r["source"] == "cam"] == ["latest.png", "latest.png"]


@pytest.mark.timeout(120)
def test_a_named_pipe_of_concatenated_images(tmp_path, no_stray_processes):
    pipe = tmp_path / "camera.pipe"
    os.mkfifo(pipe)
    labels = tmp_path / "labels.csv"
    labels.write_text("".join(f"{i},{int(digits().targets[i])}\n" for i in range(30)))
    out = tmp_path / "answers.jsonl"
    extensions = [{"name": "eye", "module": "eye", "path": str(pipe), "labels_file": str(labels)},
                  {"name": "answers", "module": "jsonl", "path": str(out)}]
    with network_with(tmp_path, extensions) as network:
        pid = ext_call(network, "eye", "status")["pid"]
        rng = random.Random(1)
        for writer in range(3):  # writers come and go; the eye sees one stream
            with open(pipe, "wb") as f:
                for i in range(writer * 10, writer * 10 + 10):
                    f.write(image_bytes(digit_pixels(i), rng.choice(["PNG", "PPM"])))
                    if i == 15:
                        f.write(b"\x00\x01 garbage between two images \xff")
        metrics = wait_metric(network, "eye", "answered", 30)
        assert metrics["bad_frames_by_kind"] == {"bad_stream": 1} and metrics["scored"] == 30, metrics
        assert ext_call(network, "eye", "status")["pid"] == pid
        records = wait_until(lambda: len(read_jsonl(out)) >= 30 and read_jsonl(out), what="30 JSON lines")
    assert sorted(r["message_hash_id"] for r in records) == list(range(30))
    assert all(r["target"] == int(digits().targets[r["message_hash_id"]]) for r in records)


@pytest.mark.timeout(120)
def test_standard_input_of_concatenated_images(tmp_path, no_stray_processes):
    out = tmp_path / "answers.jsonl"
    extensions = [{"name": "eye", "module": "eye", "path": "-"},
                  {"name": "answers", "module": "jsonl", "path": str(out), "output": False}]
    with network_on_stdin(tmp_path, extensions) as (stdin, run_dir):
        for i in range(20):
            stdin.write(image_bytes(digit_pixels(i), "PNG" if i % 3 else "PPM"))
        stdin.write(png_of(digit_pixels(20))[:40])  # cut short by the end of the input
        stdin.close()
        records = wait_until(lambda: len(read_jsonl(out)) >= 20 and read_jsonl(out), what="20 JSON lines")
        status = wait_until(lambda: (s := ext_call(run_dir, "eye", "status"))["state"] == "ended" and s,
                            what="the end of the input")
    assert status["recent_rejects"][-1]["detail"] == "the stream ended inside an image (40 bytes)"
    assert sorted(r["message_hash_id"] for r in records) == list(range(20))
    assert all("target" not in r and 0 <= r["label"] <= 9 for r in records)


# -- end to end --------------------------------------------------------------------------------------
@pytest.mark.timeout(180)
def test_end_to_end_from_image_files_to_json_lines(tmp_path, no_stray_processes):
    """Every digit as a PNG or PGM file in a folder named for its class; the eye learns from them in a
    shuffled order; every answer lands in a JSON-lines file, and the network learnt from the pixels."""
    images = tmp_path / "digits"
    expected = write_digit_images(images, range(1797))
    out = tmp_path / "answers.jsonl"
    extensions = [{"name": "eye", "module": "eye", "path": str(images), "target": "subdir", "order": "shuffled",
                   "window": 4},
                  {"name": "answers", "module": "jsonl", "path": str(out)}]
    with network_with(tmp_path, extensions) as network:
        metrics = wait_metric(network, "eye", "answered", 1797, timeout=120)
        records = wait_until(lambda: len(read_jsonl(out)) >= 1797 and read_jsonl(out), what="1797 JSON lines")
    assert metrics["lost"] == 0 and metrics["bad_frames"] == 0, metrics
    assert len(records) == 1797 and {r["message_hash_id"] for r in records} == set(expected)
    assert all(r["target"] == expected[r["message_hash_id"]] for r in records)
    hits = [r["label"] == r["target"] for r in records]  # in the order the answers came: prequential
    assert np.mean(hits) > 0.4 and np.mean(hits[-500:]) > 0.6, (np.mean(hits), np.mean(hits[-500:]))
    assert abs(metrics["accuracy"] - np.mean(hits)) < 1e-9, "the eye's own score agrees with the file"
