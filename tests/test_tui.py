"""The TUI driven through App.run_test() and its Pilot against a real running network, at 80x24 and 200x50,
each assertion on what the screen shows; and a snapshot of the main screen so a layout regression fails."""
import asyncio
import io
import json
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import zmq
from rich.console import Console
from rich.text import Text
from textual.containers import Horizontal

from _netutil import neuron_call, running_network
from neurox.cli._discovery import write_run_file
from neurox.ext import Stream, load_dataset
from neurox.neuron import load_topology
from neurox.tui import Endpoints
from neurox.tui._observer import ProcessRow, layer_of
from neurox.tui.app import NeuroxApp
from neurox.runtime import call
from neurox.supervisor_tree import control_endpoint
from neurox.tui.messages import NetworkEvent, ScalingState, TreeSnapshot
from neurox.tui.screens import MainScreen
from neurox.tui.widgets import EventFilter, SupervisionTree
from neurox.tui._words import scaling_line
from neurox.tui.widgets.vitals import update_rates

SNAPSHOTS = Path(__file__).parent / "snapshots"


def screen_text(app) -> str:
    """What the terminal shows now, as plain text (the same render as the SVG export)."""
    width, height = app.size
    console = Console(width=width, height=height, file=io.StringIO(), force_terminal=True, record=True,
                      legacy_windows=False, safe_box=False)
    console.print(app.screen._compositor.render_update(full=True, screen_stack=app._background_screens))
    return console.export_text()


def flat(text: str) -> str:
    """The screen's text with box borders and line breaks gone, so a sentence wrapped in a panel reads whole."""
    return " ".join(re.sub(r"[│╭╮╰╯─▊▎▌▋█▔▁▀▄]", " ", text).split())


def toasts(app) -> str:
    """The notices on the screen (bottom right, each line after its ▌ edge), read as one text."""
    return " ".join(" ".join(line.split("▌")[-1].strip(" │╯─").split()) for line in screen_text(app).splitlines()
                    if "▌" in line)


async def notice(pilot, text: str) -> None:
    await until(pilot, lambda: text in toasts(pilot.app), what=f"the notice {text!r}")


async def until(pilot, predicate, timeout: float = 20.0, what: str = ""):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        await pilot.pause(0.1)
    raise AssertionError(f"the screen never showed {what or 'it'}:\n{screen_text(pilot.app)}")


PANELS = ("#tree", "#detail", "#graph", "#vitals", "#events", "#confirm", "#prompt")


def readings(app) -> list[str]:
    """The whole screen as flat text, and each panel's own part of it (a line wrapped inside a panel of one
    column reads whole only there)."""
    lines = screen_text(app).splitlines()
    texts = [flat("\n".join(lines))]
    for selector in PANELS:
        for widget in app.screen.query(selector):
            r = widget.region
            texts.append(flat("\n".join(line[r.x:r.x + r.width] for line in lines[r.y:r.y + r.height])))
    return texts


async def shows(pilot, *texts: str, timeout: float = 20.0) -> None:
    await until(pilot, lambda: all(any(t in text for text in readings(pilot.app)) for t in texts), timeout, repr(texts))


async def select(pilot, app, path: str) -> None:
    tree = app.screen.query_one(SupervisionTree)
    await until(pilot, lambda: any(n.data == path for n in tree._tree_nodes.values()), what=path)
    tree.move_cursor(next(n for n in tree._tree_nodes.values() if n.data == path))
    await pilot.pause()


def tree_paths(app) -> set[str]:
    return {node.data for node in app.screen.query_one(SupervisionTree)._tree_nodes.values() if node.data}


