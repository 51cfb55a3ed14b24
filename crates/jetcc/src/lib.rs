//! The `jetcc` binary's logic: the rustc wrapper and its few commands.
//!
//! - [`wrapper`]: the life of one rustc invocation (classify, key, look up, restore or compile,
//!   store), and the fallback to plain rustc on any jetcc-side error.
//! - [`compile`]: runs rustc, streaming its output to cargo while capturing it.
//! - [`dist`]: sends a miss to the farm and writes what comes back.
//! - [`tiers`]: the shared cache tiers (JetStream, object store) behind one trait.
//! - [`events`]: what this process did, as one event for monitors.
//! - [`breaker`]: skips a failing farm or tier for a while, across wrapper processes.
//! - [`placement`]: whether a miss compiles locally or on the farm (local slots, measured
//!   remote overhead).
//! - [`cli`]: `--show-stats`, `--zero-stats`, `--explain`, `--dist-status`, `--version`;
//!   [`check`]: `--check`, a write, read and delete on every cache tier.
//!
//! Design choice: anything the wrapper does not understand, or any error before rustc starts,
//! ends in `exec` of plain rustc, so jetcc can only cost time, never a build.

pub mod breaker;
pub mod check;
pub mod cli;
pub mod compile;
pub mod dist;
pub mod events;
pub mod logging;
pub mod placement;
pub mod tiers;
pub mod wrapper;

use std::ffi::OsString;

/// Dispatches on the first argument: a flag is a jetcc command, anything else is the rustc to
/// wrap. Returns the process exit code.
pub fn main(args: Vec<OsString>) -> i32 {
    let first = args.get(1).map(|a| a.to_string_lossy().into_owned());
    match first {
        Some(f) if f.starts_with('-') => cli::run(&args),
        Some(_) => {
            let mut rest = args.into_iter().skip(1);
            let rustc = rest.next().expect("checked above");
            wrapper::run(rustc, rest.collect())
        }
        None => cli::run(&args),
    }
}
