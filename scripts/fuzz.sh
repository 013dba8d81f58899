#!/usr/bin/env bash
# Fuzz the native core with cargo-fuzz / libFuzzer. Targets (fuzz/fuzz_targets/):
#   parse_message  the codec's round-trip contract
#   open_message   whole-message open (SK verify/decrypt + header/clear/inner splicing) and
#                  seal -> open round trips
#   sk_open        SkCipher alone
#   esp_open       the data plane's per-packet ESP open (seeds: fuzz/corpus/esp_open)
# Needs cargo-fuzz (`cargo install cargo-fuzz --locked`) and a C++ compiler.
#
#   scripts/fuzz.sh --ci [libFuzzer args]   bounded run for CI: parse_message 30 s, then
#                                           open_message 20 s and esp_open 20 s (after the
#                                           builds); new inputs go to a temp dir, not the tree
#   scripts/fuzz.sh [TARGET] [libFuzzer args]   open-ended run of TARGET (default
#                                           parse_message); parse_message grows its corpus
#
# cargo-fuzz passes nightly-only -Z flags to rustc; RUSTC_BOOTSTRAP=1 lets the stable
# toolchain accept them.
set -euo pipefail
cd "$(dirname "$0")/.."
export RUSTC_BOOTSTRAP=1
seeds=fuzz/corpus/parse_message
if [[ "${1:-}" == "--ci" ]]; then
    shift
    work="$(mktemp -d)"
    trap 'rm -rf "$work"' EXIT
    common=(-max_len=4096 -timeout=10 "$@")
    mkdir -p "$work/parse" "$work/open" "$work/esp"
    (cd fuzz && cargo fuzz run parse_message "$work/parse" "../$seeds" -- -max_total_time=30 "${common[@]}")
    (cd fuzz && cargo fuzz run open_message "$work/open" -- -max_total_time=20 "${common[@]}")
    (cd fuzz && cargo fuzz run esp_open "$work/esp" ../fuzz/corpus/esp_open \
        -- -max_total_time=20 "${common[@]}")
else
    target=parse_message
    if [[ $# -gt 0 && "$1" != -* ]]; then target="$1"; shift; fi
    if [[ "$target" == parse_message ]]; then
        (cd fuzz && cargo fuzz run parse_message "../$seeds" -- -max_len=4096 "$@")
    else
        (cd fuzz && cargo fuzz run "$target" -- -max_len=4096 "$@")
    fi
fi
