//! The sessionfold binaries as the benchmark runs them: release builds next
//! to this binary, on free loopback ports, with their own state and logs.

use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use anyhow::Context;

/// The secret the benchmark signs its tokens with.
pub const SECRET: &str = "sessionfold-bench-secret-0123456789abcdef";

/// A running service.
pub struct Service {
    child: Child,
    /// Its base URL.
    pub url: String,
    dir: tempfile::TempDir,
    /// Started in a process group of its own (under heaptrack).
    own_group: bool,
    /// Built once: a new client loads the system's root certificates, and
    /// the processor's run is timed by scraping `/metrics` every 20 ms (a
    /// client per scrape took a third of a core from the processor).
    http: reqwest::Client,
}

fn binary(name: &str) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let path = exe
        .parent()
        .map(|d| d.join(name))
        .context("no directory beside the benchmark binary")?;
    anyhow::ensure!(
        path.exists(),
        "{} is missing: build the release binaries first (scripts/bench does)",
        path.display()
    );
    Ok(path)
}

impl Service {
    /// Starts `name` with `args` and waits for `/healthz`.
    pub async fn start(
        name: &str,
        brokers: &str,
        prefix: &str,
        args: &[&str],
    ) -> anyhow::Result<Service> {
        let dir = tempfile::tempdir()?;
        let port = sessionfold_e2e::free_port()?;
        // With SESSIONFOLD_BENCH_LOGS=DIR the services' logs are kept there,
        // at the level of RUST_LOG (default warn), for a look at what a run did.
        let kept = std::env::var_os("SESSIONFOLD_BENCH_LOGS").map(PathBuf::from);
        let log_path = match &kept {
            Some(d) => d.join(format!("{prefix}-{name}-{port}.log")),
            None => dir.path().join("log"),
        };
        let log = std::fs::File::create(&log_path)
            .with_context(|| format!("creating {}", log_path.display()))?;
        let level = match kept {
            Some(_) => std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
            None => "warn".into(),
        };
        // With SESSIONFOLD_BENCH_HEAPTRACK=DIR the long-running services run
        // under heaptrack, for the memory profile in docs/profiles/.
        let mut own_group = false;
        let mut cmd = match std::env::var_os("SESSIONFOLD_BENCH_HEAPTRACK") {
            Some(out) if name != "sessionfold-producer" => {
                let mut c = Command::new("heaptrack");
                c.arg("-o")
                    .arg(PathBuf::from(out).join(name))
                    .arg(binary(name)?);
                // heaptrack starts the service as its own child: a group of
                // their own lets the drop stop both, not heaptrack alone.
                std::os::unix::process::CommandExt::process_group(&mut c, 0);
                own_group = true;
                c
            }
            _ => Command::new(binary(name)?),
        };
        if name == "sessionfold-processor" {
            // A store of the caller's outlives the process (a restart on it).
            if !args.contains(&"--state-dir") {
                cmd.arg("--state-dir").arg(dir.path().join("state"));
            }
            if !args.contains(&"--group-id") {
                cmd.args(["--group-id", prefix]);
            }
        } else {
            cmd.args(["--jwt-secret", SECRET]);
        }
        cmd.args(args);
        let child = sessionfold_e2e::spawn_service(cmd, name, port, brokers, prefix, &level, log)?;
        let mut s = Service {
            child,
            url: format!("http://127.0.0.1:{port}"),
            dir,
            own_group,
            http: reqwest::Client::new(),
        };
        s.wait("/healthz", Duration::from_secs(60)).await?;
        Ok(s)
    }

    /// Waits until `path` answers 200.
    pub async fn wait(&mut self, path: &str, within: Duration) -> anyhow::Result<()> {
        let url = format!("{}{path}", self.url);
        let child = &mut self.child;
        sessionfold_e2e::wait_ready(&url, within, || {
            let status = child.try_wait().ok().flatten()?;
            Some(format!("{url} exited with {status}"))
        })
        .await
    }

    /// The Prometheus text of `/metrics`.
    pub async fn metrics(&self) -> anyhow::Result<String> {
        Ok(self
            .http
            .get(format!("{}/metrics", self.url))
            .send()
            .await?
            .text()
            .await?)
    }

    /// Copies the service's memory map (`/proc/PID/smaps`) to `to`, for
    /// telling the allocator's heap from librdkafka's and sled's.
    pub fn save_smaps(&self, to: &std::path::Path) -> anyhow::Result<()> {
        std::fs::copy(format!("/proc/{}/smaps", self.child.id()), to)
            .with_context(|| format!("copying the memory map to {}", to.display()))?;
        Ok(())
    }

    /// Copies the service's log to `to`.
    pub fn save_log(&self, to: &std::path::Path) -> anyhow::Result<()> {
        std::fs::copy(self.dir.path().join("log"), to)
            .with_context(|| format!("copying the log to {}", to.display()))?;
        Ok(())
    }

    /// Stops it with SIGTERM, as an operator would, and waits at most
    /// `within` for it to exit.
    pub async fn stop(mut self, within: Duration) -> anyhow::Result<()> {
        Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()?;
        let deadline = std::time::Instant::now() + within;
        while self.child.try_wait()?.is_none() {
            anyhow::ensure!(
                std::time::Instant::now() < deadline,
                "it did not stop within {within:?} of SIGTERM"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Ok(())
    }

    /// The service's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// CPU time the service has used so far (user and system, all its threads).
    pub fn cpu_seconds(&self) -> anyhow::Result<f64> {
        cpu_seconds(&format!("/proc/{}/stat", self.child.id()))
    }

    /// Resident memory in bytes, from /proc.
    pub fn rss(&self) -> anyhow::Result<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))?;
        let kb: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .context("no VmRSS")?;
        Ok(kb * 1024)
    }
}

