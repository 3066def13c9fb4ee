#!/usr/bin/env bash
# Heap profile of the agent at 10,000 mailboxes over 1,000 apps (dhat): the release build with
# the dhat-heap feature, against the simulator in its own process, until every check has run
# (the first Graph reads are spread two a second: 500 s for 1,000 apps) and a few scrapes; then
# the top allocation sites live at the heap's peak. The release binary is the plain build again
# afterwards, so that other benchmarks do not run the profiling one.
# Usage: bench/heap.sh [MAILBOXES] [SECONDS] [SIMULATE OPTIONS...]    (defaults 10000 and 600)
#   bench/heap.sh 10000 120 --per-app 1 --tenant-per-app --health-schedule 60s   (a shape)
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-10000}
secs=${2:-600}
shift $(( $# > 2 ? 2 : $# ))
work=target/bench/heap-$(date -u +%Y%m%d-%H%M%S)
mkdir -p "$work"
# The simulator from a plain build (it must not be slowed down, nor write a profile).
cargo build --release --locked
cp target/release/smtp-oauth-exporter "$work/simulator"
cargo build --release --locked --features dhat-heap
cp target/release/smtp-oauth-exporter "$work/agent-dhat"
"$work/simulator" simulate --mailboxes "$n" --config-out "$work/sim" --startup-spread 30s \
  --max-concurrent-checks 200 --log.level warn "$@" >"$work/sim.log" 2>&1 &
sim=$!
trap 'kill $sim 2>/dev/null || true' EXIT
for _ in $(seq 100); do [ -f "$work/sim/agent.yml" ] && break; sleep 0.2; done
sleep 1
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
(cd "$work" && ./agent-dhat --config.file sim/agent.yml --web.listen-address "127.0.0.1:$port" \
  --log.level warn >agent.log 2>&1) &
agent=$!
sleep "$secs"
for _ in 1 2 3; do
  curl -s -o /dev/null -H 'Accept-Encoding: gzip' "http://127.0.0.1:$port/metrics"
  sleep 2
done
kill -TERM "$(pgrep -f "agent-dhat --config.file sim/agent.yml" | head -n 1)"
wait "$agent" || true
tail -n 3 "$work/agent.log"
python3 bench/dhat_top.py "$work/dhat-heap.json" 12
# Leave target/release with the plain build (the other benchmarks run it).
cargo build --release --locked
