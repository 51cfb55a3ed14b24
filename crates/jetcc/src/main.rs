//! `jetcc`: a `RUSTC_WRAPPER` (`jetcc /path/to/rustc ARGS…`) or a command (`jetcc --show-stats`).
//! Exit codes: rustc's own when wrapping; for a command, `jetcc_common::exit::ExitCode` (0
//! success, 1 failed, 2 usage or config).

fn main() {
    std::process::exit(jetcc::main(std::env::args_os().collect()));
}
