"""The unit files in systemd/ as systemd itself judges them: ``systemd-analyze verify`` and
``systemd-analyze security --offline=true``.

Both run against a scratch root holding the unit where it is installed, the executable its
ExecStart names (``verify`` checks that it exists) and the host's own unit directory (for the
targets it refers to), so they judge the unit file exactly as deployed, without touching the host.
"""
import pathlib
import re
import shutil
import subprocess

import pytest

REPO = pathlib.Path(__file__).resolve().parent.parent
UNIT_FILE = REPO / "systemd" / "neurox-node@.service"
INSTANCE = "neurox-node@diamond.service"
EXPOSURE_THRESHOLD = 1.5
"""``systemd-analyze security`` rates 0 (locked down) to 10 (exposed). The unit scores 0.9 with
systemd 252: what remains is network access (a node serves TCP peers), the real-time clock device
that ProtectClock= allows, and running in the host's root directory."""


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    assert shutil.which("systemd-analyze"), "systemd-analyze is missing: run tests/setup_tools.sh"
    root = tmp_path_factory.mktemp("unit-root")
    (root / "etc/systemd/system").mkdir(parents=True)
    shutil.copy(UNIT_FILE, root / "etc/systemd/system")
    shutil.copytree("/usr/lib/systemd/system", root / "usr/lib/systemd/system", symlinks=True)
    exec_start = re.search(r"^ExecStart=(\S+)", UNIT_FILE.read_text(), re.MULTILINE).group(1)
    executable = root / exec_start.lstrip("/")
    executable.parent.mkdir(parents=True)
    executable.write_text("#!/bin/sh\n")
    executable.chmod(0o755)
    return root


def analyze(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["systemd-analyze", *args], capture_output=True, text=True, timeout=60)


@pytest.mark.timeout(60)
def test_verify_reports_nothing(root):
    done = analyze("verify", f"--root={root}", INSTANCE)
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")


@pytest.mark.timeout(60)
def test_verify_catches_a_broken_unit(root, tmp_path):
    """The check above can fail: a misspelt directive is reported."""
    broken = tmp_path / "root"
    shutil.copytree(root, broken, symlinks=True)
    unit = broken / "etc/systemd/system" / UNIT_FILE.name
    unit.write_text(unit.read_text().replace("ProtectSystem=strict", "ProtectSystm=strict"))
    done = analyze("verify", f"--root={broken}", INSTANCE)
    assert "Unknown key 'ProtectSystm'" in done.stderr


@pytest.mark.timeout(60)
def test_security_scores_the_unit_safe(root):
    done = analyze("security", "--offline=true", f"--root={root}", f"--threshold={int(EXPOSURE_THRESHOLD * 10)}",
                   "--no-pager", INSTANCE)
    score = float(re.search(r"Overall exposure level for \S+: (\d+\.\d+) (\w+)", done.stdout).group(1))
    assert done.returncode == 0 and score <= EXPOSURE_THRESHOLD, done.stdout
    print(f"systemd-analyze security: {INSTANCE} exposure {score}")  # recorded with -s
