//! End-to-end tests: real cargo and rustc, the real `jetcc` binary, fixtures under `tests/`.

mod caching;
mod farm;
mod mutations;
mod robustness;
mod streaming;
