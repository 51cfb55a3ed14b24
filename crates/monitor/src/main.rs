//! `jetcc-monitor`: the compile farm's workers, queue, throughput and cache hit rates.
//! Exit codes: 0 done (or `watch` left with q / Ctrl-C, `serve` stopped); 1 the farm could not
//! be read, or the terminal / listening socket failed; 2 usage error or no farm configured.

fn main() {
    std::process::exit(jetcc_monitor::main(std::env::args_os().collect()));
}
