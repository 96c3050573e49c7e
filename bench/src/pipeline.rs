//! The pipeline's own figures: fold + sled on one core, the broker's ceiling
//! (a do-nothing consumer) and the processor end to end.

use std::time::{Duration, Instant};

use rdkafka::Message;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};
use sessionfold_fold::{Position, PresenceConfig, PresenceTable};
use sessionfold_processor::pipeline::sizing::Sizing;
use sessionfold_processor::store::{CACHE_BYTES, PartitionWrite};
use sessionfold_processor::{StateStore, Store};
use sessionfold_schemas::{ActivityEvent, Contract, Topics};

use crate::services::{Service, machine_busy_seconds, metric_sum};

/// The processor's default batch limit: the fold stages size their batches
/// from it as the processor does while it works through a backlog.
const BATCH_BASE: usize = 10_000;

/// The parts of fold + sled, in events per second.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct FoldRates {
    /// Avro decode alone (the direct decoder of the current schema), with validation.
    pub decode: f64,
    /// The same decode through apache-avro's resolving path, for comparison.
    pub decode_resolving: f64,
    /// The pure fold alone.
    pub fold: f64,
    /// State encoding and one sled batch per catch-up batch (sized as the
    /// processor sizes them: 40,000 events, more while larger batches
    /// coalesce more).
    pub encode_and_sled: f64,
    /// States written per event.
    pub writes_per_event: f64,
    /// All three, one core.
    pub total: f64,
}

/// The stages of fold + sled, each a function of its own so that callgrind
/// can count the instructions of one stage alone (`instructions_per_event`).
pub const STAGES: [&str; 4] = ["decode", "decode_resolving", "fold", "store"];

#[inline(never)]
fn measured_decode(contract: &Contract, encoded: &[Vec<u8>]) -> anyhow::Result<Vec<ActivityEvent>> {
    // Sized up front: the processor folds each event as it is decoded, so
    // growing (and copying) a vector of every event is the harness's cost,
    // not the decoder's.
    let mut out = Vec::with_capacity(encoded.len());
    for b in encoded {
        out.push(contract.decode_activity(b)?);
    }
    Ok(out)
}

#[inline(never)]
fn measured_decode_resolving(contract: &Contract, encoded: &[Vec<u8>]) -> anyhow::Result<()> {
    for b in encoded {
        let e = contract.decode_activity_resolving(b)?;
        e.validate()?;
        std::hint::black_box(e);
    }
    Ok(())
}

#[inline(never)]
fn measured_fold(table: &mut PresenceTable, chunk: &[ActivityEvent], first: usize, now: &mut i64) {
    for (i, e) in chunk.iter().enumerate() {
        *now = (*now).max(e.occurred_at);
        let pos = Position {
            partition: 0,
            offset: (first + i) as i64,
        };
        // Refusals (none in this history) would cost the same as applies.
        let _ = table.apply(Some(&e.user_id), e, pos, *now);
    }
    table.tick(*now);
}

/// Encodes and stores the batch's changed states; returns how many.
#[inline(never)]
fn measured_store(
    table: &mut PresenceTable,
    contract: &Contract,
    store: &Store,
    next_offset: usize,
) -> anyhow::Result<usize> {
    let mut write = PartitionWrite::default();
    for id in table.take_dirty() {
        let value = table
            .get(&id)
            .map(|s| contract.encode_presence(s))
            .transpose()?;
        write.entities.push((id, value));
    }
    write.next_offset = Some(next_offset as i64);
    let states = write.entities.len();
    store.commit("presence/0", write)?;
    Ok(states)
}

