#!/usr/bin/env bash
# The long fuzz run of every decoder of untrusted bytes (see
# crates/common/tests/fuzz_decoders.rs): 10^6 inputs per decoder by default.
#   bench/fuzz_decoders.sh [INPUTS [SEED]]
set -euo pipefail
cd "$(dirname "$0")/.."
export JETCC_FUZZ_INPUTS="${1:-1000000}"
[ -n "${2:-}" ] && export JETCC_FUZZ_SEED="$2"
exec cargo test --release --locked -p jetcc-common --test fuzz_decoders -- \
    --ignored --nocapture decoders_survive_a_million_inputs_each
