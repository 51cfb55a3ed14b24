//! `jetcc-worker`: pulls compile jobs from the farm and runs them sandboxed.
//! Exit codes (`jetcc_common::exit`): 0 after a clean stop (SIGTERM/SIGINT); 1 setup or farm
//! error; 2 usage (bad flag, invalid config, no farm configured); 3 the kernel cannot sandbox
//! (see `--insecure-no-sandbox`).

fn main() {
    std::process::exit(jetcc_worker::main(std::env::args_os().collect()));
}