/// Decode, fold, state encoding and one sled batch per catch-up batch, on
/// the calling thread; with `only`, runs that stage's work (and what it
/// needs) without timing, for callgrind.
fn stages(events: &[ActivityEvent], only: Option<&str>) -> anyhow::Result<FoldRates> {
    let contract = Contract::load()?;
    let encoded: Vec<Vec<u8>> = events
        .iter()
        .map(|e| contract.encode_activity(e))
        .collect::<Result<_, _>>()?;
    let dir = tempfile::tempdir()?;
    // The processor's cache setting, so that a deployment's choice can be
    // measured here.
    let cache = std::env::var("SESSIONFOLD_STORE_CACHE_MIB")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .map_or(CACHE_BYTES, |mib| mib << 20);
    let store = Store::open_with_cache(dir.path(), cache)?;
    let mut table = PresenceTable::new(PresenceConfig::default());
    let t = Instant::now();
    let decoded = measured_decode(&contract, &encoded)?;
    let decode_secs = t.elapsed().as_secs_f64();
    let t = Instant::now();
    if only.is_none_or(|s| s == "decode_resolving") {
        measured_decode_resolving(&contract, &encoded)?;
    }
    let resolving_secs = t.elapsed().as_secs_f64();
    let (mut fold_secs, mut write_secs) = (0.0, 0.0);
    let mut now = i64::MIN;
    // Batches as the processor makes them in catch-up: every batch ends
    // full, and what each wrote sizes the next.
    let mut sizing = Sizing::commits(BATCH_BASE, Duration::MAX);
    let (mut first, mut written) = (0, 0);
    while first < decoded.len() && only.is_none_or(|s| s == "fold" || s == "store") {
        let chunk = &decoded[first..(first + sizing.records()).min(decoded.len())];
        let t = Instant::now();
        measured_fold(&mut table, chunk, first, &mut now);
        fold_secs += t.elapsed().as_secs_f64();
        let t = Instant::now();
        let states = measured_store(&mut table, &contract, &store, first + chunk.len())?;
        write_secs += t.elapsed().as_secs_f64();
        sizing.wrote(sizing.factor(), chunk.len(), states);
        sizing.ended(false);
        first += chunk.len();
        written += states;
    }
    store.flush()?;
    let n = events.len() as f64;
    Ok(FoldRates {
        decode: n / decode_secs,
        decode_resolving: n / resolving_secs,
        fold: n / fold_secs,
        encode_and_sled: n / write_secs,
        writes_per_event: written as f64 / n,
        total: n / (decode_secs + fold_secs + write_secs),
    })
}

/// Runs of fold + sled behind one figure.
pub const FOLD_RUNS: usize = 3;

/// Decode, fold, state encoding and one sled batch per catch-up batch, on
/// the calling thread: the run with the median total of [`FOLD_RUNS`], each
/// on a fresh store. One run of the quick history lasts under a second, and
/// two such runs back to back on this shared machine read 399k and 579k
/// events/s with the same instructions.
pub fn fold_and_sled(events: &[ActivityEvent]) -> anyhow::Result<FoldRates> {
    let mut runs = (0..FOLD_RUNS)
        .map(|_| stages(events, None))
        .collect::<anyhow::Result<Vec<_>>>()?;
    runs.sort_by(|a, b| a.total.total_cmp(&b.total));
    Ok(runs.swap_remove(FOLD_RUNS / 2))
}

/// Runs one stage's work for callgrind (`--stage`).
pub fn run_stage(events: &[ActivityEvent], stage: &str) -> anyhow::Result<()> {
    anyhow::ensure!(STAGES.contains(&stage), "unknown stage {stage:?}");
    stages(events, Some(stage)).map(|_| ())
}

