"""Every control socket of a host over TCP under CURVE, through its node agent's control gateway
(neurox/ops/_gateway.py): `neurox probe --remote` walks the tree and `neurox reshape --remote` changes it
with only the gateway's endpoint and a client's keys; a client without an allowed key gets nothing."""
import json
import random
import re
import shutil
import signal
import subprocess
import sys

import pytest
import zmq

from neurox.cli import main
from neurox.neuron import GatewayClient
from neurox.ops._gateway import target_of
from neurox.runtime import ControlError, CurveKeys

pytestmark = pytest.mark.timeout(150)


def node_with_clients(tmp_path) -> str:
    """A one-host network with [hosts] (so its agent serves the gateway), an allowed admin and a mallory."""
    port = random.randrange(20000, 32700, 100)  # below the kernel's ephemeral ports
    layers = "".join(f'[[layer]]\nname = "L{i}"\nneurons = {n}\nhost = "h1"\n' for i, n in enumerate((1, 2, 1)))
    (tmp_path / "topology.toml").write_text(f'name = "one"\ninput_width = 4\n[defaults]\nunits = 2\n'
                                            f'[hosts]\nh1 = "127.0.0.1:{port}"\n{layers}')
    for directory, name in (("keys", "h1"), ("admin", "admin"), ("mallory", "mallory")):
        assert main(["keys", "--dir", str(tmp_path / directory), name]) == 0
    for allowed, key in (("keys", "h1"), ("keys", "admin"), ("admin", "h1"), ("mallory", "h1")):
        shutil.copy(tmp_path / ("keys" if key == "h1" else key) / f"{key}.key", tmp_path / allowed / "allowed")
    (tmp_path / "node.toml").write_text('name = "one"\ndata_dir = "data"\ntopology = "topology.toml"\nhost = "h1"\n'
                                        'keys_dir = "keys"\n[service]\nenabled = false\n')
    return str(tmp_path / "node.toml")


def start_agent(tmp_path, attempts: int = 3) -> tuple[subprocess.Popen, str]:
    """`neurox node` up, and its gateway's endpoint; a port another process holds is tried again elsewhere
    (the ports are random), any other failure shows everything the agent printed."""
    for attempt in range(attempts):
        agent = subprocess.Popen([sys.executable, "-m", "neurox.cli", "node", "--config", node_with_clients(tmp_path)],
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        printed = []
        for line in agent.stdout:
            printed.append(line)
            if ": up;" in line:
                return agent, re.search(r"gateway (tcp://\S+)", line)[1]
        agent.wait(60)
        agent.stdout.close()
        if "in use" not in "".join(printed) or attempt == attempts - 1:
            pytest.fail(f"neurox node did not come up (exit {agent.returncode}):\n{''.join(printed)}")
        shutil.rmtree(tmp_path / "data", ignore_errors=True)
    raise AssertionError("unreachable")


def cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "neurox.cli", *args], capture_output=True, text=True, timeout=timeout)


def test_a_path_names_a_local_process_or_is_refused(tmp_path):
    (tmp_path / "root.L2.ctl").touch()
    assert target_of(str(tmp_path), "root/L2") == f"ipc://{tmp_path}/root.L2.ctl"
    for bad in ("root/../x", "../root", "", "root//L2", 7, "root/L2/"):
        with pytest.raises(ValueError):
            target_of(str(tmp_path), bad)
    with pytest.raises(LookupError):
        target_of(str(tmp_path), "root/L9")


