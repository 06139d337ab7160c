"""The Ansible content in ansible/ passes ``ansible-lint --profile production`` (which also runs
``ansible-playbook --syntax-check`` on every playbook). The playbooks run for real in
tests/test_systemd_container.py."""
import pathlib
import shutil
import subprocess
import sys

import pytest

ANSIBLE_DIR = pathlib.Path(__file__).resolve().parent.parent / "ansible"
BIN = pathlib.Path(sys.executable).parent


@pytest.mark.timeout(300)
def test_ansible_lint_production_profile_passes():
    lint = shutil.which("ansible-lint", path=str(BIN))
    assert lint, "ansible-lint is missing: run tests/setup_tools.sh"
    done = subprocess.run([lint, "--offline", "--profile", "production", "--nocolor", "."], cwd=ANSIBLE_DIR,
                          capture_output=True, text=True, timeout=280)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Profile 'production' was required, and it passed" in done.stdout + done.stderr
