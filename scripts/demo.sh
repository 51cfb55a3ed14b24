#!/usr/bin/env bash
# Installs jetcc and builds a real project through it twice: cold (empty cache), then warm
# after `cargo clean`, and prints the stats. No server needed: jetcc's local disk cache.
#
#   scripts/demo.sh [PROJECT_DIR]
#
# PROJECT_DIR defaults to ../shared/bench/workload when present, else tests/fixture-registry.
# The project is copied to a temp dir first, so the original is never touched.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
default="$repo/../shared/bench/workload"
[ -d "$default" ] || default="$repo/tests/fixture-registry"
project="$(cd "${1:-$default}" && pwd)"

cargo install --locked --path "$repo/crates/jetcc" --root "$repo/target/install" --quiet
jetcc="$repo/target/install/bin/jetcc"
"$jetcc" --version

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cp -r "$project" "$work/project"
rm -rf "$work/project/target"
export JETCC_DIR="${JETCC_DIR:-$work/cache}"
export RUSTC_WRAPPER="$jetcc"

cd "$work/project"
echo "== cold build of $(basename "$project") through jetcc (cache: $JETCC_DIR)"
start=$(date +%s%N)
cargo build --quiet
cold=$(( ($(date +%s%N) - start) / 1000000 ))
cargo clean --quiet
echo "== warm build after cargo clean"
start=$(date +%s%N)
cargo build --quiet
warm=$(( ($(date +%s%N) - start) / 1000000 ))
echo
echo "cold build: ${cold} ms, warm build: ${warm} ms"
echo
"$jetcc" --show-stats
