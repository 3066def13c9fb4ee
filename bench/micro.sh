#!/usr/bin/env bash
# Micro-benchmarks (criterion) of the hot paths: rendering /metrics for 10,000 mailboxes,
# recording a report and re-diagnosing its mailbox, diagnosing, reading an SMTP reply.
# Prints criterion's report and writes its summary to bench/results/micro-<time>.md.
set -euo pipefail
cd "$(dirname "$0")/.."
stamp=$(date -u +%Y%m%d-%H%M%S)
mkdir -p bench/results
out=bench/results/micro-$stamp.md
cargo bench --locked --bench hot_paths -- --warm-up-time 2 --measurement-time 5 2>&1 | tee target/micro.log
{
  echo "# Micro-benchmarks, $stamp UTC"
  echo
  echo '| benchmark | time (criterion: low, estimate, high) |'
  echo '|---|---|'
  # criterion prints "<name>\n time: [low est high]" or "<name>  time: [...]" on one line.
  awk '/time:/ { line=$0; sub(/^ */, "", line); if (prev != "" && $1 == "time:") name=prev; else { name=line; sub(/ *time:.*/, "", name) }; t=line; sub(/.*time: *\[/, "", t); sub(/\].*/, "", t); print "| " name " | " t " |" } { if ($0 !~ /time:/ && $0 !~ /^ *$/ && $0 !~ /^(Benchmarking|Found|  [0-9]|change|Performance|No change|Warning)/) prev=$0 }' target/micro.log
} > "$out"
cat "$out"
echo "written to $out"