/// User and system CPU seconds of the process whose `stat` file is at
/// `path`, threads that have exited included.
pub fn cpu_seconds(path: &str) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(path).with_context(|| format!("reading {path}"))?;
    stat_cpu_seconds(&stat).with_context(|| format!("no CPU time in {path}"))
}

/// utime + stime of a `stat` line. The kernel reports them in USER_HZ
/// ticks, 100 per second on Linux whatever the kernel's own tick.
fn stat_cpu_seconds(stat: &str) -> Option<f64> {
    // The command name may hold spaces and parentheses; the fields after it
    // start past the last ')', at the third field of stat(5).
    let (_, rest) = stat.rsplit_once(')')?;
    let mut fields = rest.split_whitespace().skip(14 - 3);
    let mut tick = || fields.next()?.parse::<u64>().ok();
    let (utime, stime) = (tick()?, tick()?);
    Some((utime + stime) as f64 / 100.0)
}

/// Busy CPU seconds of the whole machine so far, every core and process
/// (`/proc/stat`): what the broker and everything else took beside the
/// process being timed.
pub fn machine_busy_seconds() -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string("/proc/stat").context("reading /proc/stat")?;
    stat_busy_seconds(&stat).context("no cpu line in /proc/stat")
}

/// The first `cpu` line's user, nice, system, irq, softirq and steal ticks
/// (USER_HZ, 100 a second): everything but idle and I/O wait. Guest time is
/// already counted in user time.
fn stat_busy_seconds(stat: &str) -> Option<f64> {
    let fields = stat.lines().next()?.strip_prefix("cpu ")?;
    let ticks: Vec<u64> = fields
        .split_whitespace()
        .map(|f| f.parse().ok())
        .collect::<Option<_>>()?;
    let busy: u64 = [0, 1, 2, 5, 6, 7]
        .iter()
        .map(|&i| ticks.get(i).copied())
        .sum::<Option<u64>>()?;
    Some(busy as f64 / 100.0)
}

impl Drop for Service {
    fn drop(&mut self) {
        if self.own_group {
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{}", self.child.id())])
                .status();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The sum of every series of a counter or gauge.
pub fn metric_sum(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// A token for `sub` with the admin role, signed with [`SECRET`].
pub fn admin_token(sub: &str) -> anyhow::Result<String> {
    let claims = sessionfold_auth::Claims::expiring_in(
        sub,
        vec!["admin".into(), "service".into()],
        Vec::new(),
        Duration::from_secs(24 * 3600),
    );
    Ok(sessionfold_auth::mint_hs256(SECRET.as_bytes(), &claims)?)
}

/// Latency percentiles of repeated calls, in milliseconds.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Latency {
    /// Calls measured.
    pub n: usize,
    /// Median.
    pub p50_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
}

impl Latency {
    /// From samples in seconds (nearest rank).
    pub fn of(mut secs: Vec<f64>) -> Latency {
        secs.sort_by(f64::total_cmp);
        let at = |p: usize| {
            let rank = (secs.len() * p).div_ceil(100).max(1);
            secs.get(rank - 1).copied().unwrap_or(f64::NAN) * 1000.0
        };
        Latency {
            n: secs.len(),
            p50_ms: at(50),
            p99_ms: at(99),
        }
    }
}

/// Calls `GET url` `n` times one after another with a bearer token and
/// measures each (the first `n / 10` warm up and are not counted).
pub async fn get_latency(url: &str, token: &str, n: usize) -> anyhow::Result<Latency> {
    let client = reqwest::Client::new();
    let mut samples = Vec::with_capacity(n);
    for i in 0..n + n / 10 {
        let t = Instant::now();
        let r = client.get(url).bearer_auth(token).send().await?;
        anyhow::ensure!(r.status().is_success(), "{url}: {}", r.status());
        r.bytes().await?;
        if i >= n / 10 {
            samples.push(t.elapsed().as_secs_f64());
        }
    }
    Ok(Latency::of(samples))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_time_is_read_past_a_command_name_with_parentheses() {
        let stat = "4242 (tokio (rt) x) S 1 4242 4242 0 -1 4194304 120 0 0 0 \
                    731 269 0 0 20 0 9 0 100 1000 200 18446744073709551615";
        assert_eq!(stat_cpu_seconds(stat), Some(10.0));
        assert_eq!(stat_cpu_seconds("4242 (x) S 1 2"), None);
    }

    #[test]
    fn machine_busy_time_leaves_out_idle_and_io_wait() {
        let stat = "cpu  100 20 30 5000 70 4 6 2 9 0\ncpu0 50 10 15 2500 35 2 3 1 9 0\n";
        // user + nice + system + irq + softirq + steal; guest is inside user.
        assert_eq!(stat_busy_seconds(stat), Some(1.62));
        assert_eq!(stat_busy_seconds("cpu  1 2\n"), None);
        assert_eq!(stat_busy_seconds("intr 1 2 3 4 5 6 7 8\n"), None);
        let now = machine_busy_seconds().expect("readable");
        assert!(now > 0.0, "a running machine has been busy: {now}");
    }

    #[test]
    fn busy_work_shows_in_this_process_cpu_time() {
        let before = cpu_seconds("/proc/self/stat").expect("readable");
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut x = 0u64;
        let grew = loop {
            for i in 0..100_000u64 {
                x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(i));
            }
            let spent = cpu_seconds("/proc/self/stat").expect("readable") - before;
            if spent >= 0.05 || Instant::now() >= deadline {
                break spent;
            }
        };
        assert!(grew >= 0.05, "10 s of busy work counted {grew} s of CPU");
    }
}
