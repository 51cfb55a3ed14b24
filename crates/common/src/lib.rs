//! jetcc's shared library: everything the wrapper, the worker and (later) the monitor agree on.
//!
//! - [`args`]: a typed model of rustc's command line ([`args::RustcArgs`]).
//! - [`classify`]: the one decision whether an invocation is cached, and what it writes.
//! - [`key`]: the cache key in two steps, invocation digest then result key ([`Digest`]).
//! - [`manifest`]: direct mode, which finds a result key without running rustc.
//! - [`depinfo`], [`linkargs`], [`pathmap`]: what a compile read (dep-info, the linker's
//!   libraries) and mapping build paths to and from the cache.
//! - [`cache`]: cache tiers (the local disk cache so far); [`result`]: the entry format.
//! - [`explain`]: why a unit missed.
//! - [`listing`]: a farm job's input listing, remembered per unit so the next job skips the
//!   dep-info pre-pass, and the check of what a job from a reused listing read.
//! - [`buildscript`]: what keys a build-script run (cargo's variables, toolchain variables and
//!   tools, the directives of its previous run) and its `OUT_DIR` as one blob.
//! - [`ccargs`]: a typed model of gcc's and clang's command lines: which C/C++ compiles are
//!   cached, what keys them, their make dep files.
//! - [`protocol`]: the farm's names in NATS and its wire messages; [`farm`]: the transport
//!   (connection, JetStream resources, the CAS).
//! - [`config`], [`stats`], [`toolchain`]: settings, shared counters, tool identities.
//! - [`environ`]: the process env read without panics on non-UTF-8, and the allowlist a farm
//!   job's env passes; [`redact`]: credentials out of URLs and messages before they are shown.
//!
//! One design choice shapes the rest: the key is split into an invocation digest (computable
//! from the command line, env and `--extern` files alone) and a result key (adding the sources
//! that dep-info listed), so a hit needs no `rustc --emit=dep-info` pre-pass, only hashing the
//! files an earlier compile of the same invocation read (ccache's direct mode).

pub mod args;
pub mod buildscript;
pub mod cache;
pub mod ccargs;
pub mod classify;
pub mod config;
pub mod depinfo;
pub mod digest;
pub mod environ;
pub mod exit;
pub mod explain;
pub mod farm;
pub mod files;
pub mod fsutil;
pub mod key;
pub mod linkargs;
pub mod listing;
pub mod logfilter;
pub mod manifest;
pub mod pathmap;
pub mod protocol;
pub mod redact;
pub mod result;
pub mod stats;
pub mod toolchain;

pub use digest::Digest;
