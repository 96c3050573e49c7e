//! The fold's rules on the command line: the same flags live and in replay
//! (where a different idle timeout can be tried on the past).

use std::time::Duration;

use sessionfold_edge::{millis, parse_duration};
use sessionfold_fold::{ImportConfig, PresenceConfig};

/// The fold's rules, as flags and environment variables.
#[derive(Debug, Clone, clap::Args)]
pub struct FoldArgs {
    /// A session with no activity for this long goes inactive.
    #[arg(long, env = "SESSIONFOLD_IDLE_TIMEOUT", default_value = "5m", value_parser = parse_duration)]
    pub idle_timeout: Duration,
    /// A session is forgotten this long after its last activity.
    #[arg(long, env = "SESSIONFOLD_RETENTION", default_value = "24h", value_parser = parse_duration)]
    pub retention: Duration,
    /// Event ids are remembered this long behind a user's latest activity;
    /// older events are dead-lettered as late rather than risk a double apply.
    #[arg(long, env = "SESSIONFOLD_DEDUP_WINDOW", default_value = "10m", value_parser = parse_duration)]
    pub dedup_window: Duration,
}

impl FoldArgs {
    /// The presence fold's rules.
    pub fn presence(&self) -> PresenceConfig {
        PresenceConfig {
            idle_timeout: millis(self.idle_timeout),
            retention: millis(self.retention),
            dedup_window: millis(self.dedup_window),
        }
    }

    /// The import fold's rules.
    pub fn imports(&self) -> ImportConfig {
        ImportConfig {
            retention: millis(self.retention),
            dedup_window: millis(self.dedup_window),
        }
    }
}
