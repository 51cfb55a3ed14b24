//! Logs through `tracing`, off unless `JETCC_LOG` is set (e.g. `JETCC_LOG=debug`: a bare level
//! is for jetcc's own crates, see `common::logfilter`). Each line names the module that wrote
//! it. They go to stderr, or appended to `JETCC_LOG_FILE` if set (cargo shows a wrapper's
//! stderr as rustc's), each line there with its time. Every line has URL credentials masked
//! (`common::redact`) on its way out, whatever logged it.

use std::fs::File;
use std::io::{self, Write};
use std::sync::{Arc, Mutex};

pub fn init() {
    let Ok(filter) = std::env::var("JETCC_LOG") else {
        return;
    };
    let filter = tracing_subscriber::EnvFilter::new(jetcc_common::logfilter::directives(&filter));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(true);
    // A file gathers the lines of every wrapper of a build: timed, so they can be ordered.
    if let Some(path) = std::env::var_os("JETCC_LOG_FILE") {
        if let Ok(f) = File::options().create(true).append(true).open(path) {
            let sink = Redacted(Arc::new(Mutex::new(Box::new(f))));
            builder
                .with_ansi(false)
                .with_writer(move || sink.clone())
                .init();
            return;
        }
    }
    let sink = Redacted(Arc::new(Mutex::new(Box::new(io::stderr()))));
    builder
        .without_time()
        .with_writer(move || sink.clone())
        .init();
}

/// A log sink that masks credentials in what it is given: `tracing`'s formatter writes each
/// line in one call.
#[derive(Clone)]
struct Redacted(Arc<Mutex<Box<dyn Write + Send>>>);

impl Write for Redacted {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let text = jetcc_common::redact::credentials(&String::from_utf8_lossy(buf));
        let mut sink = self.0.lock().unwrap_or_else(|e| e.into_inner());
        sink.write_all(text.as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_line_written_has_credentials_masked() {
        struct Shared(Arc<Mutex<Vec<u8>>>);
        impl Write for Shared {
            fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
                self.0.lock().unwrap().write(buf)
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let got = Arc::new(Mutex::new(Vec::new()));
        let mut sink = Redacted(Arc::new(Mutex::new(Box::new(Shared(got.clone())))));
        sink.write_all(b"WARN the farm is unavailable: nats://ci:hunter2@h:4222 refused\n")
            .unwrap();
        let text = String::from_utf8(got.lock().unwrap().clone()).unwrap();
        assert_eq!(
            text,
            "WARN the farm is unavailable: nats://ci:***@h:4222 refused\n"
        );
    }
}
