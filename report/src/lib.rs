//! Replay reports of sessionfold.
//!
//! Replay folds the input topics again with the live fold; every event the
//! fold accepts also goes into a [`History`]. From it this crate computes the
//! analysts' figures under the rules being tried (concurrency per minute,
//! visit durations, devices and browsers, peak hours, pages, import outcomes)
//! and renders them as JSON, CSV and Parquet tables, SVG charts and a
//! Markdown summary, and writes a history's events as one Parquet table. It
//! is pure: data in, bytes out; the processor writes the files.

mod charts;
mod error;
pub mod events;
mod figures;
mod history;
mod render;
pub mod table;

pub use error::ReportError;
pub use figures::{
    Bucket, Concurrency, Count, DailyUsers, HourCell, ImportOutcome, Imports, Minute, PageCount,
    Reason, Report, Rules, Sessions, Stats, Visit, WEEKDAYS,
};
pub use history::History;
pub use render::{File, files, human, parquet_files, summary};

pub use sessionfold_schemas::rfc3339;
