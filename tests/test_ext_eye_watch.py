"""The eye sees a new image at once through inotify (watchfiles), not at its next poll, and polls where
inotify cannot be used (neurox/ext/_watch.py)."""
import os
import select
import time

import pytest

from _extutil import ext_call, network_with, wait_metric, write_digit_images
from neurox.ext._watch import DirectoryWatch

LONG_POLL_S = 60.0
"""Far longer than any wait below: an image seen within them was not seen by polling."""


@pytest.mark.timeout(120)
def test_new_images_are_seen_at_once_through_inotify(tmp_path, no_stray_processes):
    images = tmp_path / "images"
    write_digit_images(images, range(5))
    extensions = [{"name": "eye", "module": "eye", "path": str(images), "target": "subdir", "poll_s": LONG_POLL_S}]
    with network_with(tmp_path, extensions) as network:
        wait_metric(network, "eye", "answered", 5)
        assert ext_call(network, "eye", "status")["watch"] == "inotify"
        started = time.monotonic()
        write_digit_images(images, range(5, 15))  # into new class folders too
        wait_metric(network, "eye", "answered", 15, timeout=20)
        # an image written slowly is taken once complete, within the settle time, not after a poll
        slow = images / "7" / "slow.png"
        data = (images / "7" / os.listdir(images / "7")[0]).read_bytes()
        with open(slow, "wb") as f:
            f.write(data[:20])
            f.flush()
            time.sleep(0.3)
            f.write(data[20:])
        wait_metric(network, "eye", "answered", 16, timeout=20)
        assert time.monotonic() - started < LONG_POLL_S / 2
        assert ext_call(network, "eye", "metrics")["bad_frames"] == 0, "the half-written file was not taken"


@pytest.mark.timeout(120)
def test_a_polling_eye_still_takes_new_images(tmp_path, no_stray_processes):
    images = tmp_path / "images"
    write_digit_images(images, range(3))
    extensions = [{"name": "eye", "module": "eye", "path": str(images), "target": "subdir", "poll_s": 0.2,
                   "watch": "poll"}]
    with network_with(tmp_path, extensions) as network:
        wait_metric(network, "eye", "answered", 3)
        assert ext_call(network, "eye", "status")["watch"] == "polling"
        write_digit_images(images, range(3, 8))
        wait_metric(network, "eye", "answered", 8)


def test_a_watch_that_cannot_start_says_why_and_wakes_the_loop(tmp_path):
    watch = DirectoryWatch(str(tmp_path / "missing"))
    try:
        assert select.select([watch.fd], [], [], 10)[0], "the loop is woken to fall back to polling"
        assert not watch.alive and watch.failed and "missing" in watch.failed
    finally:
        watch.close()


def test_a_watch_wakes_the_loop_on_a_change(tmp_path):
    watch = DirectoryWatch(str(tmp_path))
    try:
        time.sleep(0.3)  # the watch is set up in its thread
        (tmp_path / "new.png").write_bytes(b"x")
        assert select.select([watch.fd], [], [], 5)[0]
        watch.drain()
        assert not select.select([watch.fd], [], [], 0)[0] and watch.alive
    finally:
        watch.close()
