//! Progress on standard error for the long reads of replay and export.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Sets the bar's length once the amount of input is known.
pub(crate) fn set_length(progress: &ProgressBar, total: u64) {
    progress.set_length(total);
    if let Ok(style) = ProgressStyle::with_template(
        "{bar:40} {human_pos}/{human_len} records  {per_sec}  {eta} left",
    ) {
        progress.set_style(style);
    }
}

/// A progress bar on standard error; indicatif draws nothing when that is
/// not a terminal, so logs and CI output stay clean.
pub fn progress_bar() -> ProgressBar {
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template("{spinner} {human_pos} records  {per_sec}") {
        bar.set_style(style);
    }
    bar
}
