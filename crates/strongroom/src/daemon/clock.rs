//! The daemon's wall clock.
//!
//! Owns one seam, [`Clock`], so the scheduler's decisions are tested on a faked clock that a
//! test moves forward, back, or far ahead (a host that slept). Must not plan anything: the
//! rules are [`crate::schedule`]'s and [`super::scheduler`]'s.

use jiff::Timestamp;

/// Where the daemon reads the time.
pub trait Clock: Send + Sync {
    /// The wall-clock time now.
    fn now(&self) -> Timestamp;
}

/// The host's clock. The daemon's waits are monotonic and short ([`super::MAX_WAIT`]), so a
/// wall-clock jump or a host that was suspended is seen at the next wake-up.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }
}
