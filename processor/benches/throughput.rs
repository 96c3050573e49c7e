//! Processor throughput: the fold and sled write alone, and end to end from a
//! broker compared with a do-nothing consumer draining the same topic.
//!
//! `cargo bench -p sessionfold-processor --bench throughput` runs the first
//! part; with `SESSIONFOLD_BENCH_BROKERS=host:port` it also runs the second.
//! `SESSIONFOLD_BENCH_EVENTS` sets the number of events (default 200000).

use std::time::{Duration, Instant};

use rdkafka::Message;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};
use sessionfold_fold::{Position, PresenceConfig, PresenceTable};
use sessionfold_processor::Store;
use sessionfold_processor::store::PartitionWrite;
use sessionfold_schemas::{
    ActivityBody, ActivityEvent, Contract, Interaction, SessionStarted, Topics,
};

const USERS: usize = 10_000;
const BATCH: usize = 10_000;

fn events(n: usize, base: i64) -> Vec<ActivityEvent> {
    (0..n)
        .map(|i| {
            let u = i % USERS;
            let user = format!("user-{u:06}");
            let body = if i < USERS {
                ActivityBody::SessionStarted(SessionStarted {
                    email: format!("{user}@example.com"),
                    device_type: Some("desktop".into()),
                    browser: Some("Firefox".into()),
                    page: Some("/".into()),
                    ..SessionStarted::default()
                })
            } else if i % 4 == 0 {
                ActivityBody::PageViewed {
                    page: format!("/p/{}", i % 50),
                    title: None,
                }
            } else {
                ActivityBody::Heartbeat {
                    page: None,
                    activity: Interaction::Mouse,
                }
            };
            ActivityEvent {
                event_id: format!("ev-{i}"),
                occurred_at: base + (i / USERS) as i64 * 1000,
                user_id: user,
                session_id: format!("s-{u}"),
                body,
                received_at: None,
            }
        })
        .collect()
}

/// Events through decode, fold, state encoding and one sled batch per BATCH events.
fn fold_and_sled(n: usize) -> anyhow::Result<f64> {
    let contract = Contract::load()?;
    let base = 1_700_000_000_000;
    let encoded: Vec<Vec<u8>> = events(n, base)
        .iter()
        .map(|e| contract.encode_activity(e))
        .collect::<Result<_, _>>()?;
    let dir = tempfile::tempdir()?;
    let store = Store::open(dir.path())?;
    let mut table = PresenceTable::new(PresenceConfig::default());
    let t = Instant::now();
    let decoded: Vec<ActivityEvent> = encoded
        .iter()
        .map(|b| contract.decode_activity(b))
        .collect::<Result<_, _>>()?;
    let decode_secs = t.elapsed().as_secs_f64();
    let (mut fold_secs, mut write_secs) = (0.0, 0.0);
    let started = Instant::now();
    for (chunk_no, chunk) in decoded.chunks(BATCH).enumerate() {
        let mut now = base;
        let t = Instant::now();
        for (i, e) in chunk.iter().enumerate() {
            now = now.max(e.occurred_at);
            let offset = (chunk_no * BATCH + i) as i64;
            table
                .apply(
                    Some(&e.user_id),
                    e,
                    Position {
                        partition: 0,
                        offset,
                    },
                    now,
                )
                .map_err(|r| anyhow::anyhow!("{r}"))?;
        }
        fold_secs += t.elapsed().as_secs_f64();
        let t = Instant::now();
        let mut write = PartitionWrite::default();
        for id in table.take_dirty() {
            let value = table
                .get(&id)
                .map(|s| contract.encode_presence(s))
                .transpose()?;
            write.entities.push((id, value));
        }
        write.next_offset = Some(((chunk_no + 1) * BATCH) as i64);
        store.commit("presence/0", write)?;
        write_secs += t.elapsed().as_secs_f64();
    }
    store.flush()?;
    let total = started.elapsed().as_secs_f64() + decode_secs;
    let per = |secs: f64| n as f64 / secs;
    println!(
        "  decode {:.0}/s, fold {:.0}/s, encode+sled {:.0}/s",
        per(decode_secs),
        per(fold_secs),
        per(write_secs)
    );
    Ok(n as f64 / total)
}

