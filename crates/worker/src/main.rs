//! `jetcc-worker`: pulls compile jobs from the farm and runs them sandboxed.
//! Exit codes: 0 after a clean stop (SIGTERM/SIGINT); 1 setup or farm error; 2 usage error;
//! 3 the kernel cannot sandbox (see `--insecure-no-sandbox`).

fn main() {
    std::process::exit(jetcc_worker::main(std::env::args_os().collect()));
}
