//! Test harness of sessionfold's end-to-end tests.
//!
//! Starts the real `sessionfold-*` binaries as child processes against the
//! broker named by `SESSIONFOLD_TEST_BROKERS` (default `127.0.0.1:9092`), each
//! test with its own topic prefix, consumer group, state directory and ports,
//! so tests run side by side on one broker. Binaries are found next to the
//! test executable, never through the working directory.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};

pub mod broker;

/// The HS256 secret every test service verifies tokens with.
pub const TEST_SECRET: &str = "sessionfold-end-to-end-test-secret";

/// The processor's activity resolution in the tests, unless a test sets its own.
pub const TEST_ACTIVITY_RESOLUTION: &str = "2s";

/// A token signed with [`TEST_SECRET`], valid for an hour.
pub fn token(sub: &str, roles: &[&str], permissions: &[&str]) -> String {
    let claims = sessionfold_auth::Claims::expiring_in(
        sub,
        roles.iter().map(|r| (*r).to_owned()).collect(),
        permissions.iter().map(|p| (*p).to_owned()).collect(),
        Duration::from_secs(3600),
    );
    // Signing with a static secret cannot fail; an empty token would fail the test visibly.
    sessionfold_auth::mint_hs256(TEST_SECRET.as_bytes(), &claims).unwrap_or_default()
}

/// The token [`get_json`] and [`post_json`] send: an admin service that may do everything.
pub fn root_token() -> String {
    token("test-root", &["admin", "service"], &[])
}

/// Broker the tests talk to.
pub fn brokers() -> String {
    std::env::var("SESSIONFOLD_TEST_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".into())
}

/// Creates the topics of `prefix` (three partitions each) without starting
/// any service, for tests that write a history straight to the topics.
pub async fn create_topics(prefix: &str) -> anyhow::Result<()> {
    sessionfold_edge::ensure_topics(
        &brokers(),
        &sessionfold_schemas::Topics::new(prefix),
        3,
        Duration::from_secs(30),
    )
    .await?;
    Ok(())
}

/// Runs `sessionfold-processor` with these arguments and returns its log;
/// fails with the log when it exits with an error.
pub fn run_processor_command(args: &[&str]) -> anyhow::Result<String> {
    let output = Command::new(bin("sessionfold-processor")?)
        .args(args)
        .output()?;
    let log = String::from_utf8_lossy(&output.stderr).into_owned();
    anyhow::ensure!(output.status.success(), "{args:?} failed:\n{log}");
    Ok(log)
}

/// Starts a processor on `prefix` with its own group and state directory,
/// and waits until it is ready (joined and restored).
pub async fn start_processor(
    prefix: &str,
    state: &std::path::Path,
    logs: &std::path::Path,
    extra: &[&str],
) -> anyhow::Result<Service> {
    let state = state.to_string_lossy().into_owned();
    let mut args = vec!["--state-dir", state.as_str(), "--group-id", prefix];
    args.extend_from_slice(extra);
    let mut p = Service::start("sessionfold-processor", prefix, &args, logs).await?;
    p.wait_http("/readyz", Duration::from_secs(90)).await?;
    Ok(p)
}