@pytest.mark.timeout(150)
async def test_a_newcomer_at_80x24_kills_filters_grows_pauses_and_links(tmp_path):
    with running_network(load_topology(), tmp_path) as network:
        write_run_file(network)
        app = NeuroxApp(Endpoints.from_data_dir(str(tmp_path)), str(tmp_path))
        async with app.run_test(size=(80, 24), notifications=True) as pilot:
            await shows(pilot, "9 neurons", "L0 ■n0 ← 1 in each", "L3 ■n0 ■n1 ← 3 in each", "restarts/min",
                        "scaling standard, 0 seen")
            # the footer offers every key, within 80 columns
            assert "k kill a add d drain l link u unlink s settings p pause x export / filter q quit" \
                in screen_text(app).splitlines()[-1]
            # kill: the whole question fits, then the notice and the restart count
            await select(pilot, app, "root/L2/L2.n1")
            pid = app.rows["root/L2/L2.n1"].pid
            await pilot.press("k")
            await shows(pilot, f"Kill neuron L2.n1 (pid {pid}) with SIGKILL? Its supervisor starts a replacement.",
                        "Yes (y)", "No (n)")
            await pilot.press("y")
            await notice(pilot, f"killed L2.n1 (pid {pid}); its supervisor replaces it")
            await until(pilot, lambda: re.search(r"restarts/min +1 ", screen_text(app)) is not None,
                        what="one restart in the vitals")
            # the filter applies as you type; Escape gives the keys back to the tree
            await pilot.press("slash")
            assert isinstance(app.focused, EventFilter)
            await pilot.press(*"child_exited")
            await shows(pilot, "child_exited root/L2 L2.n1")
            assert "child_restarted" not in screen_text(app)
            await pilot.press("escape")
            assert isinstance(app.focused, SupervisionTree)
            await select(pilot, app, "root/L2/L2.n0")
            await pilot.press("a")  # a key for the tree now, not a letter for the filter
            await notice(pilot, "added neuron L2.n3 to layer L2")
            await shows(pilot, "10 neurons")
            assert app.screen.query_one(EventFilter).value == "child_exited"
            # Enter keeps the filter and also hands the keys back
            await pilot.press("slash", "ctrl+u", *"reshaped", "enter")
            assert isinstance(app.focused, SupervisionTree)
            await shows(pilot, "reshaped root/reshaper added neuron L2.n3 to layer L2")
            # pause: the row, the panel and the title say so
            await select(pilot, app, "root/L2/L2.n0")
            await pilot.press("p")
            await notice(pilot, "learning paused in every neuron")
            await shows(pilot, "L2.n0 paused pid", "10 neurons, 10 not learning")
            await shows(pilot, f"L2.n0 pid {app.rows['root/L2/L2.n0'].pid} paused")
            await pilot.press("p")
            await notice(pilot, "learning resumed in every neuron")
            await shows(pilot, f"L2.n0 pid {app.rows['root/L2/L2.n0'].pid} learning", "— 10 neurons ")
            assert "paused" not in readings(app)[1], "no row of the tree says paused"
            # a link into one neuron shows in its layer's fan-in at once
            await shows(pilot, "L3 ■n0 ■n1 ← 4 in each")
            await pilot.press("l")
            await shows(pilot, "Add a link (forward only): FROM TO")
            await pilot.press(*"L1.n0 L3.n1", "enter")
            await notice(pilot, "linked L1.n0 → L3.n1")
            await shows(pilot, "L3 ■n0 ■n1 ← 4 5 in")
            # a refused change is said in plain words
            await select(pilot, app, "root/L0/L0.n0")
            await pilot.press("a")
            await notice(pilot, "Could not add a neuron to layer L0")
            # export says where it wrote
            await pilot.press("x")
            path = tmp_path / "exported-topology.toml"
            await notice(pilot, "topology written to")
            assert "L3.n1" in path.read_text()
        done = subprocess.run([sys.executable, "-m", "neurox.cli", "probe", "status", "--json", "--data-dir",
                               str(tmp_path)], capture_output=True, text=True, timeout=30)
        assert "root/L2/L2.n3" in {row["path"] for row in json.loads(done.stdout)}


