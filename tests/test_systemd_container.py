"""The node agent's unit under a real systemd, deployed by the real Ansible playbooks.

PID 1 on these machines is not systemd, so a Debian root is booted with ``systemd-nspawn --boot``
(see shared/notes/real-systemd-here.md). Inside it, ``ansible-playbook`` runs against localhost
with a local connection: deploy (twice: the second run changes nothing), then the unit is watched
through ``systemctl`` -- active once READY=1 came, restarted by systemd after a SIGKILL and after a
watchdog timeout, upgraded (with a reshaped topology) one host at a time, and stopped politely by
the stop playbook. The host is deployed as host ``h1`` of a topology with a ``[hosts]`` table, so the
role's CURVE key tasks run for real and the agent serves its control socket on TCP under CURVE, inside
the unit's sandbox.

The root (Debian + systemd + Python, a wheelhouse of neurox's dependencies and a venv with
ansible-core, all pinned to what this project's .venv has) takes about a minute to build, so it is
cached under ``/var/tmp/neurox-nspawn-root/<key>``, the key a hash of everything that goes in. The
container runs with ``--volatile=overlay``: whatever a test changes lives in memory and is gone at
shutdown, so the cached root is never altered. The project itself (its wheel, the playbooks and the
unit) is built fresh and bound in read-only for every run.
"""
import base64
import fcntl
import hashlib
import importlib.metadata
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
import zipfile

import psutil
import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = pathlib.Path(__file__).resolve().parent.parent
ROOT_CACHE = pathlib.Path("/var/tmp/neurox-nspawn-root")
SUITE = "bookworm"
PACKAGES = ("systemd", "systemd-sysv", "dbus", "python3", "python3-venv", "python3-apt", "python3-packaging")
RECIPE = 1  # bump when the build steps below change
NETWORK = "diamond"
UNIT = f"neurox-node@{NETWORK}.service"
DATA_DIR = f"/var/lib/neurox/{NETWORK}"
VENV = "/opt/neurox/venv"
CLEAN_ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8",
             "HOME": "/root"}

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="booting a container needs root")


# -- the cached root -------------------------------------------------------------------------------

def pinned_closure(requirements: list[str]) -> dict[str, str]:
    """``requirements`` and everything they need, pinned to the versions installed here."""
    pins: dict[str, str] = {}
    seen: set[tuple[str, str]] = set()
    todo = [(Requirement(r), "") for r in requirements]
    while todo:
        requirement, extra = todo.pop()  # ``extra``: the one of its parent's extras that asked for it
        if requirement.marker is not None and not requirement.marker.evaluate({"extra": extra}):
            continue
        name = canonicalize_name(requirement.name)
        distribution = importlib.metadata.distribution(name)
        pins[name] = distribution.version
        for wanted in {"", *requirement.extras} - {e for n, e in seen if n == name}:
            seen.add((name, wanted))
            todo.extend((Requirement(r), wanted) for r in distribution.requires or [])
    return pins


def root_recipe() -> dict:
    with open(REPO / "pyproject.toml", "rb") as f:
        dependencies = tomllib.load(f)["project"]["dependencies"]
    return {"recipe": RECIPE, "suite": SUITE, "packages": PACKAGES, "neurox": pinned_closure(dependencies),
            "ansible": pinned_closure(["ansible-core"])}


def run_logged(cmd: list[str], log, timeout: float, **kwargs) -> None:
    log.write(f"$ {' '.join(cmd)}\n")
    log.flush()
    subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, timeout=timeout, check=True, **kwargs)