/// Runs workspace binary `name` with `args` (plus `--listen` on a free port
/// and `--brokers`) until it exits; fails if it is still running after
/// `within`. Returns whether it succeeded and what it wrote to stderr.
pub fn exits_within(name: &str, args: &[&str], within: Duration) -> anyhow::Result<(bool, String)> {
    let port = free_port()?;
    let mut child = Command::new(bin(name)?)
        .args([
            "--brokers",
            &brokers(),
            "--listen",
            &format!("127.0.0.1:{port}"),
        ])
        .args(args)
        .stderr(Stdio::piped())
        .spawn()?;
    let deadline = Instant::now() + within;
    while child.try_wait()?.is_none() {
        if Instant::now() > deadline {
            child.kill()?;
            bail!("{name} was still running after {within:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = child.wait_with_output()?;
    Ok((
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

/// A topic prefix no other test (or earlier run) uses.
pub fn unique_prefix(test: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!(
        "t{}-{}-{}-{}",
        std::process::id(),
        nanos % 1_000_000_000,
        COUNTER.fetch_add(1, Ordering::SeqCst),
        test
    )
}

/// Path of a workspace binary, built next to the test executable.
pub fn bin(name: &str) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("locating the test executable")?;
    // target/<profile>/deps/<test> → target/<profile>/<name>
    let dir = exe
        .parent()
        .and_then(|d| d.parent())
        .context("test executable has no profile directory")?;
    let path = dir.join(name);
    if !path.exists() {
        bail!(
            "{} is not built; run `cargo build --workspace --bins` first (scripts/test does)",
            path.display()
        );
    }
    Ok(path)
}

/// Reports that a test cannot run here, as a skip and never as a pass: a
/// line `SKIPPED <test>: <why>` on stderr and in the file named by
/// `SESSIONFOLD_TEST_SKIPS` (which `scripts/test` sums up at the end). Where
/// `SESSIONFOLD_TEST_NO_SKIP` is set (CI, on the broker that has everything)
/// a skip is a failure instead. A test calls it and returns at once.
pub fn skip(test: &str, why: &str) -> anyhow::Result<()> {
    if std::env::var_os("SESSIONFOLD_TEST_NO_SKIP").is_some() {
        bail!("{test} must run here but cannot: {why}");
    }
    let line = format!("SKIPPED {test}: {why}");
    eprintln!("{line}");
    if let Some(path) = std::env::var_os("SESSIONFOLD_TEST_SKIPS") {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        writeln!(f, "{line}")?;
    }
    Ok(())
}

/// The kind of broker the suite runs on is tansu.
pub fn on_tansu() -> bool {
    broker::Kind::of_suite() == broker::Kind::Tansu
}

/// A free loopback port (bound once, then released for the child to take).
pub fn free_port() -> anyhow::Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

/// Waits until `url` answers 2xx, for at most `within`; `gone` says why to
/// give up at once (the process that should answer has exited).
pub async fn wait_ready(
    url: &str,
    within: Duration,
    mut gone: impl FnMut() -> Option<String>,
) -> anyhow::Result<()> {
    let started = Instant::now();
    loop {
        if let Ok(r) = reqwest::get(url).await
            && r.status().is_success()
        {
            return Ok(());
        }
        if let Some(why) = gone() {
            bail!(why);
        }
        if started.elapsed() > within {
            bail!("{url} not ready within {within:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Starts `cmd` (a service binary with its own arguments given) on loopback
/// `port` against `brokers` under topic prefix `prefix`, with its output in
/// `log`.
pub fn spawn_service(
    mut cmd: Command,
    name: &str,
    port: u16,
    brokers: &str,
    prefix: &str,
    rust_log: &str,
    log: std::fs::File,
) -> anyhow::Result<Child> {
    cmd.args(["--listen", &format!("127.0.0.1:{port}")])
        .args(["--brokers", brokers, "--topic-prefix", prefix])
        .env("RUST_LOG", rust_log)
        .stdout(log.try_clone()?)
        .stderr(log)
        .stdin(Stdio::null())
        .spawn()
        .with_context(|| format!("starting {name}"))
}

/// A running service; killed when dropped.
pub struct Service {
    child: Child,
    /// `http://127.0.0.1:PORT` of its HTTP surface.
    pub url: String,
    /// Its log file.
    pub log: PathBuf,
    /// Its name, for messages.
    pub name: String,
}

impl Service {
    /// Starts binary `name` with `args` (plus `--listen` on a free port and the
    /// common broker options) and waits until `/healthz` answers.
    pub async fn start(
        name: &str,
        prefix: &str,
        args: &[&str],
        logs: &std::path::Path,
    ) -> anyhow::Result<Service> {
        Service::start_on(&brokers(), name, prefix, args, logs).await
    }

    /// Like [`Service::start`], without the test secret: `args` configure the key.
    pub async fn start_without_secret(
        name: &str,
        prefix: &str,
        args: &[&str],
        logs: &std::path::Path,
    ) -> anyhow::Result<Service> {
        Service::spawn(&brokers(), name, prefix, args, logs, false).await
    }

    /// Like [`Service::start`], against the given brokers.
    pub async fn start_on(
        brokers: &str,
        name: &str,
        prefix: &str,
        args: &[&str],
        logs: &std::path::Path,
    ) -> anyhow::Result<Service> {
        Service::spawn(brokers, name, prefix, args, logs, true).await
    }

    async fn spawn(
        brokers: &str,
        name: &str,
        prefix: &str,
        args: &[&str],
        logs: &std::path::Path,
        with_secret: bool,
    ) -> anyhow::Result<Service> {
        let port = free_port()?;
        let log = logs.join(format!("{name}-{port}.log"));
        let out = std::fs::File::create(&log)?;
        let mut cmd = Command::new(bin(name)?);
        if with_secret && name != "sessionfold-processor" {
            cmd.args(["--jwt-secret", TEST_SECRET]);
        }
        if name == "sessionfold-processor"
            && !args.contains(&"--activity-resolution")
            && !args.contains(&"--idle-timeout")
        {
            // Refreshes are coalesced in every test, as they are by default,
            // for a short time, so that what a test waits for comes soon (a
            // test's own idle timeout gets the default: a fifth of it).
            cmd.args(["--activity-resolution", TEST_ACTIVITY_RESOLUTION]);
        }
        if name == "sessionfold-projections"
            && !args.contains(&"--snapshot-dir")
            && !args.contains(&"--no-snapshot")
        {
            // The test's own directory, not the working directory's `.local`.
            cmd.arg("--snapshot-dir")
                .arg(logs.join("projections-snapshot"));
        }
        cmd.args(args).args(["--partitions", "3"]);
        let child = spawn_service(
            cmd,
            name,
            port,
            brokers,
            prefix,
            "info,librdkafka=warn,rdkafka=warn",
            out,
        )?;
        let mut s = Service {
            child,
            url: format!("http://127.0.0.1:{port}"),
            log,
            name: name.to_owned(),
        };
        s.wait_http("/healthz", Duration::from_secs(60)).await?;
        Ok(s)
    }

    /// Waits until `path` answers 200.
    pub async fn wait_http(&mut self, path: &str, within: Duration) -> anyhow::Result<()> {
        let url = format!("{}{path}", self.url);
        let (child, name) = (&mut self.child, &self.name);
        wait_ready(&url, within, || {
            let status = child.try_wait().ok().flatten()?;
            Some(format!("{name} exited with {status}"))
        })
        .await
        .map_err(|e| anyhow::anyhow!("{e}; log:\n{}", self.log_text()))
    }

    /// The log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Stops the process with SIGTERM, as an orchestrator would, and waits
    /// at most `within` for it to exit; its exit status.
    pub async fn stop(&mut self, within: Duration) -> anyhow::Result<std::process::ExitStatus> {
        Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()?;
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            if Instant::now() > deadline {
                bail!("{} did not stop within {within:?}", self.name);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The value of one series on the service's `/metrics` (0 when absent):
    /// `series` is the name with its labels as exposed, e.g. `x_total{a="b"}`.
    pub async fn metric(&self, series: &str) -> anyhow::Result<f64> {
        let text = reqwest::get(format!("{}/metrics", self.url))
            .await?
            .text()
            .await?;
        Ok(text
            .lines()
            .find_map(|l| {
                l.strip_prefix(series)?
                    .strip_prefix(' ')?
                    .trim()
                    .parse()
                    .ok()
            })
            .unwrap_or(0.0))
    }

    /// Waits at most `within` for the process to exit on its own; its exit
    /// status.
    pub async fn exit_within(
        &mut self,
        within: Duration,
    ) -> anyhow::Result<std::process::ExitStatus> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            if Instant::now() > deadline {
                bail!(
                    "{} still running after {within:?}; log:\n{}",
                    self.name,
                    self.log_text()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Kills the process at once (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Calls `f` until it returns `Some`, at most `within`; the last error explains a timeout.
pub async fn eventually<T, F, Fut>(within: Duration, what: &str, mut f: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Option<T>>>,
{
    let started = Instant::now();
    loop {
        let last = match f().await {
            Ok(Some(v)) => return Ok(v),
            Ok(None) => "condition not met yet".to_owned(),
            Err(e) => format!("{e:#}"),
        };
        if started.elapsed() > within {
            bail!("{what}: not within {within:?} ({last})");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// GETs a URL with the [`root_token`] and parses JSON, returning the status too.
pub async fn get_json(url: &str) -> anyhow::Result<(u16, serde_json::Value)> {
    get_json_as(url, Some(&root_token())).await
}

/// GETs a URL with `token` (or none) and parses JSON, returning the status too.
pub async fn get_json_as(
    url: &str,
    token: Option<&str>,
) -> anyhow::Result<(u16, serde_json::Value)> {
    let mut req = reqwest::Client::new().get(url);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let r = req.send().await?;
    let status = r.status().as_u16();
    Ok((status, r.json().await?))
}

/// POSTs JSON with the [`root_token`] and parses the JSON answer, returning the status too.
pub async fn post_json(
    url: &str,
    body: &serde_json::Value,
) -> anyhow::Result<(u16, serde_json::Value)> {
    post_json_as(url, body, Some(&root_token())).await
}

/// POSTs JSON with `token` (or none) and parses the JSON answer, returning the status too.
pub async fn post_json_as(
    url: &str,
    body: &serde_json::Value,
    token: Option<&str>,
) -> anyhow::Result<(u16, serde_json::Value)> {
    let mut req = reqwest::Client::new().post(url).json(body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let r = req.send().await?;
    let status = r.status().as_u16();
    Ok((status, r.json().await?))
}

/// Produces raw records to a topic, waiting for each to be acknowledged.
pub async fn produce_raw(topic: &str, records: &[(Option<&str>, &[u8])]) -> anyhow::Result<()> {
    use rdkafka::producer::{FutureProducer, FutureRecord};
    let producer: FutureProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .set("partitioner", "murmur2_random")
        .set("message.max.bytes", "16000000")
        .create()?;
    for (key, payload) in records {
        let mut r: FutureRecord<'_, str, [u8]> = FutureRecord::to(topic).payload(*payload);
        if let Some(k) = key {
            r = r.key(*k);
        }
        producer
            .send(r, Duration::from_secs(10))
            .await
            .map_err(|(e, _)| anyhow::anyhow!("producing to {topic}: {e}"))?;
    }
    Ok(())
}

/// A record read back from a topic, with its headers as text.
#[derive(Debug, Clone)]
pub struct Record {
    /// Key bytes.
    pub key: Option<Vec<u8>>,
    /// Payload bytes.
    pub payload: Option<Vec<u8>>,
    /// Headers, as UTF-8 text.
    pub headers: std::collections::BTreeMap<String, String>,
    /// The record's timestamp (ms since the epoch), if any.
    pub timestamp: Option<i64>,
    /// Its partition.
    pub partition: i32,
    /// Its offset.
    pub offset: i64,
}

/// Reads every partition of `topic` from the beginning until `want` records
/// arrived or `within` passed.
pub async fn consume_all(
    topic: &str,
    want: usize,
    within: Duration,
) -> anyhow::Result<Vec<Record>> {
    use rdkafka::Message;
    use rdkafka::consumer::{Consumer, StreamConsumer};
    use rdkafka::message::Headers;
    let consumer: StreamConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .set("group.id", unique_prefix("reader"))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()?;
    consumer.subscribe(&[topic])?;
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + within;
    while out.len() < want {
        let Ok(msg) = tokio::time::timeout_at(deadline, consumer.recv()).await else {
            break;
        };
        let m = msg?;
        let mut headers = std::collections::BTreeMap::new();
        if let Some(h) = m.headers() {
            for header in h.iter() {
                let v = header
                    .value
                    .map(|v| String::from_utf8_lossy(v).into_owned())
                    .unwrap_or_default();
                headers.insert(header.key.to_owned(), v);
            }
        }
        out.push(Record {
            key: m.key().map(<[u8]>::to_vec),
            payload: m.payload().map(<[u8]>::to_vec),
            headers,
            timestamp: m.timestamp().to_millis(),
            partition: m.partition(),
            offset: m.offset(),
        });
    }
    Ok(out)
}

/// Current wall-clock time in milliseconds.
pub fn now_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Produces activity events straight to Kafka, encoded as the producer would.
pub struct Feeder {
    producer: rdkafka::producer::FutureProducer,
    contract: sessionfold_schemas::Contract,
    topic: String,
}

impl Feeder {
    /// A feeder of `<prefix>.activity`.
    pub fn new(prefix: &str) -> anyhow::Result<Feeder> {
        Ok(Feeder {
            producer: rdkafka::ClientConfig::new()
                .set("bootstrap.servers", brokers())
                .set("partitioner", "murmur2_random")
                .set("enable.idempotence", "true")
                .set("linger.ms", "5")
                .create()?,
            contract: sessionfold_schemas::Contract::load()?,
            topic: sessionfold_schemas::Topics::new(prefix).activity,
        })
    }

    /// Sends import events, keyed by import, and waits for all acknowledgements.
    pub async fn send_imports(
        &self,
        events: &[sessionfold_schemas::ImportEvent],
    ) -> anyhow::Result<()> {
        use rdkafka::producer::FutureRecord;
        let topic = self.topic.replace(".activity", ".imports");
        for e in events {
            let bytes = self.contract.encode_import(e)?;
            let r: FutureRecord<'_, str, [u8]> = FutureRecord::to(&topic)
                .key(e.import_id.as_str())
                .payload(bytes.as_slice());
            self.producer
                .send(r, Duration::from_secs(30))
                .await
                .map_err(|(e, _)| anyhow::anyhow!("producing: {e}"))?;
        }
        Ok(())
    }

    /// Sends events, keyed by user, and waits for all acknowledgements.
    pub async fn send(&self, events: &[sessionfold_schemas::ActivityEvent]) -> anyhow::Result<()> {
        use rdkafka::producer::FutureRecord;
        let encoded: Vec<(String, Vec<u8>)> = events
            .iter()
            .map(|e| Ok((e.user_id.clone(), self.contract.encode_activity(e)?)))
            .collect::<anyhow::Result<_>>()?;
        let sends = encoded.iter().map(|(k, v)| {
            let r: FutureRecord<'_, str, [u8]> = FutureRecord::to(&self.topic)
                .key(k.as_str())
                .payload(v.as_slice());
            self.producer.send(r, Duration::from_secs(30))
        });
        for r in futures::future::join_all(sends).await {
            r.map_err(|(e, _)| anyhow::anyhow!("producing: {e}"))?;
        }
        Ok(())
    }
}

/// A session start for `user` at `at`.
pub fn session_started(id: String, user: &str, at: i64) -> sessionfold_schemas::ActivityEvent {
    sessionfold_schemas::ActivityEvent {
        event_id: id,
        occurred_at: at,
        user_id: user.to_owned(),
        session_id: format!("{user}-s"),
        body: sessionfold_schemas::ActivityBody::SessionStarted(Box::new(
            sessionfold_schemas::SessionStarted {
                email: format!("{user}@example.com"),
                device_type: Some("desktop".into()),
                browser: Some("Firefox".into()),
                ..Default::default()
            },
        )),
        received_at: Some(at),
    }
}

/// A heartbeat (or, with `view`, a page view) of `user` at `at`.
pub fn activity(id: String, user: &str, at: i64, view: bool) -> sessionfold_schemas::ActivityEvent {
    use sessionfold_schemas::{ActivityBody, Interaction};
    sessionfold_schemas::ActivityEvent {
        event_id: id,
        occurred_at: at,
        user_id: user.to_owned(),
        session_id: format!("{user}-s"),
        body: if view {
            ActivityBody::PageViewed {
                page: "/p".into(),
                title: None,
            }
        } else {
            ActivityBody::Heartbeat {
                page: None,
                activity: Interaction::Scroll,
            }
        },
        received_at: Some(at),
    }
}

/// A scratch directory for one test's state and logs; kept after the test
/// when `SESSIONFOLD_TEST_KEEP_LOGS` is set, so a failure can be read.
pub fn scratch() -> anyhow::Result<tempfile::TempDir> {
    let mut dir = tempfile::Builder::new()
        .prefix("sessionfold-test-")
        .tempdir()?;
    if std::env::var_os("SESSIONFOLD_TEST_KEEP_LOGS").is_some() {
        dir.disable_cleanup(true);
        eprintln!("test files kept in {}", dir.path().display());
    }
    Ok(dir)
}

/// The three services of one test, on their own topic prefix and state directory.
pub struct Stack {
    /// The ingest.
    pub producer: Service,
    /// The processor (200 ms expiry tick).
    pub processor: Service,
    /// The projections, ready (caught up) when `start` returns.
    pub projections: Service,
    /// The topic prefix.
    pub prefix: String,
    /// The brokers and the processor's arguments, to start it again.
    brokers: String,
    processor_args: Vec<String>,
    _dir: tempfile::TempDir,
}

impl Stack {
    /// Starts producer, processor and projections, with extra options for the last two.
    pub async fn start(
        test: &str,
        processor_args: &[&str],
        projections_args: &[&str],
    ) -> anyhow::Result<Stack> {
        Stack::start_with(test, &[], processor_args, projections_args).await
    }

    /// Starts producer, processor and projections, each with extra options.
    pub async fn start_with(
        test: &str,
        producer_args: &[&str],
        processor_args: &[&str],
        projections_args: &[&str],
    ) -> anyhow::Result<Stack> {
        Stack::start_on(
            &brokers(),
            test,
            producer_args,
            processor_args,
            projections_args,
        )
        .await
    }

    /// Like [`Stack::start_with`], against the given brokers.
    pub async fn start_on(
        brokers: &str,
        test: &str,
        producer_args: &[&str],
        processor_args: &[&str],
        projections_args: &[&str],
    ) -> anyhow::Result<Stack> {
        let prefix = unique_prefix(test);
        let dir = scratch()?;
        let state = dir.path().join("state").to_string_lossy().into_owned();
        let mut args = vec![
            "--state-dir",
            &state,
            "--group-id",
            &prefix,
            "--tick-interval",
            "200ms",
        ];
        args.extend_from_slice(processor_args);
        let producer = Service::start_on(
            brokers,
            "sessionfold-producer",
            &prefix,
            producer_args,
            dir.path(),
        )
        .await?;
        let processor =
            Service::start_on(brokers, "sessionfold-processor", &prefix, &args, dir.path()).await?;
        let mut projections = Service::start_on(
            brokers,
            "sessionfold-projections",
            &prefix,
            projections_args,
            dir.path(),
        )
        .await?;
        projections
            .wait_http("/readyz", Duration::from_secs(60))
            .await?;
        let processor_args = args.iter().map(|a| (*a).to_owned()).collect();
        Ok(Stack {
            producer,
            processor,
            projections,
            prefix,
            brokers: brokers.to_owned(),
            processor_args,
            _dir: dir,
        })
    }

    /// The test's scratch directory (state, logs, the views' snapshot).
    pub fn dir(&self) -> &std::path::Path {
        self._dir.path()
    }

    /// Starts the processor again on the same state directory and group,
    /// after the one running is killed (SIGKILL) or was stopped; waits
    /// until it is ready.
    pub async fn restart_processor(&mut self) -> anyhow::Result<()> {
        self.processor.kill();
        let args: Vec<&str> = self.processor_args.iter().map(String::as_str).collect();
        self.processor = Service::start_on(
            &self.brokers,
            "sessionfold-processor",
            &self.prefix,
            &args,
            self._dir.path(),
        )
        .await?;
        self.processor
            .wait_http("/readyz", Duration::from_secs(90))
            .await
    }
}

/// One Server-Sent Event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    /// `id:` field.
    pub id: Option<String>,
    /// `event:` field.
    pub event: String,
    /// `data:` field, parsed as JSON (null when not JSON).
    pub data: serde_json::Value,
}

/// A client of an SSE endpoint that reads events as they come.
pub struct SseClient {
    response: reqwest::Response,
    buffer: String,
    /// The data of the last `freshness` event, which [`SseClient::next`]
    /// keeps here instead of returning: it comes every few seconds and is
    /// not a change.
    pub freshness: Option<serde_json::Value>,
}

impl SseClient {
    /// Connects with `token` and, when given, `Last-Event-ID`.
    pub async fn connect(
        url: &str,
        token: &str,
        last_event_id: Option<&str>,
    ) -> anyhow::Result<SseClient> {
        let mut req = reqwest::Client::new()
            .get(url)
            .bearer_auth(token)
            .header("accept", "text/event-stream");
        if let Some(id) = last_event_id {
            req = req.header("last-event-id", id);
        }
        let response = req.send().await?;
        if !response.status().is_success() {
            bail!("{url}: {}", response.status());
        }
        Ok(SseClient {
            response,
            buffer: String::new(),
            freshness: None,
        })
    }

    /// The next event but `freshness`, or `None` when none comes within `within`.
    pub async fn next(&mut self, within: Duration) -> anyhow::Result<Option<SseEvent>> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            while let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let mut e = SseEvent {
                    id: None,
                    event: "message".into(),
                    data: serde_json::Value::Null,
                };
                let mut data = String::new();
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("id:") {
                        e.id = Some(v.trim().to_owned());
                    } else if let Some(v) = line.strip_prefix("event:") {
                        e.event = v.trim().to_owned();
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.trim_start());
                    }
                }
                if data.is_empty() && e.id.is_none() {
                    continue; // a keep-alive comment
                }
                e.data = serde_json::from_str(&data).unwrap_or(serde_json::Value::Null);
                if e.event == "freshness" {
                    self.freshness = Some(e.data);
                    continue;
                }
                return Ok(Some(e));
            }
            match tokio::time::timeout_at(deadline, self.response.chunk()).await {
                Err(_) => return Ok(None),
                Ok(chunk) => match chunk? {
                    Some(bytes) => self.buffer.push_str(&String::from_utf8_lossy(&bytes)),
                    None => return Ok(None),
                },
            }
        }
    }

    /// Every event until none arrives for `quiet`.
    pub async fn drain(&mut self, quiet: Duration) -> anyhow::Result<Vec<SseEvent>> {
        let mut out = Vec::new();
        while let Some(e) = self.next(quiet).await? {
            out.push(e);
        }
        Ok(out)
    }
}
