#!/usr/bin/env bash
# Fuzz the codec (target fuzz/fuzz_targets/parse_message.rs) with cargo-fuzz / libFuzzer.
# Needs cargo-fuzz (`cargo install cargo-fuzz --locked`) and a C++ compiler.
#
#   scripts/fuzz.sh --ci [libFuzzer args]   bounded run for CI (50 s of fuzzing after the
#                                           build); new inputs go to a temp dir, not the tree
#   scripts/fuzz.sh [libFuzzer args]        open-ended run that grows fuzz/corpus/parse_message
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
    exec_args=(-max_total_time=50 -max_len=4096 -timeout=10 "$@")
    (cd fuzz && cargo fuzz run parse_message "$work" "../$seeds" -- "${exec_args[@]}")
else
    (cd fuzz && cargo fuzz run parse_message "../$seeds" -- -max_len=4096 "$@")
fi
