//! Cache tiers. Only the local disk tier exists so far; the JetStream and object-store tiers
//! will sit behind the same operations (entry, blob, manifest).

pub mod disk;

pub use disk::{CacheError, DiskCache};
