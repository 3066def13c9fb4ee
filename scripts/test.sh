#!/usr/bin/env bash
# The test command: installs what the suites need (promtool from Debian's prometheus package,
# Debian's chromium for the status page test, Python's aiosmtpd for the interoperability test),
# then runs the unit and integration tests. A missing tool makes its test fail loudly; nothing
# is skipped.
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

# Debian packages: command → package.
missing=()
command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v amtool >/dev/null 2>&1 || missing+=(prometheus-alertmanager)
if [ ${#missing[@]} -gt 0 ]; then
  echo "== installing ${missing[*]} (Debian packages)"
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# aiosmtpd in a virtual environment under target/ (a distribution's own Python may refuse
# pip installs, PEP 668), unless the python3 on PATH already has it.
PY=python3
if ! "$PY" -c 'import aiosmtpd' >/dev/null 2>&1; then
  venv=target/test-venv
  if [ ! -x "$venv/bin/python" ]; then
    echo "== creating $venv for aiosmtpd (independent SMTP server for the interoperability test)"
    if ! python3 -m venv "$venv"; then
      as_root apt-get update -qq
      DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends python3-venv >/dev/null
      python3 -m venv "$venv"
    fi
  fi
  "$venv/bin/python" -c 'import aiosmtpd' >/dev/null 2>&1 \
    || "$venv/bin/python" -m pip install --quiet --disable-pip-version-check 'aiosmtpd==1.4.6'
  PY="$PWD/$venv/bin/python"
fi
export SMTP_OAUTH_TEST_PYTHON="$PY"
promtool --version | head -n 1
chromium --version 2>/dev/null | head -n 1
"$PY" -c 'import aiosmtpd; print("aiosmtpd", aiosmtpd.__version__)'

echo "== cargo test"
cargo test --locked --all-targets
