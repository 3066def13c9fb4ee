#!/usr/bin/env bash
# Soak test (not part of the default test run): the release agent against the simulator with
# 1,000 mailboxes and a moving mix of faults for an hour (--duration SECONDS to change it),
# sampling RSS and open files every minute; fails if either grows after the warm-up.
set -euo pipefail
cd "$(dirname "$0")/.."
exec python3 bench/soak.py "$@"
