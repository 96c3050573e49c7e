//! A broker of one test's own, for tests that stop and restart the broker
//! under load: the kind the suite runs on (`SESSIONFOLD_TEST_BROKER_KIND`:
//! Apache Kafka, or tansu on its sqlite store so that its data outlives a
//! restart), on a free loopback port, its data in a scratch directory.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// The kinds of broker a private one can be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Apache Kafka, single node, KRaft (`scripts/kafka/serve`).
    Kafka,
    /// tansu 0.6.0 with its sqlite store.
    Tansu,
}

impl Kind {
    /// The kind the suite runs on.
    pub fn of_suite() -> Kind {
        match std::env::var("SESSIONFOLD_TEST_BROKER_KIND").as_deref() {
            Ok("tansu") => Kind::Tansu,
            _ => Kind::Kafka,
        }
    }
}

/// A broker this test started and may stop and start again.
pub struct PrivateBroker {
    kind: Kind,
    port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

/// The repository's root, where `scripts/` lives.
fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

fn tansu() -> PathBuf {
    if let Ok(p) = std::env::var("SESSIONFOLD_TEST_TANSU") {
        return p.into();
    }
    let home = std::env::var("HOME").unwrap_or_default();
    let installed = Path::new(&home).join(".cargo/bin/tansu");
    if installed.exists() {
        installed
    } else {
        "tansu".into()
    }
}

impl PrivateBroker {
    /// Starts a broker of `kind` with its data under `dir`, and waits until
    /// it accepts connections.
    pub async fn start(kind: Kind, dir: &Path) -> anyhow::Result<PrivateBroker> {
        let mut b = PrivateBroker {
            kind,
            port: crate::free_port()?,
            dir: dir.join("broker"),
            child: None,
        };
        std::fs::create_dir_all(&b.dir)?;
        b.resume().await?;
        Ok(b)
    }

    /// `127.0.0.1:PORT`, for `--brokers`.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Its log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(self.dir.join("broker.log")).unwrap_or_default()
    }

    /// Starts it again on its data after [`PrivateBroker::stop`].
    pub async fn resume(&mut self) -> anyhow::Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("broker.log"))?;
        let mut cmd = match self.kind {
            Kind::Kafka => {
                let mut c = Command::new(repo_root().join("scripts/kafka/serve"));
                c.arg(self.port.to_string()).arg(self.dir.join("kafka"));
                c
            }
            Kind::Tansu => {
                let addr = format!("tcp://{}", self.address());
                let mut c = Command::new(tansu());
                // tansu joins a sqlite path to its working directory.
                c.current_dir(&self.dir).args([
                    "broker",
                    "--listener-url",
                    &addr,
                    "--advertised-listener-url",
                    &addr,
                    "--storage-engine",
                    "sqlite://tansu.db",
                ]);
                c
            }
        };
        let child = cmd
            .stdout(log.try_clone()?)
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .with_context(|| format!("starting a {:?} broker", self.kind))?;
        self.child = Some(child);
        self.wait_serving(Duration::from_secs(120)).await
    }

    /// Waits until the broker answers a metadata request.
    async fn wait_serving(&mut self, within: Duration) -> anyhow::Result<()> {
        let started = Instant::now();
        let address = self.address();
        loop {
            if let Some(c) = self.child.as_mut()
                && let Some(status) = c.try_wait()?
            {
                bail!("the broker exited with {status}; log:\n{}", self.log_text());
            }
            let addr = address.clone();
            let answered = tokio::task::spawn_blocking(move || {
                use rdkafka::consumer::{BaseConsumer, Consumer};
                let c: Result<BaseConsumer, _> = rdkafka::ClientConfig::new()
                    .set("bootstrap.servers", &addr)
                    .set("log_level", "0")
                    .create();
                c.is_ok_and(|c| c.fetch_metadata(None, Duration::from_secs(2)).is_ok())
            })
            .await?;
            if answered {
                return Ok(());
            }
            if started.elapsed() > within {
                bail!(
                    "the broker did not serve within {within:?}; log:\n{}",
                    self.log_text()
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Freezes it (SIGSTOP): connections stay open and nothing answers, as
    /// when a machine stalls or a network partitions.
    pub fn pause(&self) -> anyhow::Result<()> {
        self.signal("-STOP")
    }

    /// Lets a paused broker go on (SIGCONT).
    pub fn unpause(&self) -> anyhow::Result<()> {
        self.signal("-CONT")
    }

    fn signal(&self, which: &str) -> anyhow::Result<()> {
        let Some(child) = self.child.as_ref() else {
            bail!("the broker is not running");
        };
        let status = Command::new("kill")
            .args([which, &child.id().to_string()])
            .status()?;
        if !status.success() {
            bail!("kill {which} failed: {status}");
        }
        Ok(())
    }

    /// Stops it with SIGTERM, as an operator would, and waits for it to exit.
    pub async fn stop(&mut self) -> anyhow::Result<()> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()?;
        let deadline = Instant::now() + Duration::from_secs(60);
        while child.try_wait()?.is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                bail!("the broker did not stop within 60 s of SIGTERM");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(())
    }
}

impl Drop for PrivateBroker {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
