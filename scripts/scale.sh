#!/usr/bin/env bash
# Scale smoke test, out of the default run: 1,000 apps and 10,000 mailboxes on one agent against
# the simulator, in release mode. Prints CPU time, scrape size and render time.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --release --locked --test it -- --ignored --nocapture scale
