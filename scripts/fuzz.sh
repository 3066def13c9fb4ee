#!/usr/bin/env bash
# Runs the cargo-fuzz targets under fuzz/ one after the other, each for RUNS executions
# (default 10,000,000), and fails on the first crash, timeout or out-of-memory.
#
#   scripts/fuzz.sh                    # every target, 10M executions each
#   scripts/fuzz.sh 100000             # every target, 100k executions each
#   scripts/fuzz.sh 10000000 config    # some targets only
#
# Needs rustup's nightly toolchain (`rustup toolchain install nightly`); installs cargo-fuzz
# when it is missing. One fuzzing process at a time (no -jobs/-workers).
# The checked-in seeds (fuzz/corpus/<target>) are only read: what libFuzzer adds goes to a
# scratch corpus, $FUZZ_SCRATCH/<target> (default ${TMPDIR:-/tmp}/smtp-oauth-exporter-fuzz), kept
# between runs. A crash is written to fuzz/artifacts/<target>/; the log of each run is
# $FUZZ_SCRATCH/<target>.log.
set -euo pipefail
cd "$(dirname "$0")/.."

runs="${1:-10000000}"
shift || true
if ! [[ "$runs" =~ ^[0-9]+$ ]]; then
    echo "usage: $0 [RUNS] [TARGET...]" >&2
    exit 2
fi

if ! rustup run nightly rustc --version >/dev/null 2>&1; then
    echo "cargo-fuzz needs the nightly toolchain: rustup toolchain install nightly" >&2
    exit 1
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi

if [ "$#" -gt 0 ]; then
    targets=("$@")
else
    mapfile -t targets < <(cargo +nightly fuzz list)
fi
scratch="${FUZZ_SCRATCH:-${TMPDIR:-/tmp}/smtp-oauth-exporter-fuzz}"
# The crate has no unsafe code (`#![forbid(unsafe_code)]`): what the fuzzers look for is a
# panic, a hang or unbounded memory, which libFuzzer finds without a sanitizer, at about three
# times the speed. FUZZ_SANITIZER=address brings AddressSanitizer back.
sanitizer="${FUZZ_SANITIZER:-none}"
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_stack_use_after_return=0}"

cargo +nightly fuzz build --sanitizer "$sanitizer"
for t in "${targets[@]}"; do
    mkdir -p "$scratch/$t"
    echo "== $t: $runs executions (scratch corpus $scratch/$t, log $scratch/$t.log)"
    start=$(date +%s)
    set +e
    cargo +nightly fuzz run --sanitizer "$sanitizer" "$t" "$scratch/$t" "fuzz/corpus/$t" -- \
        -runs="$runs" -max_len=4096 -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 \
        2>&1 | tee "$scratch/$t.log" |
        grep --line-buffered -E '^#[0-9]+[[:space:]]+(INITED|DONE)|pulse|ERROR|panicked|SUMMARY|Test unit written|^stat::(number_of_executed_units|average_exec_per_sec)'
    status=${PIPESTATUS[0]}
    set -e
    echo "== $t: exit status $status after $(($(date +%s) - start)) s"
    if [ "$status" -ne 0 ]; then
        echo "$t failed: reproduce with cargo +nightly fuzz run $t fuzz/artifacts/$t/<file>" >&2
        exit "$status"
    fi
done
echo "== all targets passed $runs executions"
