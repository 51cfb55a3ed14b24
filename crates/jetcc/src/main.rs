//! `jetcc`: a `RUSTC_WRAPPER` (`jetcc /path/to/rustc ARGS…`) or a command (`jetcc --show-stats`).
//! Exit codes: rustc's own when wrapping; 0 for a command that succeeded, 1 for one that failed,
//! 2 for a usage error.

fn main() {
    std::process::exit(jetcc::main(std::env::args_os().collect()));
}
