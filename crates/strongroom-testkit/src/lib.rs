//! Throwaway servers for strongroom's tests.
//!
//! Owns starting and always removing the real servers tests run against, so that no test ever
//! touches the machine's own services. Must not depend on strongroom itself: the library's
//! own unit tests use it too.

pub mod postgres;