@pytest.mark.timeout(150)
async def test_at_200x50_the_vitals_read_the_rate_going_through_from_the_first_frame(tmp_path):
    """The samples/s shown match what the end neuron counts over the same time (the first frame read a
    total as a rate: 1,400 samples/s while 180 went through), whatever rate a loaded machine manages; each
    one-second reading may stray from the average on a busy machine, never by the factor of that bug."""
    dataset = load_dataset(None, None)
    topology = load_topology().fit_to_data(dataset.width, dataset.outputs, dataset.classes is not None)
    with running_network(topology, tmp_path) as network:
        write_run_file(network)
        stop = threading.Event()
        stream = Stream(zmq.Context.instance(), network.run_dir, network.topology, dataset, window=2, rate=60.0)
        feeder = threading.Thread(target=stream.run, args=(10 ** 6,), kwargs={"should_stop": stop.is_set})
        feeder.start()
        try:
            app = NeuroxApp(Endpoints.from_data_dir(str(tmp_path)), str(tmp_path))
            async with app.run_test(size=(200, 50)) as pilot:
                shown: list[float] = []
                counted = [(time.monotonic(), neuron_call(network, "L4.n0", "metrics")["samples"])]

                def rate_shown() -> bool:
                    found = re.search(r"samples/s +([\d,]+) ", screen_text(app))
                    if found and (not shown or shown[-1] != float(found[1].replace(",", ""))):
                        shown.append(float(found[1].replace(",", "")))
                    return len(shown) >= 4

                await until(pilot, rate_shown, timeout=40, what="four samples/s readings")
                counted.append((time.monotonic(), neuron_call(network, "L4.n0", "metrics")["samples"]))
                through = (counted[1][1] - counted[0][1]) / (counted[1][0] - counted[0][0])
                assert through > 5 and all(0.25 * through <= rate <= 2.5 * through for rate in shown), \
                    f"{through:.0f} samples/s went through the end neuron; the screen read {shown}"
                # the input scaling MessengerIn applies: its method, the samples it has seen, the features' spread
                scaling = re.search(rf"scaling standard, ([\d,]+) seen; mean \S+, std \S+ over {dataset.width} "
                                    "features", readings(app)[4])  # the vitals panel
                assert scaling, screen_text(app)
                seen = int(scaling[1].replace(",", ""))
                assert 0 < seen <= neuron_call_messenger(network)["inputs"]["count"]
                await select(pilot, app, "root/L2/L2.n0")
                await shows(pilot, "L2.n0 pid", "learning", "msg/s", "missed joins", "weights mean", "proc p50", "flush every")
                await until(pilot, lambda: (m := re.search(r"msg/s ([\d,]+) ", screen_text(app))) and int(m[1]) > 0,
                            what="the selected neuron's messages/s")
        finally:
            stop.set()
            feeder.join(30)
            stream.close()


def neuron_call_messenger(network) -> dict:
    """MessengerIn's own ``scaling`` answer (what ``neurox probe state scaling`` prints)."""
    return call(zmq.Context.instance(), control_endpoint(network.run_dir, "root/messenger_in"), "scaling", 5.0)


class StillApp(NeuroxApp):
    """The app fed by the test, not by a network: what it shows depends on nothing else."""

    def poll_tree(self) -> None:
        pass

    def follow_events(self) -> None:
        pass


def still_rows(uptime: float, samples: int) -> list[ProcessRow]:
    neuron = {"activation": "tanh", "units": 16, "learning_rate": 0.05, "flush_interval_s": 1.0, "state": "awake",
              "state_source": "default", "region": "diamond", "learning": True, "uptime_s": uptime}
    rows = [ProcessRow("root", 0, "supervisor", 9999990, {"strategy": "one_for_one", "restarts_in_period": 0})]
    shape = {"L0": 1, "L1": 2, "L2": 3, "L3": 2, "L4": 1}
    before = None
    for index, (layer, size) in enumerate(shape.items()):
        rows.append(ProcessRow(f"root/{layer}", 1, "supervisor", 9999900 + index, {"strategy": "one_for_one"}))
        inputs = [f"{before}.n{i}" for i in range(shape[before])] if before else ["input"]
        for n in range(size):
            status = {**neuron, "layer": layer, "inputs": inputs, "outputs": ["output"] if layer == "L4" else [],
                      "learning": layer != "L1", "metrics": {"forwards": samples, "samples": samples, "bad_frames": 0,
                                                             "weights": {"mean": 0.01, "std": 0.2,
                                                                         "histogram": [1, 3, 7, 3, 1]},
                                                             "processing": {"p50_s": 5.6234e-05, "p99_s": 0.0031623,
                                                                            "count": samples}}}
            rows.append(ProcessRow(f"root/{layer}/{layer}.n{n}", 2, "worker", 9999000 + 10 * index + n, status))
        before = layer
    rows.append(ProcessRow("root/L2/L2.n3", 2, "worker", "restarting", {}))
    rows.append(ProcessRow("root/messenger_out", 1, "worker", 9999998,
                           {"uptime_s": uptime, "metrics": {"recent_accuracy": 0.91}}))
    return rows