/// Instructions per event of each stage, counted by callgrind running this
/// binary on `events` events of `users` users; `None` without valgrind. A
/// count of instructions does not depend on the machine's load.
pub fn instructions_per_event(
    events: usize,
    users: usize,
    seed: u64,
) -> anyhow::Result<Option<Vec<(String, f64)>>> {
    if std::process::Command::new("valgrind")
        .arg("--version")
        .output()
        .is_err()
    {
        return Ok(None);
    }
    let exe = std::env::current_exe()?;
    let dir = tempfile::tempdir()?;
    let mut out = Vec::new();
    for stage in STAGES {
        let file = dir.path().join(format!("{stage}.out"));
        let status = std::process::Command::new("valgrind")
            .arg("--tool=callgrind")
            .arg("--collect-atstart=no")
            .arg(format!("--toggle-collect=*pipeline::measured_{stage}"))
            .arg(format!("--callgrind-out-file={}", file.display()))
            .arg(&exe)
            .args(["--stage", stage, "--events", &events.to_string()])
            .args(["--users", &users.to_string(), "--seed", &seed.to_string()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()?;
        anyhow::ensure!(
            status.success(),
            "callgrind of stage {stage} failed: {status}"
        );
        let text = std::fs::read_to_string(&file)?;
        let total: f64 = text
            .lines()
            .find_map(|l| {
                l.strip_prefix("totals:")
                    .or_else(|| l.strip_prefix("summary:"))
            })
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .ok_or_else(|| {
                anyhow::anyhow!("no instruction total in callgrind's output for {stage}")
            })?;
        out.push((stage.to_owned(), total / events as f64));
    }
    Ok(Some(out))
}

/// Writes the history into `<prefix>.activity` as the ingest would (Avro,
/// keyed by user); returns events per second acknowledged by the broker.
pub fn produce(brokers: &str, topics: &Topics, events: &[ActivityEvent]) -> anyhow::Result<f64> {
    let contract = Contract::load()?;
    let producer: ThreadedProducer<rdkafka::producer::DefaultProducerContext> =
        sessionfold_edge::client_config(brokers)
            .set("partitioner", "murmur2_random")
            .set("linger.ms", "20")
            .set("compression.type", "lz4")
            .set("queue.buffering.max.messages", "1000000")
            .create()?;
    let t = Instant::now();
    for e in events {
        let bytes = contract.encode_activity(e)?;
        let mut record = BaseRecord::<str, [u8]>::to(&topics.activity)
            .key(&e.user_id)
            .payload(&bytes);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((_, back)) => {
                    record = back;
                    producer.poll(Duration::from_millis(5));
                }
            }
        }
    }
    producer.flush(Duration::from_secs(300))?;
    Ok(events.len() as f64 / t.elapsed().as_secs_f64())
}

/// A consumer that reads every record of the topic and does nothing with it:
/// the most any consumer of this broker can do. Events per second from its
/// first record to its last. It fetches as the processor does: with
/// librdkafka's defaults tansu held each fetch for its full 500 ms, and
/// this ceiling read 340k events/s where the same consumer reads 1.7M.
/// Also returns the CPU time it used per record (this whole process, in
/// µs), against which the processor's own is set.
pub fn drain(brokers: &str, topic: &str, n: usize) -> anyhow::Result<Drain> {
    let consumer: BaseConsumer = sessionfold_edge::consumer_config(brokers)
        .set("group.id", format!("bench-drain-{}", std::process::id()))
        .set("enable.auto.commit", "false")
        .create()?;
    let mut tpl = rdkafka::TopicPartitionList::new();
    for p in sessionfold_edge::catch_up::partitions(&consumer, topic)? {
        tpl.add_partition_offset(topic, p, rdkafka::Offset::Beginning)?;
    }
    consumer.assign(&tpl)?;
    let mut got = 0usize;
    let mut started: Option<(Instant, f64, f64)> = None;
    while got < n {
        let Some(m) = consumer.poll(Duration::from_secs(30)) else {
            anyhow::bail!("drain stalled at {got} of {n}");
        };
        std::hint::black_box(m?.payload());
        if started.is_none() {
            started = Some((Instant::now(), own_cpu()?, machine_busy_seconds()?));
        }
        got += 1;
    }
    let (secs, cpu, machine) = match started {
        Some((t, c, m)) => (
            t.elapsed().as_secs_f64(),
            own_cpu()? - c,
            machine_busy_seconds()? - m,
        ),
        None => (0.0, 0.0, 0.0),
    };
    Ok(Drain {
        events_per_sec: n as f64 / secs,
        cpu_us_per_event: cpu * 1e6 / n.max(1) as f64,
        machine_us_per_event: machine * 1e6 / n.max(1) as f64,
        busy_cores: machine / secs,
    })
}

fn own_cpu() -> anyhow::Result<f64> {
    crate::services::cpu_seconds("/proc/self/stat")
}

/// The do-nothing consumer's run.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Drain {
    /// Records per second, from its first record to its last.
    pub events_per_sec: f64,
    /// CPU time of the benchmark's process per record over that window, in µs
    /// (the benchmark does nothing else meanwhile).
    pub cpu_us_per_event: f64,
    /// Busy CPU time of the whole machine per record over that window, in
    /// µs: the consumer's own, the broker's and anything else running.
    pub machine_us_per_event: f64,
    /// Cores the whole machine kept busy on average over that window.
    pub busy_cores: f64,
}