fn drain(brokers: &str, topic: &str, n: usize) -> anyhow::Result<f64> {
    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("bench-drain-{}", std::process::id()))
        .set("enable.auto.commit", "false")
        .create()?;
    let mut tpl = rdkafka::TopicPartitionList::new();
    for p in 0..6 {
        tpl.add_partition_offset(topic, p, rdkafka::Offset::Beginning)?;
    }
    consumer.assign(&tpl)?;
    let mut got = 0usize;
    let mut started: Option<Instant> = None;
    while got < n {
        if let Some(m) = consumer.poll(Duration::from_secs(30)) {
            let m = m?;
            std::hint::black_box(m.payload());
            started.get_or_insert_with(Instant::now);
            got += 1;
        } else {
            anyhow::bail!("drain stalled at {got} of {n}");
        }
    }
    let secs = started.map_or(0.0, |s| s.elapsed().as_secs_f64());
    Ok(n as f64 / secs)
}

fn applied(metrics: &str) -> u64 {
    metrics
        .lines()
        .filter(|l| l.starts_with("sessionfold_processor_events_in_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

fn end_to_end(brokers: &str, n: usize) -> anyhow::Result<(f64, f64)> {
    let prefix = format!("bench{}", std::process::id());
    let topics = Topics::new(&prefix);
    let contract = Contract::load()?;
    let base = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_millis() as i64;
    let producer: ThreadedProducer<rdkafka::producer::DefaultProducerContext> =
        rdkafka::ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .set("partitioner", "murmur2_random")
            .set("linger.ms", "20")
            .set("queue.buffering.max.messages", "1000000")
            .create()?;
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(sessionfold_kafka::ensure_topics(
        brokers,
        &topics,
        6,
        Duration::from_secs(60),
    ))?;
    // Everything is in the topic before either reader starts, so both are timed
    // on the same stored data, from their first record to their last.
    for e in events(n, base) {
        let bytes = contract.encode_activity(&e)?;
        loop {
            match producer.send(
                BaseRecord::<str, [u8]>::to(&topics.activity)
                    .key(&e.user_id)
                    .payload(&bytes),
            ) {
                Ok(()) => break,
                Err((_, _)) => std::thread::sleep(Duration::from_millis(5)),
            }
        }
    }
    producer.flush(Duration::from_secs(120))?;
    let dir = tempfile::tempdir()?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_sessionfold-processor"))
        .args([
            "--brokers",
            brokers,
            "--topic-prefix",
            &prefix,
            "--group-id",
            &prefix,
        ])
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .arg("--state-dir")
        .arg(dir.path())
        .env("RUST_LOG", "warn")
        .stderr(std::process::Stdio::null())
        .spawn()?;
    let metrics_url = format!("http://127.0.0.1:{port}/metrics");
    let http = || -> anyhow::Result<String> {
        Ok(rt.block_on(async { reqwest::get(&metrics_url).await?.text().await })?)
    };
    let mut first: Option<(Instant, u64)> = None;
    let deadline = Instant::now() + Duration::from_secs(600);
    let processed = loop {
        let done = http().map(|m| applied(&m)).unwrap_or(0);
        if first.is_none() && done > 0 {
            first = Some((Instant::now(), done));
        }
        if done >= n as u64 {
            break done;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "processor stalled at {done} of {n}"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let (t0, d0) = first.unwrap_or((Instant::now(), 0));
    let processor_rate = (processed - d0) as f64 / t0.elapsed().as_secs_f64();
    let _ = child.kill();
    let _ = child.wait();
    let drain_rate = drain(brokers, &topics.activity, n)?;
    Ok((processor_rate, drain_rate))
}

fn main() -> anyhow::Result<()> {
    let n: usize = std::env::var("SESSIONFOLD_BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000);
    let rate = fold_and_sled(n)?;
    println!(
        "fold+sled (decode, fold, encode state, one sled batch per {BATCH}): {n} events, {rate:.0} events/s on one core"
    );
    if let Ok(brokers) = std::env::var("SESSIONFOLD_BENCH_BROKERS") {
        let (processor, drain) = end_to_end(&brokers, n)?;
        println!(
            "end to end on {brokers}: processor {processor:.0} events/s, do-nothing consumer {drain:.0} events/s, ratio {:.2}",
            processor / drain
        );
    }
    Ok(())
}
