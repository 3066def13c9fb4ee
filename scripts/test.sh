#!/usr/bin/env bash
# The test command: installs what the suites need (promtool from Debian's prometheus package,
# Python's aiosmtpd for the interoperability test), then runs the unit and integration tests.
# A missing tool makes its test fail loudly; nothing is skipped.
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

if ! command -v promtool >/dev/null 2>&1; then
  echo "== installing promtool (Debian package prometheus)"
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends prometheus >/dev/null
fi
if ! python3 -c 'import aiosmtpd' >/dev/null 2>&1; then
  echo "== installing aiosmtpd (independent SMTP server for the interoperability test)"
  python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore 'aiosmtpd==1.4.6'
fi
promtool --version | head -n 1
python3 -c 'import aiosmtpd; print("aiosmtpd", aiosmtpd.__version__)'

echo "== cargo test"
cargo test --locked --all-targets
