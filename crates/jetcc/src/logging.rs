//! Logs through `tracing`, off unless `JETCC_LOG` is set (e.g. `JETCC_LOG=debug`: a bare level
//! is for jetcc's own crates, see `common::logfilter`). Each line names the module that wrote
//! it. They go to stderr, or appended to `JETCC_LOG_FILE` if set (cargo shows a wrapper's
//! stderr as rustc's).

use std::fs::File;
use std::sync::Mutex;

pub fn init() {
    let Ok(filter) = std::env::var("JETCC_LOG") else {
        return;
    };
    let filter = tracing_subscriber::EnvFilter::new(jetcc_common::logfilter::directives(&filter));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(true)
        .without_time();
    if let Some(path) = std::env::var_os("JETCC_LOG_FILE") {
        if let Ok(f) = File::options().create(true).append(true).open(path) {
            builder.with_ansi(false).with_writer(Mutex::new(f)).init();
            return;
        }
    }
    builder.with_writer(std::io::stderr).init();
}
