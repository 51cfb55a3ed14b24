//! The farm's clocks: intervals that workers, clients and the server's resources must agree
//! on, so each side reads them from here rather than from the other.

use std::time::Duration;

/// A job not acked (nor marked in progress) within this is redelivered to another worker;
/// a worker marks a running job in progress three times per period.
pub const ACK_WAIT: Duration = Duration::from_secs(10);
/// A worker heartbeat older than this is gone (the heartbeat bucket's TTL).
pub const HEARTBEAT_TTL: Duration = Duration::from_secs(10);
/// Workers refresh their heartbeat this often.
pub const HEARTBEAT_EVERY: Duration = Duration::from_secs(2);
