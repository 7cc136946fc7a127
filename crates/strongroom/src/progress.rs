//! How long-running work reports how far along it is.
//!
//! The library only counts; the command-line crate decides whether to draw a bar (a terminal)
//! or stay quiet (a pipe). Must not print anything itself.

/// Receives progress from long-running operations. Implementations must be cheap: `advance`
/// is called for every batch of a backup or restore.
pub trait Progress: Sync {
    /// A phase begins; `total` is its size in bytes when known.
    fn begin(&self, _label: &str, _total: Option<u64>) {}
    /// `n` more bytes of the current phase are done.
    fn advance(&self, _n: u64) {}
    /// The current phase is over.
    fn end(&self) {}
}

/// Reports nothing.
pub struct Silent;

impl Progress for Silent {}
