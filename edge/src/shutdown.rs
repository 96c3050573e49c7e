//! One stop for a service: a token that every task and thread watches
//! (threads that poll a broker look at it between polls, tasks await it),
//! and the tasks a service waits for, each by name, under one deadline.

use std::fmt::Display;
use std::future::Future;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// The signal to stop, cloned into every task and thread of a service.
#[derive(Debug, Clone, Default)]
pub struct Stop(CancellationToken);

impl Stop {
    /// Nobody asked to stop yet.
    pub fn new() -> Stop {
        Stop::default()
    }

    /// Asks everything watching this signal to stop.
    pub fn stop(&self) {
        self.0.cancel();
    }

    /// Whether a stop was asked for: what a polling thread looks at.
    pub fn is_stopping(&self) -> bool {
        self.0.is_cancelled()
    }

    /// Resolves once a stop is asked for.
    pub async fn stopped(&self) {
        self.0.cancelled().await;
    }
}

/// The helper tasks of a service (followers, samplers), each under a name,
/// stopped together and waited for under one deadline.
#[derive(Debug)]
pub struct Tasks {
    stop: Stop,
    running: Vec<(&'static str, JoinHandle<Result<(), String>>)>,
}

impl Tasks {
    /// No tasks yet; `stop` is the signal they are given.
    pub fn new(stop: Stop) -> Tasks {
        Tasks {
            stop,
            running: Vec::new(),
        }
    }

    /// Runs `work` on a blocking thread with the stop signal.
    pub fn spawn_blocking<E: Display>(
        &mut self,
        name: &'static str,
        work: impl FnOnce(Stop) -> Result<(), E> + Send + 'static,
    ) {
        let stop = self.stop.clone();
        let handle = tokio::task::spawn_blocking(move || work(stop).map_err(|e| e.to_string()));
        self.running.push((name, handle));
    }

    /// Runs `work` as a task; it ends when `work` does or a stop is asked.
    pub fn spawn<E: Display>(
        &mut self,
        name: &'static str,
        work: impl Future<Output = Result<(), E>> + Send + 'static,
    ) {
        let stop = self.stop.clone();
        let handle = tokio::spawn(async move {
            tokio::select! {
                r = work => r.map_err(|e| e.to_string()),
                () = stop.stopped() => Ok(()),
            }
        });
        self.running.push((name, handle));
    }

    /// Asks every task to stop and waits for them, `deadline` in all. A task
    /// still running then is left behind (the process is about to end) and
    /// named in the log; one that failed or panicked is named too. Returns
    /// the names of the tasks that did not end cleanly.
    pub async fn stop_within(self, deadline: Duration) -> Vec<&'static str> {
        self.stop.stop();
        let until = tokio::time::Instant::now() + deadline;
        let mut unclean = Vec::new();
        for (name, handle) in self.running {
            match tokio::time::timeout_at(until, handle).await {
                Ok(Ok(Ok(()))) => {}
                Ok(Ok(Err(e))) => {
                    tracing::warn!(task = name, error = %e, "task ended with an error");
                    unclean.push(name);
                }
                Ok(Err(e)) => {
                    tracing::warn!(task = name, error = %e, "task panicked");
                    unclean.push(name);
                }
                Err(_) => {
                    tracing::warn!(
                        task = name,
                        ?deadline,
                        "task still running at the stop deadline; left behind"
                    );
                    unclean.push(name);
                }
            }
        }
        unclean
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn every_task_sees_the_stop_and_a_slow_one_is_named() {
        let stop = Stop::new();
        let mut tasks = Tasks::new(stop.clone());
        tasks.spawn_blocking("polling thread", |stop: Stop| {
            while !stop.is_stopping() {
                std::thread::yield_now();
            }
            Ok::<(), String>(())
        });
        tasks.spawn("waiting task", std::future::pending::<Result<(), String>>());
        tasks.spawn_blocking("failing thread", |_| Err("no broker"));
        tasks.spawn_blocking("stubborn thread", |_| {
            std::thread::sleep(Duration::from_millis(500));
            Ok::<(), String>(())
        });
        let unclean = tasks.stop_within(Duration::from_millis(100)).await;
        assert!(stop.is_stopping());
        assert_eq!(unclean, ["failing thread", "stubborn thread"]);
    }
}
