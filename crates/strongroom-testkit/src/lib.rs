//! Throwaway servers for strongroom's tests.
//!
//! Owns starting and always removing the real servers tests run against, so that no test ever
//! touches the machine's own services, the fault-injecting proxy tests put in front of
//! them, and a webhook receiver that records the alerts sent to it (`webhook`). Must not depend on strongroom itself, so any crate's tests can use it (today the
//! command line's integration tests do).

pub mod attacker;
pub mod postgres;
pub mod s3proxy;
pub mod webhook;
