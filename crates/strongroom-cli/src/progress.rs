//! Progress bars on a terminal, silence elsewhere.
//!
//! Owns drawing the library's progress reports. indicatif hides the bar by itself when stderr
//! is not a terminal, so piped and CI runs stay quiet. No colour is used, so `NO_COLOR` needs
//! nothing here.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::sync::Mutex;

/// A progress reporter drawing one bar per phase on stderr.
pub struct Bars {
    bar: Mutex<Option<ProgressBar>>,
    enabled: bool,
}

impl Bars {
    /// Bars are drawn only when `enabled` (and stderr is a terminal).
    pub fn new(enabled: bool) -> Self {
        Bars {
            bar: Mutex::new(None),
            enabled,
        }
    }
}

impl strongroom::progress::Progress for Bars {
    fn begin(&self, label: &str, total: Option<u64>) {
        if !self.enabled {
            return;
        }
        let target = ProgressDrawTarget::stderr();
        let bar = match total {
            Some(t) => ProgressBar::with_draw_target(Some(t), target).with_style(
                ProgressStyle::with_template(
                    "{prefix:>8} [{bar:20}] {bytes}/{total_bytes} {binary_bytes_per_sec} {eta}",
                )
                .expect("valid template")
                .progress_chars("=> "),
            ),
            None => ProgressBar::with_draw_target(None, target).with_style(
                ProgressStyle::with_template("{prefix:>8} {bytes} {binary_bytes_per_sec}")
                    .expect("valid template"),
            ),
        };
        bar.set_prefix(label.to_string());
        *self.bar.lock().expect("bar lock") = Some(bar);
    }

    fn advance(&self, n: u64) {
        if let Some(b) = self.bar.lock().expect("bar lock").as_ref() {
            b.inc(n);
        }
    }

    fn end(&self) {
        if let Some(b) = self.bar.lock().expect("bar lock").take() {
            b.finish_and_clear();
        }
    }
}