@pytest.mark.timeout(30)
async def test_a_workers_last_messages_after_the_main_screens_widgets_are_gone_change_nothing():
    """At the end the main screen's widgets go before the workers' last messages are handled (a CI run saw
    ``NoMatches: SupervisionTree`` from a snapshot then): they are dropped, the app does not fail."""
    app = StillApp(Endpoints("ipc:///nonexistent/c", "ipc:///nonexistent/e", "ipc:///nonexistent/r"), ".")
    async with app.run_test(size=(80, 24)) as pilot:
        app.post_message(TreeSnapshot(still_rows(100.0, 1000)))
        await pilot.pause()
        await app.screen.query_one(Horizontal).remove()
        app.post_message(TreeSnapshot(still_rows(102.0, 1360)))
        app.post_message(ScalingState({"mode": "standard"}))
        app.post_message(NetworkEvent({"event": "child_restarted", "source": "root/L2", "id": "L2.n3", "t": 0.0}))
        await pilot.pause()
        assert app.rows and "root/L2/L2.n3" in app.rows, "the snapshot was still taken in"
        assert isinstance(app.screen, MainScreen) and not app.screen.query(SupervisionTree)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("size", [(80, 24), (200, 50)])
async def test_the_main_screen_matches_its_snapshot(size, monkeypatch):
    """The layout at both sizes, compared with the SVG kept in tests/snapshots (NEUROX_UPDATE_SNAPSHOTS=1 rewrites
    it after a deliberate change: look at the new file before committing it)."""
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    monkeypatch.setattr("textual.widgets._header.HeaderClock.render", lambda self: Text("12:00:00"))
    app = StillApp(Endpoints("ipc:///nonexistent/c", "ipc:///nonexistent/e", "ipc:///nonexistent/r"), ".")
    async with app.run_test(size=size) as pilot:
        app.post_message(TreeSnapshot(still_rows(100.0, 1000)))
        await pilot.pause()
        app.post_message(TreeSnapshot(still_rows(102.0, 1360)))
        app.post_message(ScalingState({"mode": "standard", "inputs": {"mode": "standard", "count": 1234, "frozen": False,
                                                                      "mean": [-0.5, 0.25, 1.0], "std": [0.5, 1.5, 2.0]}}))
        for event in ({"event": "child_exited", "source": "root/L2", "id": "L2.n3", "t": 0.0,
                       "description": "killed by SIGKILL"},
                      {"event": "reshaped", "source": "root/reshaper", "op": "add_link", "t": 1.0,
                       "result": {"from": "L1.n0", "to": "L3.n1"}}):
            app.post_message(NetworkEvent(event))
        await pilot.pause()
        await select(pilot, app, "root/L1/L1.n0")
        expected = ["samples/s 180", "accuracy 0.91", "restarts/min 0", "L1.n0 pid 9999010 paused", "9 neurons, 2 not learning",
                    "L1.n0 paused pid 9999010", "proc p50 56us p99 3.2ms", "L2 ■n0 ■n1 ■n2 ■n3 ← 2 in each",
                    "00:00:01 reshaped root/reshaper", "linked L1.n0 → L3.n1", "k kill a add d drain",
                    "scaling standard, 1,234 seen; mean -0.5…1, std 0.5…2 over 3 features"]
        if size[1] >= 50:  # the whole tree fits only on the larger screen; the smaller one scrolls it
            expected += ["✗ L2.n3 restarting", "messenger_out pid 9999998"]
        # the event log scrolls to its end once laid out: on a busy machine that can take a few frames
        await until(pilot, lambda: all(any(seen in text for text in readings(app)) for seen in expected), timeout=10,
                    what=f"all of {expected}")
        svg = app.export_screenshot(title="NeuroX")
    snapshot = SNAPSHOTS / f"tui_main_{size[0]}x{size[1]}.svg"
    if os.environ.get("NEUROX_UPDATE_SNAPSHOTS"):
        snapshot.parent.mkdir(exist_ok=True)
        snapshot.write_text(svg)
    assert snapshot.exists(), f"no snapshot yet: run with NEUROX_UPDATE_SNAPSHOTS=1 and look at {snapshot}"
    assert svg == snapshot.read_text(), f"the main screen at {size} changed: compare with {snapshot}"


