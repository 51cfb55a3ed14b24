//! End-to-end tests: real cargo and rustc, the real `jetcc` binary, fixtures under `tests/`.

mod build_scripts;
mod caching;
mod capacity;
mod cc_cache;
mod compose;
mod farm;
mod farm_hostile;
mod farm_netns;
mod farm_queue;
mod hardening;
mod jail_nonroot;
mod monitor;
mod mutations;
mod native_faults;
mod portable;
mod replies;
mod robustness;
mod roles;
mod s3;
mod s3_credentials;
mod sandbox_probes;
mod secrets;
mod shared;
mod streaming;
mod trust;
mod worker_limits;
