//! The exit codes of jetcc's commands, one scheme for `jetcc`, `jetcc-worker` and
//! `jetcc-monitor` (the wrapper itself exits with rustc's own code). Each binary maps its
//! errors to one of these; `--help` and the README list them.

/// What a command's exit code says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitCode {
    /// It did what was asked.
    Success = 0,
    /// It could not: a server unreachable or refusing, a check that failed, an I/O error.
    Failed = 1,
    /// It was asked wrongly: a bad flag, an invalid config file, no farm configured for a
    /// command that needs one. Fix the command line or the config and run it again.
    Usage = 2,
    /// A worker cannot confine jobs on this host: no Landlock (and not told
    /// `--insecure-no-sandbox`), its jail's start-up self-test failed (no user namespaces,
    /// say), or it runs as root without an unprivileged user to run jobs as. Restarting
    /// does not help; fixing the host or `[worker] run_as` does.
    NoSandbox = 3,
}

impl ExitCode {
    pub fn code(self) -> i32 {
        self as i32
    }
}

/// The scheme as `--help` shows it, under the commands.
pub const HELP: &str = "Exit codes: 0 success; 1 failed (server unreachable or refusing, check \
failed, I/O); 2 usage (bad flag, invalid config, no farm configured); 3 a worker cannot sandbox \
jobs here (no Landlock, the jail's self-test failed, or root without an unprivileged user to run \
jobs as).";