def test_the_first_frame_counts_no_rate_and_a_repeated_or_replaced_report_makes_no_spike():
    last, rates = {}, {}
    update_rates(last, rates, {"L4.n0": (10.0, 5000)})
    assert rates == {}, "one report is no rate (the first frame read 1,400 samples/s from a total)"
    update_rates(last, rates, {"L4.n0": (12.0, 5360)})
    assert rates == {"L4.n0": 180.0}
    update_rates(last, rates, {"L4.n0": (12.0, 5360)})
    assert rates == {"L4.n0": 180.0}, "the same report seen twice keeps its rate"
    update_rates(last, rates, {"L4.n0": (0.5, 20)})
    assert rates == {}, "a replacement starts its count anew"
    update_rates(last, rates, {})
    assert last == {}


def test_the_scaling_line_says_the_method_the_samples_seen_and_the_spread_of_the_features():
    inputs = {"mode": "standard", "count": 12345, "frozen": False, "mean": [0.5, -2.0, 3.25], "std": [1.0, 0.01, 40.0]}
    assert scaling_line({"mode": "standard", "inputs": inputs}) == \
        "standard, 12,345 seen; mean -2…3.2, std 0.01…40 over 3 features"
    frozen = {**inputs, "count": 100, "frozen": True, "mean": [1.0], "std": [2.0]}
    assert scaling_line({"mode": "frozen after 100 samples", "inputs": frozen}) == \
        "frozen after 100 samples, 100 seen (frozen); mean 1, std 2 over 1 feature"
    assert scaling_line({"mode": "none", "inputs": {**inputs, "count": 0}}) == "none, 0 seen"  # no statistics yet
    assert scaling_line(None).startswith("not known") and scaling_line({"mode": "x"}).startswith("not known")


def test_docs_list_every_key_the_footer_offers():
    documented = set(re.findall(r"^\| `([^`]+)` \|", (Path(__file__).parent.parent / "docs/tui.md").read_text(), re.M))
    keys = {binding[0] if isinstance(binding, tuple) else binding.key for binding in NeuroxApp.BINDINGS}
    keys = {"/" if key == "slash" else key for key in keys}
    missing = keys - documented
    assert not missing, f"docs/tui.md does not list {sorted(missing)}"
    assert {"escape", "enter", "ctrl+p"} <= documented


def test_the_observer_core_does_not_import_textual():
    done = subprocess.run([sys.executable, "-c", "import sys, neurox.tui._observer, neurox.tui._words, neurox.tui; "
                           "sys.exit('textual' in sys.modules)"], timeout=60)
    assert done.returncode == 0


def test_a_rows_layer_is_found_under_the_root_and_under_a_region():
    """Add-neuron and settings act on the selected row's layer: a neuron's, or a layer supervisor's own;
    a region's supervisor, the root and its workers stand for no layer."""
    rows = [ProcessRow("root", 0, "supervisor", 1, {}), ProcessRow("root/L0", 1, "supervisor", 2, {}),
            ProcessRow("root/L0/L0.n0", 2, "worker", 3, {"layer": "L0"}),
            ProcessRow("root/pfc", 1, "supervisor", 4, {}), ProcessRow("root/pfc/pfc", 2, "supervisor", 5, {}),
            ProcessRow("root/pfc/pfc/pfc.n0", 3, "worker", "restarting", {}),
            ProcessRow("root/reshaper", 1, "worker", 6, {}), ProcessRow("root/modulator.pfc", 1, "worker", 7, {})]
    layers = {row.path: layer_of(row, rows) for row in rows}
    assert layers == {"root": None, "root/L0": "L0", "root/L0/L0.n0": "L0", "root/pfc": None, "root/pfc/pfc": "pfc",
                      "root/pfc/pfc/pfc.n0": "pfc", "root/reshaper": None, "root/modulator.pfc": None}


@pytest.mark.timeout(180)
async def test_the_tui_stays_responsive_with_200_neurons(tmp_path):
    from neurox.bench._scale import sparse_topology
    with running_network(sparse_topology(200, 4, 3, 2), tmp_path) as network:
        write_run_file(network)
        app = NeuroxApp(Endpoints.from_data_dir(str(tmp_path)), str(tmp_path))
        async with app.run_test(size=(160, 50)) as pilot:
            await until(pilot, lambda: len([p for p in tree_paths(app) if "." in p]) >= 200, timeout=120)
            worst = 0.0
            for _ in range(10):  # key presses are handled promptly while snapshots keep coming
                started = time.monotonic()
                await pilot.press("down")
                worst = max(worst, time.monotonic() - started)
                await asyncio.sleep(0.3)
            assert worst < 5.0, f"a key press took {worst:.2f} s"
