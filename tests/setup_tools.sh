#!/usr/bin/env bash
# Tools the deployment tests drive for real (tests/test_systemd*.py, tests/test_ansible*.py,
# tests/test_netns*.py): systemd-analyze, systemd-nspawn, mmdebstrap, nsenter and ip (network
# namespaces, veth, bridge) and openssl (tests/test_ext_webhook_tls.py) from Debian's packages; ansible-core and ansible-lint from PyPI into the
# project's virtual environment.
#
# Idempotent and quiet: it installs only what is missing, so `make test` can call it every time.
# Usage: tests/setup_tools.sh [VENV]   (default: .venv next to this script's parent)
set -euo pipefail

here="$(cd "$(dirname "$0")/.." && pwd)"
venv="${1:-$here/.venv}"

missing=()
command -v systemd-analyze >/dev/null || missing+=(systemd)
command -v systemd-nspawn >/dev/null || missing+=(systemd-container)
command -v mmdebstrap >/dev/null || missing+=(mmdebstrap)
command -v nsenter >/dev/null || missing+=(util-linux)
command -v ip >/dev/null || missing+=(iproute2)
command -v openssl >/dev/null || missing+=(openssl)   # a test certificate for the webhook's HTTPS
if ((${#missing[@]})); then
    if [[ $(id -u) -ne 0 ]]; then
        echo "setup_tools.sh: need root to install ${missing[*]} with apt-get" >&2
        exit 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if ! "$venv/bin/python" -c 'import ansible, ansiblelint' 2>/dev/null \
        || [[ ! -x "$venv/bin/ansible-playbook" || ! -x "$venv/bin/ansible-lint" ]]; then
    "$venv/bin/pip" install --quiet 'ansible-core>=2.17,<2.19' 'ansible-lint>=24.7'
fi

# ---- promtool (tests/test_prometheus.py), appended by the operations work: keep this block last ----------
# Only Prometheus's promtool, from Debian's prometheus package, unpacked into the venv. Installing the
# package itself would pull its web assets and start a Prometheus server from its maintainer script.
if [[ ! -x "$venv/bin/promtool" ]]; then
    promtool_tmp="$(mktemp -d)"
    chmod 0755 "$promtool_tmp"  # apt downloads as its own user
    if ! (cd "$promtool_tmp" && apt-get download -qq prometheus >/dev/null 2>&1); then
        apt-get update -qq
        (cd "$promtool_tmp" && apt-get download -qq prometheus >/dev/null 2>&1)
    fi
    dpkg-deb -x "$promtool_tmp"/prometheus_*.deb "$promtool_tmp/root"
    install -m 0755 "$promtool_tmp/root/usr/bin/promtool" "$venv/bin/promtool"
    rm -rf "$promtool_tmp"
fi
