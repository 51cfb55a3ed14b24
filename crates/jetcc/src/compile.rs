//! Runs rustc (or a build script, or a C compiler) for real, passing its output through as it
//! comes.
//!
//! cargo's pipelining starts dependent crates when rustc reports the `.rmeta` artifact on
//! stderr, so stderr is forwarded line by line (never buffered to the end) while a copy is kept
//! for the cache.

use std::ffi::{OsStr, OsString};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// What a real compile produced.
pub struct Compiled {
    pub exit_code: i32,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub duration: Duration,
}

/// Runs `rustc ARGS`, forwarding stdout and stderr as they are written. An error means rustc
/// could not be started (so it did not run).
pub fn run_streaming(rustc: &OsStr, args: &[String]) -> io::Result<Compiled> {
    run_streaming_env(rustc, args, &[])
}

/// [`run_streaming`] with `env` set (or replaced) in the program's environment: a build
/// script gets jetcc's compiler shims on its `PATH`, a real compiler loses them.
pub fn run_streaming_env(
    program: &OsStr,
    args: &[String],
    env: &[(OsString, OsString)],
) -> io::Result<Compiled> {
    let start = Instant::now();
    let mut child = Command::new(program)
        .args(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::inherit())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let stdout = child.stdout.take().expect("piped");
    let stderr = child.stderr.take().expect("piped");
    let out_thread = std::thread::spawn(move || tee(stdout, io::stdout()));
    let stderr = tee(stderr, io::stderr());
    let stdout = out_thread.join().unwrap_or_default();
    let status = child.wait()?;
    Ok(Compiled {
        exit_code: exit_code(status),
        stdout,
        stderr,
        duration: start.elapsed(),
    })
}

/// Copies `from` to `to` line by line, flushing each line, and returns everything copied.
/// A closed `to` (cargo gone) does not stop the capture: rustc must still be drained.
fn tee(from: impl Read, mut to: impl Write) -> Vec<u8> {
    let mut reader = BufReader::new(from);
    let mut all = Vec::new();
    let mut forward = true;
    loop {
        let start = all.len();
        match reader.read_until(b'\n', &mut all) {
            Ok(0) => break,
            Ok(_) => {
                if forward && (to.write_all(&all[start..]).is_err() || to.flush().is_err()) {
                    forward = false;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    all
}

/// rustc's exit code; a signal death maps to 128 + signal, as a shell reports it.
pub fn exit_code(status: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tee_forwards_and_captures_every_line() {
        let input: &[u8] = b"{\"artifact\":\"a\"}\nsecond\nno newline at end";
        let mut forwarded = Vec::new();
        let captured = tee(input, &mut forwarded);
        assert_eq!(captured, input);
        assert_eq!(forwarded, input);
    }

    #[test]
    fn tee_keeps_capturing_when_the_reader_is_gone() {
        struct Closed;
        impl Write for Closed {
            fn write(&mut self, _: &[u8]) -> io::Result<usize> {
                Err(io::ErrorKind::BrokenPipe.into())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let input: &[u8] = b"a\nb\n";
        assert_eq!(tee(input, Closed), input);
    }

    #[test]
    fn exit_codes_follow_rustc_and_signals() {
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(exit_code(std::process::ExitStatus::from_raw(1 << 8)), 1);
        assert_eq!(exit_code(std::process::ExitStatus::from_raw(9)), 128 + 9);
    }
}