def build_root(path: pathlib.Path, recipe: dict, log) -> None:
    """Debian with systemd, a wheelhouse at /opt/wheelhouse and ansible-core in /opt/ansible."""
    run_logged(["mmdebstrap", "--variant=minbase", f"--include={','.join(recipe['packages'])}", recipe["suite"],
                str(path)], log, timeout=600)
    wheelhouse = path / "opt" / "wheelhouse"
    pins = {**recipe["neurox"], **recipe["ansible"]}
    run_logged([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", str(wheelhouse),
                *(f"{name}=={version}" for name, version in sorted(pins.items()))], log, timeout=600)
    chroot = ["chroot", str(path)]
    run_logged([*chroot, "python3", "-m", "venv", "/opt/ansible"], log, timeout=120, env=CLEAN_ENV)
    run_logged([*chroot, "/opt/ansible/bin/pip", "install", "--quiet", "--no-index", "--find-links", "/opt/wheelhouse",
                *(f"{name}=={version}" for name, version in sorted(recipe["ansible"].items()))],
               log, timeout=600, env=CLEAN_ENV)


def cached_root(log) -> pathlib.Path:
    """The root for this recipe, built once; roots of other recipes are removed."""
    recipe = root_recipe()
    key = hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:16]
    ROOT_CACHE.mkdir(parents=True, exist_ok=True)
    with open(ROOT_CACHE / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        root = ROOT_CACHE / key
        if not root.is_dir():
            for stale in ROOT_CACHE.iterdir():  # other recipes' roots and nspawn's ".#ROOT.lck" files
                if stale.is_dir():
                    shutil.rmtree(stale, ignore_errors=True)
                elif stale.name != ".lock":
                    stale.unlink(missing_ok=True)
            partial = ROOT_CACHE / f"{key}.partial"
            build_root(partial, recipe, log)
            partial.rename(root)
    return root


# -- the container ---------------------------------------------------------------------------------

class Container:
    """A booted systemd-nspawn container; :meth:`run` executes a command inside it with nsenter.

    It has a network namespace of its own (``--private-network``: loopback only), so the agent's
    TCP ports never meet whatever else runs on this machine."""

    def __init__(self, root: pathlib.Path, binds: dict[str, str], log):
        self.name = f"nx-test-{os.getpid()}"
        self.recaps: list[dict[str, int]] = []
        self.proc = subprocess.Popen(
            ["systemd-nspawn", "--directory", str(root), "--boot", "--register=no", "--keep-unit",
             "--volatile=overlay", "--private-network", f"--machine={self.name}",
             *(f"--bind-ro={src}:{dst}" for src, dst in binds.items())],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            self.init_pid = self._wait_for_boot(90.0)
        except BaseException:
            self.shutdown()
            raise

    def _wait_for_boot(self, timeout: float) -> int:
        """The host pid of the container's systemd, once it reports the boot finished."""
        deadline = time.monotonic() + timeout
        state = "not started"
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, "systemd-nspawn exited while booting (see build.log)"
            init = [p for p in psutil.Process(self.proc.pid).children() if p.name() == "systemd"]
            if init:
                self.init_pid = init[0].pid
                state = self.run("systemctl", "is-system-running", "--wait", check=False,
                                 timeout=max(1.0, deadline - time.monotonic())).stdout.strip()
                if state in ("running", "degraded"):
                    return self.init_pid
            time.sleep(0.1)
        raise AssertionError(f"the container did not boot within {timeout} s (systemd: {state!r})")

    def run(self, *cmd: str, input: str | None = None, check: bool = True, timeout: float = 120.0):
        done = subprocess.run(["nsenter", "--target", str(self.init_pid), "--all", "env", "-i",
                               *(f"{k}={v}" for k, v in CLEAN_ENV.items()), *cmd],
                              input=input, capture_output=True, text=True, timeout=timeout)
        if check and done.returncode != 0:
            raise AssertionError(f"{' '.join(cmd)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}")
        return done

    def show(self, *properties: str) -> dict[str, str]:
        out = self.run("systemctl", "show", UNIT, *(f"--property={p}" for p in properties)).stdout
        return dict(line.split("=", 1) for line in out.splitlines())

    def wait_for(self, condition, what: str, timeout: float = 30.0) -> dict[str, str]:
        """Poll ``systemctl show`` until ``condition(properties)`` holds (systemd has no event to
        wait on from outside the container's bus)."""
        deadline = time.monotonic() + timeout
        while True:
            properties = self.show("ActiveState", "SubState", "MainPID", "NRestarts", "StatusText", "Result")
            if condition(properties):
                return properties
            assert time.monotonic() < deadline, f"waited {timeout} s for {what}; unit: {properties}"
            time.sleep(0.2)

    def playbook(self, name: str, *extra: str) -> dict[str, int]:
        """Run ansible/``name`` inside the container; the PLAY RECAP counts for localhost."""
        done = self.run("/opt/ansible/bin/ansible-playbook", "-i", "/opt/test/inventory.yml",
                        f"/opt/neurox-src/ansible/{name}", *extra, check=False, timeout=300)
        if done.returncode != 0:
            journal = self.run("journalctl", "--unit", UNIT, "--no-pager", "--output=cat", check=False).stdout
            raise AssertionError(f"{name} failed:\n{done.stdout[-6000:]}\n{done.stderr[-3000:]}\n"
                                 f"the unit's journal:\n{journal[-4000:]}")
        recap = re.search(r"^localhost\s*:\s*(.*)$", done.stdout, re.MULTILINE).group(1)
        return {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", recap)}

    def ask(self) -> dict:
        done = self.run(f"{VENV}/bin/neurox", "ask", "--text", "health check", "--data-dir", DATA_DIR)
        return json.loads(done.stdout.splitlines()[-1])

    def python(self, code: str) -> str:
        return self.run(f"{VENV}/bin/python", "-c", code).stdout.strip()

    def shutdown(self) -> None:
        """Power the container off (SIGTERM to nspawn halts it cleanly), SIGKILL if it hangs."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, 9)
                self.proc.wait(10)


def build_wheel(out: pathlib.Path) -> pathlib.Path:
    """A wheel of the project as it is in this work tree."""
    source = out / "src"
    shutil.copytree(REPO / "neurox", source / "neurox", ignore=shutil.ignore_patterns("__pycache__", "*.nb?"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", str(out),
                    str(source)], check=True, timeout=300, capture_output=True)
    shutil.rmtree(source)
    (wheel,) = out.glob("neurox-*.whl")
    return wheel


def marked_copy(wheel: pathlib.Path, out: pathlib.Path, marker: str) -> pathlib.Path:
    """A different build of the same version: ``wheel`` with ``# marker`` appended to
    neurox/__init__.py and its RECORD line updated (a second pip build would take 20 s more)."""
    target = out / wheel.name
    with zipfile.ZipFile(wheel) as src, zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as dst:
        init = src.read("neurox/__init__.py") + f"# {marker}\n".encode()
        digest = base64.urlsafe_b64encode(hashlib.sha256(init).digest()).rstrip(b"=").decode()
        for item in src.infolist():
            data = init if item.filename == "neurox/__init__.py" else src.read(item.filename)
            if item.filename.endswith(".dist-info/RECORD"):
                data = re.sub(rb"^neurox/__init__\.py,.*$", f"neurox/__init__.py,sha256={digest},{len(init)}".encode(),
                              data, flags=re.MULTILINE)
            dst.writestr(item, data)
    return target


INVENTORY = """\
neurox_nodes:
  hosts:
    localhost:
      ansible_connection: local
      ansible_python_interpreter: /usr/bin/python3
      neurox_host_name: h1
      neurox_address: 127.0.0.1
  vars:
    neurox_network: {network}
    neurox_package: /opt/build/{wheel}
    neurox_topology: /opt/test/topology.toml
    neurox_pip_extra_args: --no-index --find-links /opt/wheelhouse
"""


def placed_on_h1(toml: str) -> str:
    """The bundled diamond with every layer on host h1 at 127.0.0.1."""
    toml = re.sub(r'(name = "L\d")\n', r'\1\nhost = "h1"\n', toml)
    return toml.replace("[output]", '[hosts]\nh1 = "127.0.0.1"\n\n[output]')


@pytest.fixture(scope="module")
def work():
    """The module's scratch directory (keys, builds, configs, data, sockets), removed at its end."""
    with tempfile.TemporaryDirectory(prefix="nx-nspawn-") as tmp:
        yield pathlib.Path(tmp)


@pytest.fixture(scope="module")
def host(work):
    """A booted container with the network deployed by deploy.yml; ``host.recaps`` holds the recaps
    of the first and second run."""
    for tool in ("mmdebstrap", "systemd-nspawn", "nsenter"):
        assert shutil.which(tool), f"{tool} is missing: run tests/setup_tools.sh"
    with open(work / "build.log", "w") as log:
        root = cached_root(log)
        test_dir, build, build2 = work / "test", work / "build", work / "build2"
        for d in (test_dir, build, build2):
            d.mkdir()
        wheel = build_wheel(build)
        marked_copy(wheel, build2, "upgraded build")
        (test_dir / "inventory.yml").write_text(INVENTORY.format(network=NETWORK, wheel=wheel.name))
        diamond = placed_on_h1((REPO / "neurox" / "neuron" / "diamond.toml").read_text())
        (test_dir / "topology.toml").write_text(diamond)
        (test_dir / "reshaped.toml").write_text(diamond.replace("neurons = 3", "neurons = 4"))
        container = Container(root, {str(REPO): "/opt/neurox-src", str(build): "/opt/build",
                                     str(build2): "/opt/build2", str(test_dir): "/opt/test"}, log)
        try:
            container.recaps = [container.playbook("deploy.yml"), container.playbook("deploy.yml")]
            yield container
        finally:
            container.shutdown()
    assert not psutil.pid_exists(container.init_pid) or psutil.Process(container.init_pid).status() == "zombie"


# -- the tests, in the order of a deployment's life ------------------------------------------------

@pytest.mark.timeout(900)  # a first run builds the cached root (about a minute with a warm pip cache)
def test_deploy_converges_and_a_second_run_changes_nothing(host):
    first, second = host.recaps
    assert first["failed"] == 0 and first["changed"] > 0, first
    assert second["failed"] == 0 and second["changed"] == 0, second


@pytest.mark.timeout(120)
def test_the_unit_is_active_after_ready_and_the_network_answers(host):
    unit = host.show("Type", "NotifyAccess", "ActiveState", "SubState", "StatusText", "User", "WatchdogUSec",
                     "UnitFileState")
    # Type=notify: systemd reports active only once READY=1 arrived; StatusText is the agent's STATUS=.
    assert unit == {"Type": "notify", "NotifyAccess": "main", "ActiveState": "active", "SubState": "running",
                    "StatusText": f"{NETWORK}@h1: 9/9 neurons alive", "User": "neurox", "WatchdogUSec": "30s",
                    "UnitFileState": "enabled"}
    assert host.ask()["ok"]
    keys = f"/etc/neurox/{NETWORK}/keys"
    modes = host.run("stat", "--format=%a %U:%G", f"/run/neurox/{NETWORK}", DATA_DIR, keys, f"{keys}/h1.key_secret",
                     f"{keys}/allowed/h1.key")
    assert modes.stdout.split("\n")[:5] == ["700 neurox:neurox", "700 neurox:neurox", "750 root:neurox",
                                            "640 root:neurox", "640 root:neurox"]


CURVE_PING = """
import zmq
from neurox.runtime import ControlClient, ControlError, CurveKeys
keys = CurveKeys.load("/etc/neurox/diamond/keys", "h1")
for curve in (None, keys.client_options(keys.server_key("h1"))):
    client = ControlClient(zmq.Context.instance(), "tcp://127.0.0.1:7600", 2.0, curve=curve)
    try:
        print(client.call("ping"))
    except ControlError as exc:
        print(exc.error)
    client.close()
"""


@pytest.mark.timeout(120)
def test_the_root_answers_over_tcp_only_with_an_allowed_curve_key(host):
    assert host.python(CURVE_PING).split() == ["timeout", "pong"]


@pytest.mark.timeout(120)
def test_systemd_restarts_the_agent_after_a_sigkill(host):
    before = host.show("MainPID", "NRestarts")
    host.run("systemctl", "kill", "--kill-whom=main", "--signal=SIGKILL", UNIT)
    after = host.wait_for(lambda u: u["ActiveState"] == "active" and int(u["NRestarts"]) > int(before["NRestarts"])
                          and u["MainPID"] not in ("0", before["MainPID"]), "a restart after SIGKILL")
    assert after["StatusText"] == f"{NETWORK}@h1: 9/9 neurons alive"
    assert host.ask()["ok"]


ROOT_PID = ("import zmq; from neurox.cli._discovery import find_network; from neurox.runtime import call; "
            f"print(call(zmq.Context.instance(), find_network({DATA_DIR!r})['control'], 'status')['pid'])")


WATCHDOG_DROP_IN = f"/run/systemd/system/{UNIT}.d/watchdog.conf"


@pytest.mark.timeout(300)
def test_the_watchdog_restarts_an_agent_whose_root_hangs(host):
    # A runtime drop-in (gone at the next boot) rather than a playbook run: quicker, same unit.
    host.run("sh", "-c", f"mkdir -p {os.path.dirname(WATCHDOG_DROP_IN)} && "
                         f"printf '[Service]\\nWatchdogSec=2\\n' > {WATCHDOG_DROP_IN} && "
                         f"systemctl daemon-reload && systemctl restart {UNIT}")
    before = host.show("MainPID", "NRestarts")
    assert host.show("WatchdogUSec") == {"WatchdogUSec": "2s"}
    host.run("sh", "-c", f"kill -STOP {host.python(ROOT_PID)}")
    host.wait_for(lambda u: u["ActiveState"] == "active" and int(u["NRestarts"]) > int(before["NRestarts"])
                  and u["MainPID"] != before["MainPID"], "a restart by the watchdog")
    journal = host.run("journalctl", "--unit", UNIT, "--no-pager", "--output=cat").stdout
    assert "Watchdog timeout" in journal
    host.run("sh", "-c", f"rm {WATCHDOG_DROP_IN} && systemctl daemon-reload && systemctl restart {UNIT}")
    assert host.show("WatchdogUSec", "ActiveState") == {"WatchdogUSec": "30s", "ActiveState": "active"}


@pytest.mark.timeout(300)
def test_rolling_upgrade_with_a_new_topology_installs_the_new_build_and_the_network_answers(host):
    before = host.show("MainPID")
    wheel = host.run("sh", "-c", "ls /opt/build2").stdout.strip()
    host.playbook("upgrade.yml", "-e", f"neurox_package=/opt/build2/{wheel}",
                  "-e", "neurox_topology=/opt/test/reshaped.toml")
    assert "upgraded build" in host.python("import neurox, inspect; print(inspect.getsource(neurox))")
    after = host.show("MainPID", "ActiveState", "StatusText")
    assert after["MainPID"] != before["MainPID"] and after["ActiveState"] == "active"
    assert after["StatusText"] == f"{NETWORK}@h1: 10/10 neurons alive"  # the reshaped network
    journal = host.run("journalctl", "--unit", UNIT, "--no-pager", "--output=cat").stdout
    assert f"neurox node {NETWORK}@h1: stopped\n" in journal  # the drain was a polite stop, not a failure


CLEAN_STORES = ("from neurox.neuron import NeuronStore, Topology, topology_path; "
                f"neurons = Topology.load(topology_path({DATA_DIR!r})).neurons(); "
                f"print(len(neurons), all(NeuronStore({DATA_DIR!r} + '/neurons/' + n).was_clean for n in neurons))")


@pytest.mark.timeout(300)
def test_the_stop_playbook_stops_every_neuron_politely(host):
    host.playbook("stop.yml")
    unit = host.show("ActiveState", "Result", "ExecMainStatus", "UnitFileState")
    assert unit == {"ActiveState": "inactive", "Result": "success", "ExecMainStatus": "0",
                    "UnitFileState": "disabled"}
    assert host.python(CLEAN_STORES) == "10 True"  # every neuron of the reshaped network flushed, marked clean
    assert host.run("test", "-e", f"{DATA_DIR}/run.json", check=False).returncode == 1