def test_a_remote_client_walks_and_reshapes_and_mallory_gets_nothing(tmp_path, no_stray_processes):
    agent, gateway = start_agent(tmp_path)
    try:
        admin = ["--remote", gateway, "--keys", str(tmp_path / "admin"), "--server", "h1"]
        local = cli("probe", "tree", "--direct", "--data-dir", str(tmp_path / "data"))
        remote = cli("probe", "tree", *admin)
        assert remote.returncode == 0 and remote.stdout.splitlines()[0].startswith("root [supervisor]"), remote
        names = lambda out: [line.split(" pid ")[0] for line in out.splitlines()]  # noqa: E731
        assert names(remote.stdout) == names(local.stdout) and "    L1.n1 [worker]" in names(remote.stdout)
        status = json.loads(cli("probe", "status", "--json", *admin).stdout)
        assert all(row["status"]["state"] == "running" for row in status), status
        assert cli("probe", "ping", "root/L1/L1.n0", *admin).stdout.startswith("pong from root/L1/L1.n0")
        added = json.loads(cli("reshape", *admin, "add-neuron", "L1").stdout)
        assert added["layer"] == "L1" and "    L1.n2 [worker]" in names(cli("probe", "tree", *admin).stdout)
        assert '{ name = "L1", neurons = 3' in cli("topology", "export", *admin).stdout
        # mallory's key is not on the host's allow-list: no answer at all, nothing forwarded
        keys = CurveKeys.load(str(tmp_path / "admin"), "admin")
        own = GatewayClient(zmq.Context.instance(), gateway, "gateway", keys.client_options(keys.server_key("h1")))
        try:
            before = own.call("status")["forwarded"]
            refused = cli("probe", "tree", "--remote", gateway, "--keys", str(tmp_path / "mallory"), "--key-name",
                          "mallory", "--server", "h1", "--timeout", "1")
            assert refused.returncode == 3 and "did not answer" in refused.stdout, refused
            assert own.call("status")["forwarded"] == before
            assert own.call("endpoints")["host"] == "h1"
            shape = (tmp_path / "data" / "topology.json").read_bytes()
            for wrong in ({"name": "x"}, "L1", {**json.loads(shape), "hosts": {"h9": "127.0.0.1:7600"}}):
                with pytest.raises(ControlError, match="bad_request"):  # the live shape is the reshaper's to send
                    own.call("adopt_topology", topology=wrong)
            assert (tmp_path / "data" / "topology.json").read_bytes() == shape, "a refused shape changes nothing"
            nowhere = GatewayClient(zmq.Context.instance(), gateway, "root/L7", own.client.curve)
            try:
                with pytest.raises(ControlError, match="not_found"):
                    nowhere.call("ping")
            finally:
                nowhere.close()
        finally:
            own.close()
        missing = cli("probe", "tree", "--remote", gateway)
        assert missing.returncode == 2 and "--keys" in missing.stdout
    finally:
        agent.send_signal(signal.SIGTERM)
        agent.wait(60)
        agent.stdout.close()
    assert agent.returncode == 0


async def test_the_tui_watches_and_reshapes_a_remote_host(tmp_path, no_stray_processes):
    from neurox.ops._gateway import Remote
    from neurox.tui import Endpoints
    from neurox.tui.app import NeuroxApp
    from test_tui import notice, select, shows, tree_paths, until

    agent, gateway = start_agent(tmp_path)
    try:
        endpoints = Endpoints.through(Remote(gateway, str(tmp_path / "admin"), "admin", "h1"))
        app = NeuroxApp(endpoints, str(tmp_path / "exports"))
        async with app.run_test(size=(120, 40), notifications=True) as pilot:
            await shows(pilot, "4 neurons", "L1 ■n0 ■n1 ← 1 in each", "scaling standard, 0 seen")
            assert {"root/L1/L1.n0", "root/L1/L1.n1", "root/reshaper"} <= tree_paths(app)
            assert "MiB" not in app.screen.query_one("#tree").render_line(1).text, "no local memory for remote pids"
            await select(pilot, app, "root/L1/L1.n0")
            await pilot.press("k")
            await notice(pilot, "a remote host's neurons cannot be killed from here")
            await pilot.press("a")
            await notice(pilot, "added neuron L1.n2 to layer L1")
            await shows(pilot, "5 neurons")
            await until(pilot, lambda: any(e.get("event") == "reshaped" for e in app.screen.query_one("#events").kept),
                        what="the reshape on the remote bus")
    finally:
        agent.send_signal(signal.SIGTERM)
        agent.wait(60)
        agent.stdout.close()
    assert agent.returncode == 0