/// Starts a processor on topics that already hold `n` events and returns
/// events per second from its first folded event until the last is durable, and the
/// number of entities it then holds.
pub async fn processor(
    brokers: &str,
    prefix: &str,
    n: usize,
) -> anyhow::Result<(ProcessorRun, u64)> {
    let processor = Service::start("sessionfold-processor", brokers, prefix, &[]).await?;
    // From the first record folded, not the first batch committed: batches
    // are tens of thousands of records and the next one is folded while the
    // last is acknowledged, so a window opening at the first commit missed
    // work done inside it (one run on tansu read 531k events/s, with the
    // stages' own clock adding up to more than that window).
    let mut first: Option<(Instant, f64, f64)> = None;
    let deadline = Instant::now() + Duration::from_secs(1800);
    // Counted once durable: output acknowledged, state and offsets in sled.
    let done = loop {
        let (folded, done) = processor
            .metrics()
            .await
            .map(|m| {
                (
                    metric_sum(&m, "sessionfold_processor_folded_records_total"),
                    metric_sum(&m, "sessionfold_processor_committed_records_total"),
                )
            })
            .unwrap_or((0.0, 0.0));
        let done = done as u64;
        if first.is_none() && folded > 0.0 {
            first = Some((
                Instant::now(),
                processor.cpu_seconds()?,
                machine_busy_seconds()?,
            ));
        }
        if done >= n as u64 {
            break done;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "processor stalled at {done} of {n}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let (cpu, machine) = (processor.cpu_seconds()?, machine_busy_seconds()?);
    let (t0, cpu0, machine0) = first.unwrap_or_else(|| (Instant::now(), cpu, machine));
    let secs = t0.elapsed().as_secs_f64();
    let rate = done as f64 / secs;
    let m = processor.metrics().await?;
    // With SESSIONFOLD_BENCH_SMAPS=DIR the run's log and metrics are kept
    // beside the memory maps, to tell one run's figure from another's.
    if let Some(dir) = std::env::var_os("SESSIONFOLD_BENCH_SMAPS") {
        let dir = std::path::PathBuf::from(dir);
        std::fs::create_dir_all(&dir)?;
        processor.save_log(&dir.join(format!("processor-{prefix}.log")))?;
        std::fs::write(dir.join(format!("processor-{prefix}.metrics")), &m)?;
    }
    let entities = metric_sum(&m, "sessionfold_processor_state_entities") as u64;
    let per_event = |name: &str| metric_sum(&m, name) / done.max(1) as f64;
    let stage = |label: &str| {
        let line = format!("sessionfold_processor_stage_seconds_total{{stage=\"{label}\"}} ");
        m.lines()
            .find_map(|l| l.strip_prefix(line.as_str())?.trim().parse::<f64>().ok())
            .unwrap_or(0.0)
            * 1e6
            / done.max(1) as f64
    };
    let run = ProcessorRun {
        events_per_sec: rate,
        stage_us: STAGE_LABELS.map(stage),
        writes_per_event: per_event("sessionfold_processor_store_writes_total"),
        bytes_per_event: per_event("sessionfold_processor_store_bytes_total"),
        cpu_us_per_event: (cpu - cpu0) * 1e6 / done.max(1) as f64,
        machine_us_per_event: (machine - machine0) * 1e6 / done.max(1) as f64,
        busy_cores: (machine - machine0) / secs,
    };
    Ok((run, entities))
}

/// The processor's stages as its `stage_seconds_total` metric labels them.
pub const STAGE_LABELS: [&str; 6] = ["poll", "fold", "publish", "ack_wait", "store_wait", "store"];

/// The processor end to end.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct ProcessorRun {
    /// Input events per second, counted when durable.
    pub events_per_sec: f64,
    /// Microseconds per event spent in each of [`STAGE_LABELS`], over the
    /// processor's life (its own clock, not a profiler's).
    pub stage_us: [f64; 6],
    /// States written to sled per input event (after per-key coalescing).
    pub writes_per_event: f64,
    /// Bytes written to sled per input event.
    pub bytes_per_event: f64,
    /// CPU time of the whole process (all its threads, librdkafka's
    /// among them) per event over the same window, in µs.
    pub cpu_us_per_event: f64,
    /// Busy CPU time of the whole machine per event over that window, in µs:
    /// the processor's own, the broker's and the benchmark's scrapes.
    pub machine_us_per_event: f64,
    /// Cores the whole machine kept busy on average over that window.
    pub busy_cores: f64,
}

/// A processor of a new group with an empty store on topics whose changelog
/// another processor wrote: every partition is restored from the changelog
/// before input is read. Returns (changelog records read, records per second
/// from the first restored record until all `entities` are held again).
pub async fn restore(brokers: &str, prefix: &str, entities: u64) -> anyhow::Result<(u64, f64)> {
    let group = format!("{prefix}-restore");
    let processor = Service::start(
        "sessionfold-processor",
        brokers,
        prefix,
        &["--group-id", &group],
    )
    .await?;
    let mut first: Option<Instant> = None;
    let deadline = Instant::now() + Duration::from_secs(1800);
    loop {
        let m = processor.metrics().await.unwrap_or_default();
        let restored = metric_sum(&m, "sessionfold_processor_restored_records_total") as u64;
        let restoring = metric_sum(&m, "sessionfold_processor_restoring_partitions");
        let held = metric_sum(&m, "sessionfold_processor_state_entities") as u64;
        if restored > 0 && first.is_none() {
            first = Some(Instant::now());
        }
        if let Some(t0) = first
            && restoring == 0.0
            && held >= entities
        {
            let secs = t0.elapsed().as_secs_f64().max(0.001);
            return Ok((restored, restored as f64 / secs));
        }
        anyhow::ensure!(Instant::now() < deadline, "restore stalled at {restored}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The Kafka Streams peer (`bench/streams/`): the same presence fold as a
/// Kafka Streams application with a RocksDB store, its changelog and
/// exactly-once v2, reading the same history on the same broker. Its events
/// per second are counted like the processor's: from the first committed
/// input offset until the committed offsets (committed with each
/// transaction) reach the end of the history.
pub async fn streams_peer(
    brokers: &str,
    topic: &str,
    n: usize,
    classpath: &str,
    schema: &std::path::Path,
) -> anyhow::Result<f64> {
    let app = format!("bench-streams-{}", std::process::id());
    let dir = tempfile::tempdir()?;
    let log = std::fs::File::create(dir.path().join("streams.log"))?;
    let mut child = std::process::Command::new("java")
        .args([
            "-cp",
            classpath,
            "io.sessionfold.bench.PresenceStreams",
            brokers,
            topic,
        ])
        .arg(schema)
        .arg(&app)
        .arg(dir.path().join("state"))
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()?;
    let consumer: BaseConsumer = sessionfold_edge::client_config(brokers)
        .set("group.id", &app)
        .set("enable.auto.commit", "false")
        .create()?;
    let mut tpl = rdkafka::TopicPartitionList::new();
    for p in sessionfold_edge::catch_up::partitions(&consumer, topic)? {
        tpl.add_partition(topic, p);
    }
    let mut first: Option<(Instant, u64)> = None;
    let deadline = Instant::now() + Duration::from_secs(1800);
    let done = loop {
        let committed = consumer.committed_offsets(tpl.clone(), Duration::from_secs(5))?;
        let done: u64 = committed
            .elements()
            .iter()
            .filter_map(|e| match e.offset() {
                rdkafka::Offset::Offset(o) => u64::try_from(o).ok(),
                _ => None,
            })
            .sum();
        if first.is_none() && done > 0 {
            first = Some((Instant::now(), done));
        }
        if done >= n as u64 {
            break done;
        }
        if let Some(status) = child.try_wait()? {
            let log = std::fs::read_to_string(dir.path().join("streams.log")).unwrap_or_default();
            anyhow::bail!("the Kafka Streams peer exited with {status}:\n{log}");
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the Kafka Streams peer stalled at {done} of {n}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let (t0, d0) = first.unwrap_or((Instant::now(), 0));
    let rate = (done - d0) as f64 / t0.elapsed().as_secs_f64();
    let _ = child.kill();
    let _ = child.wait();
    Ok(rate)
}
