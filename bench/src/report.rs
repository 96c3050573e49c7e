//! The results of one run, as `bench-results.json` and as the tables of
//! `BENCHMARKS.md`, with each figure's ratio to its baseline and target.

use std::fmt::Write as _;

use serde::Serialize;

use crate::Args;
use crate::baselines::Baseline;
use crate::live::{AtSize, Freshness};
use crate::pipeline::FoldRates;
use crate::services::Latency;

/// Replay and export rates, events per second (process start included).
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Replay {
    /// `replay` from the broker.
    pub from_broker: f64,
    /// `export` to an Avro file.
    pub export: f64,
    /// `replay --input` from that file.
    pub from_file: f64,
}

/// Where and how the run happened.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    /// CPU model.
    pub cpu: String,
    /// Cores available.
    pub cores: usize,
    /// Memory in GiB.
    pub memory_gib: f64,
    /// Kernel release.
    pub kernel: String,
}

/// The broker-bound figures measured on a second broker.
#[derive(Debug, Clone, Serialize)]
pub struct BrokerRates {
    /// Producing the history (events/s).
    pub produce: f64,
    /// The do-nothing consumer (events/s).
    pub drain: f64,
    /// Its CPU time and the machine's, per record.
    pub drain_cpu: crate::pipeline::Drain,
    /// The processor end to end (events/s).
    pub processor: f64,
    /// Its store writes.
    pub store: crate::pipeline::ProcessorRun,
    /// The Kafka Streams peer on the same history (events/s), when built.
    pub streams: Option<f64>,
}

/// Everything measured.
#[derive(Debug, Clone, Serialize)]
pub struct Results {
    /// When (UTC).
    pub date: String,
    /// The machine.
    pub machine: Machine,
    /// The command.
    pub command: String,
    /// Events in the history.
    pub events: usize,
    /// Users in the history.
    pub users: usize,
    /// Seed of the history.
    pub seed: u64,
    /// Fold + sled on one core.
    pub fold: Option<FoldRates>,
    /// Instructions per event of each stage (callgrind), when valgrind is there.
    pub instructions: Option<Vec<(String, f64)>>,
    /// Producing the history to the broker (events/s).
    pub produce: Option<f64>,
    /// The do-nothing consumer (events/s).
    pub drain: Option<f64>,
    /// Its CPU time and the machine's, per record.
    pub drain_cpu: Option<crate::pipeline::Drain>,
    /// The processor end to end (events/s).
    pub processor: Option<f64>,
    /// The processor's store writes in that run.
    pub processor_store: Option<crate::pipeline::ProcessorRun>,
    /// Producing, the ceiling and the processor on Apache Kafka.
    pub on_kafka: Option<BrokerRates>,
    /// Restore from the changelog: (records, records/s).
    pub restore: Option<(u64, f64)>,
    /// Replay and export.
    pub replay: Option<Replay>,
    /// PostgreSQL baseline.
    pub postgres: Option<Baseline>,
    /// Redis baseline.
    pub redis: Option<Baseline>,
    /// HTTP ingest, batches of 100 (events/s).
    pub ingest_batched: Option<f64>,
    /// HTTP ingest, one event per request (events/s).
    pub ingest_single: Option<f64>,
    /// Freshness under load.
    pub freshness: Option<Freshness>,
    /// Query latency and memory by size.
    pub sizes: Vec<AtSize>,
    /// The broker the services ran on for `sizes`.
    pub sizes_broker: &'static str,
}

fn machine() -> Machine {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|v| v.trim_start_matches([' ', '\t', ':']).to_owned())
        .unwrap_or_else(|| "unknown".into());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let kb: f64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0);
    Machine {
        cpu,
        cores: std::thread::available_parallelism().map_or(0, usize::from),
        memory_gib: (kb / 1024.0 / 1024.0 * 10.0).round() / 10.0,
        kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .unwrap_or_default()
            .trim()
            .to_owned(),
    }
}

fn rate(v: Option<f64>) -> String {
    v.map_or_else(|| "not run".into(), |v| format!("{v:.0}"))
}

fn ratio(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.2}", a / b),
        _ => "–".into(),
    }
}

fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "**missed**" }
}

/// The fold + sled target for a history of `users`: with many users per
/// partition a commit coalesces less and each write lands in a larger
/// store, so the large preset (100k users) has the lower bar.
fn fold_target(users: usize) -> u64 {
    if users >= 100_000 { 250_000 } else { 500_000 }
}

/// `n` with commas between its thousands, as the targets are written.
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn lat(l: &Latency) -> String {
    format!("{:.2} / {:.2}", l.p50_ms, l.p99_ms)
}

impl Results {
    /// Empty results for this run.
    pub fn new(args: &Args) -> Results {
        Results {
            date: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            machine: machine(),
            command: args.command.clone(),
            events: args.events,
            users: args.users,
            seed: args.seed,
            fold: None,
            produce: None,
            drain: None,
            drain_cpu: None,
            processor: None,
            processor_store: None,
            instructions: None,
            on_kafka: None,
            restore: None,
            replay: None,
            postgres: None,
            redis: None,
            ingest_batched: None,
            ingest_single: None,
            freshness: None,
            sizes: Vec::new(),
            sizes_broker: "",
        }
    }

    /// Writes both files, keeping the figures of runs of their own
    /// (steady state, restarts) from the files before.
    pub fn write(&self, args: &Args) -> anyhow::Result<()> {
        let mut json = serde_json::to_value(self)?;
        let before: Option<serde_json::Value> = std::fs::read_to_string(&args.json)
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok());
        let before_md = std::fs::read_to_string(&args.markdown).unwrap_or_default();
        let mut markdown = self.markdown();
        for (name, keys) in crate::sections::OWN_RUNS {
            for key in keys {
                if let Some(v) = before.as_ref().and_then(|b| b.get(key)) {
                    json[key] = v.clone();
                }
            }
            if let Some(section) = crate::sections::kept(&before_md, name) {
                markdown = crate::sections::splice(&markdown, name, &section);
            }
        }
        std::fs::write(&args.json, serde_json::to_string_pretty(&json)? + "\n")?;
        std::fs::write(&args.markdown, markdown)?;
        Ok(())
    }

    /// The Markdown report: one section after another.
    pub fn markdown(&self) -> String {
        let mut md = String::new();
        self.header(&mut md);
        self.writes(&mut md);
        self.instructions(&mut md);
        self.restore_and_replay(&mut md);
        self.reads(&mut md);
        self.memory(&mut md);
        self.freshness_table(&mut md);
        self.brokers(&mut md);
        self.stages(&mut md);
        self.cpu_table(&mut md);
        self.targets(&mut md);
        md.push_str(NOTES);
        md
    }
}

/// How the contenders were run and measured.
const NOTES: &str = "\n## Notes\n\n\
             - PostgreSQL runs with `synchronous_commit = off`, prepared statements and a pool of 32, as a \
             fair user of a presence table would; Redis gets one multiplexed connection with 32 commands in \
             flight. Both are on loopback like the broker.\n\
             - The Redis reads return ids and scores only; a real active list would also fetch each user's \
             profile, so its read figures are a lower bound.\n\
             - The processor figure counts an event once it is durable (its batch's output acknowledged, state \
             and input offsets in sled), over the time from its first record folded until the last is durable \
             (Prometheus counters polled every 20 ms), on records already in the topic; the Kafka Streams \
             peer's counts committed input offsets from its first commit to its last, which leaves out its \
             work before the first commit, in its favour; the do-nothing consumer's runs from its first record \
             to its last, with the processor's consumer settings (`fetch.wait.max.ms` and \
             `fetch.queue.backoff.ms` at 20 ms).\n\
             - Replay figures include process start, the read to the end of the topics and writing every report.\n\
             - Memory is VmRSS from /proc after loading, minus VmRSS of the same process with nothing loaded.\n\
             - Where the time and the memory go, and what the missed targets would take: `docs/performance-history.md` \
             (profiles in `docs/profiles/`).\n";

impl Results {
    /// The title, the run and the machine.
    fn header(&self, md: &mut String) {
        let _ = writeln!(md, "# Benchmarks\n");
        let _ = writeln!(
            md,
            "Written by `sessionfold-bench` on {}; every figure below is from that one run.\n\
             Machines here are shared and noisy, so compare the ratios within a run, not\n\
             figures across runs. Targets that are not met say so.\n",
            self.date
        );
        let m = &self.machine;
        let _ = writeln!(
            md,
            "- Command: `{}`\n- Machine: {} ({} cores), {} GiB, Linux {}\n- Broker: tansu 0.6.0, memory storage, loopback\n- History: {} events of {} users, seed {} (sessions with heartbeats every 20–40 s, page views, half end with a logout)\n",
            self.command,
            m.cpu,
            m.cores,
            m.memory_gib,
            m.kernel,
            self.events,
            self.users,
            self.seed
        );
    }

    /// Write rates of every contender, and the fold's split.
    fn writes(&self, md: &mut String) {
        let pg = self.postgres.as_ref();
        let rd = self.redis.as_ref();
        let _ = writeln!(md, "## Writes: events per second\n");
        let _ = writeln!(
            md,
            "| contender | events/s | ÷ PostgreSQL | ÷ Redis | ÷ do-nothing consumer |\n|---|---|---|---|---|"
        );
        let row = |md: &mut String, name: &str, v: Option<f64>| {
            let _ = writeln!(
                md,
                "| {name} | {} | {} | {} | {} |",
                rate(v),
                ratio(v, pg.map(|b| b.events_per_sec)),
                ratio(v, rd.map(|b| b.events_per_sec)),
                ratio(v, self.drain)
            );
        };
        row(
            md,
            "PostgreSQL: INSERT per session, UPDATE per heartbeat (pool of 32)",
            pg.map(|b| b.events_per_sec),
        );
        row(
            md,
            "Redis: ZADD per event (32 in flight)",
            rd.map(|b| b.events_per_sec),
        );
        row(md, "do-nothing rdkafka consumer (the ceiling)", self.drain);
        row(md, "**sessionfold processor, end to end**", self.processor);
        row(
            md,
            "sessionfold HTTP ingest, batches of 100",
            self.ingest_batched,
        );
        row(
            md,
            "sessionfold HTTP ingest, one event per request",
            self.ingest_single,
        );
        row(
            md,
            "producing the history to the broker (rdkafka, lz4)",
            self.produce,
        );
        if let Some(f) = &self.fold {
            row(
                md,
                "fold + sled, one core (decode, fold, encode, sled batch)",
                Some(f.total),
            );
            let _ = writeln!(
                md,
                "\nFold + sled split (events/s): decode {:.0} (apache-avro's resolving path: {:.0}), fold {:.0}, encode + sled {:.0} ({:.3} states written per event, in batches sized as the processor sizes them in catch-up). Fold + sled ran {} times, each on a fresh store; these are the figures of the run with the median total.",
                f.decode,
                f.decode_resolving,
                f.fold,
                f.encode_and_sled,
                f.writes_per_event,
                crate::pipeline::FOLD_RUNS
            );
        }
    }

    /// Instructions per event, by stage.
    fn instructions(&self, md: &mut String) {
        if let Some(ir) = &self.instructions {
            let stages: Vec<String> = ir
                .iter()
                .map(|(stage, n)| format!("{stage} {n:.0}"))
                .collect();
            let _ = writeln!(
                md,
                "\nInstructions per event, counted by callgrind over a history of the same shape \
                 (`--instruction-events`, as many events per user; independent of the machine's load): {}. `decode_resolving` is apache-avro's path, the \
                 decoder used before the direct one; `store` is state encoding and the sled batch.",
                stages.join(", ")
            );
        }
    }

    /// Restore and replay rates.
    fn restore_and_replay(&self, md: &mut String) {
        if let Some((records, rate)) = self.restore {
            let _ = writeln!(
                md,
                "\nState restore after a rebalance (a new processor with an empty store reading the \
                 presence and import changelogs): {records} changelog records at {rate:.0} records/s."
            );
        }
        if let Some(r) = &self.replay {
            let _ = writeln!(
                md,
                "\nReplay (process start and report writing included): from the broker {:.0} events/s, \
                 export to Avro {:.0} events/s, from the Avro file {:.0} events/s.",
                r.from_broker, r.export, r.from_file
            );
        }
    }

    /// Read latency of every contender.
    fn reads(&self, md: &mut String) {
        let (pg, rd) = (self.postgres.as_ref(), self.redis.as_ref());
        let _ = writeln!(md, "\n## Reads: latency p50 / p99 in ms\n");
        let _ = writeln!(
            md,
            "| contender | sessions | count / summary | first page of active users |\n|---|---|---|---|"
        );
        let baselines = [
            ("PostgreSQL (indexed `last_activity`)", pg),
            ("Redis (ids and scores only)", rd),
        ];
        let mut rows: Vec<(&str, usize, String, String)> = baselines
            .iter()
            .filter_map(|(n, b)| Some((*n, (*b)?)))
            .map(|(n, b)| (n, self.users, lat(&b.count), lat(&b.first_page)))
            .collect();
        rows.extend(self.sizes.iter().map(|s| {
            (
                "sessionfold projections over HTTP",
                s.sessions,
                lat(&s.summary),
                lat(&s.active_first_page),
            )
        }));
        for (name, sessions, count, page) in rows {
            let _ = writeln!(md, "| {name} | {sessions} | {count} | {page} |");
        }
    }

    /// Memory per tracked session.
    fn memory(&self, md: &mut String) {
        let _ = writeln!(
            md,
            "\n## Memory per tracked session (resident, above the empty process)\n\nThe services ran on {}.\n",
            self.sizes_broker
        );
        let _ = writeln!(
            md,
            "| sessions | processor bytes | projections bytes |\n|---|---|---|"
        );
        for s in &self.sizes {
            let _ = writeln!(
                md,
                "| {} | {:.0} | {:.0} |",
                s.sessions, s.processor_bytes_per_session, s.projections_bytes_per_session
            );
        }
    }

    /// Freshness under load.
    fn freshness_table(&self, md: &mut String) {
        if let Some(f) = &self.freshness {
            let _ = writeln!(
                md,
                "\n## Freshness under {:.0} events/s of background load\n",
                f.background_events_per_sec
            );
            let _ = writeln!(md, "| path | probes | p50 ms | p99 ms |\n|---|---|---|---|");
            let _ = writeln!(
                md,
                "| POST accepted → `GET /v1/presence/users/{{id}}` | {} | {:.1} | {:.1} |",
                f.user_view.n, f.user_view.p50_ms, f.user_view.p99_ms
            );
            let _ = writeln!(
                md,
                "| POST accepted → `/v1/stream` | {} | {:.1} | {:.1} |",
                f.stream.n, f.stream.p50_ms, f.stream.p99_ms
            );
            let _ = writeln!(
                md,
                "| tab closed (end ticket by beacon) → user offline in the view | {} | {:.1} | {:.1} |",
                f.leave.n, f.leave.p50_ms, f.leave.p99_ms
            );
        }
    }

    /// The processor on each broker, and the Kafka Streams peer.
    fn brokers(&self, md: &mut String) {
        if let Some(k) = &self.on_kafka {
            let _ = writeln!(md, "\n## The processor on each broker\n");
            let _ = writeln!(
                md,
                "| broker | producing (events/s) | do-nothing consumer | processor | processor ÷ consumer |\n|---|---|---|---|---|"
            );
            let _ = writeln!(
                md,
                "| tansu 0.6.0 | {} | {} | {} | {} |",
                rate(self.produce),
                rate(self.drain),
                rate(self.processor),
                ratio(self.processor, self.drain)
            );
            let _ = writeln!(
                md,
                "| Apache Kafka 4.1.1 | {:.0} | {:.0} | {:.0} | {:.2} |",
                k.produce,
                k.drain,
                k.processor,
                k.processor / k.drain
            );
            if let Some(peer) = k.streams {
                let _ = writeln!(
                    md,
                    "\nThe same presence fold as a Kafka Streams application (`bench/streams/`: \
                     per user and session, heartbeat and page-view counts, last activity and page, \
                     RocksDB store with its changelog and record cache, exactly-once v2, one stream \
                     thread), on the same history and broker: {peer:.0} events/s; sessionfold's \
                     processor ÷ Kafka Streams = {:.2}.",
                    k.processor / peer
                );
            }
        }
    }

    /// Where the processor's time goes.
    fn stages(&self, md: &mut String) {
        let runs = [
            ("tansu 0.6.0", self.processor_store),
            (
                "Apache Kafka 4.1.1",
                self.on_kafka.as_ref().map(|k| k.store),
            ),
        ];
        if runs.iter().any(|(_, r)| r.is_some()) {
            let _ = writeln!(
                md,
                "\nWhere the processor's time goes, by its own clock (`sessionfold_processor_stage_seconds_total`), \
                 in µs per event: poll (the consumer's thread filling a batch, from its first record to \
                 its hand-over), fold (checks, decode, fold), publish (state encoding, handing records to \
                 the producer), ack wait (the broker's acknowledgements), store wait (the fold thread \
                 waiting for the store writer to finish the batch before), store (sled, on the store \
                 writer's thread). The wall column is 1 / events per second. Poll and store run on threads \
                 of their own; fold, publish, ack wait and store wait share the fold thread: those four \
                 together against the wall tell how busy the fold thread was.\n"
            );
            let _ = writeln!(
                md,
                "| broker | poll | fold | publish | ack wait | store wait | store | fold thread | wall |\n|---|---|---|---|---|---|---|---|---|"
            );
            for (broker, run) in runs {
                let Some(run) = run else { continue };
                let cells: Vec<String> = run.stage_us.iter().map(|u| format!("{u:.2}")).collect();
                let _ = writeln!(
                    md,
                    "| {broker} | {} | {:.2} | {:.2} |",
                    cells.join(" | "),
                    run.stage_us[1..5].iter().sum::<f64>(),
                    1e6 / run.events_per_sec
                );
            }
        }
    }

    /// Each target, its measured figure and its verdict.
    fn targets(&self, md: &mut String) {
        let _ = writeln!(md, "\n## Against the targets\n");
        let _ = writeln!(md, "| target | measured | verdict |\n|---|---|---|");
        if let (Some(p), Some(d)) = (self.processor, self.drain) {
            let _ = writeln!(
                md,
                "| processor ≥ 0.9 × do-nothing consumer (tansu) | {:.2} | {} |",
                p / d,
                verdict(p / d >= 0.9)
            );
        }
        if let Some(k) = &self.on_kafka {
            let _ = writeln!(
                md,
                "| processor ≥ 0.9 × do-nothing consumer (Apache Kafka) | {:.2} | {} |",
                k.processor / k.drain,
                verdict(k.processor / k.drain >= 0.9)
            );
        }
        let stores = [
            ("tansu", self.processor_store),
            ("Apache Kafka", self.on_kafka.as_ref().map(|k| k.store)),
        ];
        for (broker, run) in stores.iter().filter_map(|(b, r)| Some((b, (*r)?))) {
            let _ = writeln!(
                md,
                "| store writes per event ≤ 0.2 in catch-up ({broker}; {:.0} bytes written per event) | {:.3} | {} |",
                run.bytes_per_event,
                run.writes_per_event,
                verdict(run.writes_per_event <= 0.2)
            );
        }
        if let Some(f) = &self.fold {
            let _ = writeln!(
                md,
                "| decode of the current schema ≥ 2,000,000 events/s per core | {:.0} | {} |",
                f.decode,
                verdict(f.decode >= 2_000_000.0)
            );
        }
        if let Some(k) = &self.on_kafka
            && let Some(peer) = k.streams
        {
            let _ = writeln!(
                md,
                "| processor ahead of the Kafka Streams peer (Apache Kafka) | {:.2}× | {} |",
                k.processor / peer,
                verdict(k.processor > peer)
            );
        }
        if let Some(f) = &self.fold {
            let target = fold_target(self.users);
            let _ = writeln!(
                md,
                "| fold + sled ≥ {} events/s per core ({} users) | {:.0} | {} |",
                thousands(target),
                self.users,
                f.total,
                verdict(f.total >= target as f64)
            );
        }
        if let Some(f) = &self.freshness {
            let worst = f.user_view.p99_ms.max(f.stream.p99_ms);
            let _ = writeln!(
                md,
                "| freshness p99 < 200 ms | {worst:.1} ms | {} |",
                verdict(worst < 200.0)
            );
        }
        if let Some(f) = &self.freshness {
            let _ = writeln!(
                md,
                "| closed tab offline p99 ≤ 5 s | {:.1} ms | {} |",
                f.leave.p99_ms,
                verdict(f.leave.p99_ms <= 5_000.0)
            );
        }
        if let Some(s) = self.sizes.iter().max_by_key(|s| s.sessions) {
            let worst = s.active_first_page.p99_ms.max(s.summary.p99_ms);
            let _ = writeln!(
                md,
                "| query p99 < 5 ms at 1,000,000 sessions | {worst:.2} ms at {} sessions | {} |",
                s.sessions,
                if s.sessions < 1_000_000 {
                    "not measured at 1 M in this run"
                } else {
                    verdict(worst < 5.0)
                }
            );
            for (service, target, label, bytes) in [
                ("processor", 1024.0, "1 KiB", s.processor_bytes_per_session),
                (
                    "projections",
                    700.0,
                    "700 B",
                    s.projections_bytes_per_session,
                ),
            ] {
                let _ = writeln!(
                    md,
                    "| {service} memory < {label} per session | {bytes:.0} B at {} sessions | {} |",
                    s.sessions,
                    verdict(bytes < target)
                );
            }
        }
    }
}

impl Results {
    /// CPU time per event of the processor against the do-nothing
    /// consumer's, what the rest of the machine (the broker, mostly) took in
    /// each run, and what the processor could spend per event at 0.9 of the
    /// consumer's rate on this machine's cores.
    fn cpu_table(&self, md: &mut String) {
        let rows = [
            ("tansu 0.6.0", self.drain_cpu, self.processor_store),
            (
                "Apache Kafka 4.1.1",
                self.on_kafka.as_ref().map(|k| k.drain_cpu),
                self.on_kafka.as_ref().map(|k| k.store),
            ),
        ];
        let rows: Vec<_> = rows
            .into_iter()
            .filter_map(|(b, d, p)| Some((b, d?, p?)))
            .collect();
        if rows.is_empty() {
            return;
        }
        let cores = self.machine.cores;
        let _ = writeln!(
            md,
            "\nCPU time per event, user and system, over the same windows as the rates: of every thread \
             of the process (`/proc/PID/stat`; the do-nothing consumer is the benchmark's process, which \
             does nothing else meanwhile), and of the rest of the machine (`/proc/stat`, busy time of all \
             {cores} cores minus the process's own: the broker, mostly). \"Busy\" is the cores the whole \
             machine kept busy on average. The budget is what the processor could spend per event at 0.9 \
             of the consumer's rate if all {cores} cores were busy and the rest of the machine took what it \
             took per event in the processor's run: {cores} cores ÷ (0.9 × the consumer's events/s) − that \
             rest. The last column is the CPU the processor alone would need at that rate: \
             0.9 × the consumer's events/s × its CPU per event.\n"
        );
        let _ = writeln!(
            md,
            "| broker | consumer µs/record | rest µs/record | busy | processor µs/event | rest µs/event | busy | processor's budget µs/event | cores for 0.9 × the consumer |\n|---|---|---|---|---|---|---|---|---|"
        );
        for (broker, drain, run) in rows {
            let _ = writeln!(md, "{}", cpu_row(broker, &drain, &run, cores));
        }
    }
}

/// One broker's row of the CPU table.
fn cpu_row(
    broker: &str,
    drain: &crate::pipeline::Drain,
    run: &crate::pipeline::ProcessorRun,
    cores: usize,
) -> String {
    let rate = drain.events_per_sec;
    let (consumer, processor) = (drain.cpu_us_per_event, run.cpu_us_per_event);
    let rest = run.machine_us_per_event - processor;
    let budget = cores as f64 * 1e6 / (0.9 * rate) - rest;
    format!(
        "| {broker} | {consumer:.2} | {:.2} | {:.2} | {processor:.2} | {rest:.2} | {:.2} | {budget:.2} | {:.1} |",
        drain.machine_us_per_event - consumer,
        drain.busy_cores,
        run.busy_cores,
        0.9 * rate * processor / 1e6
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_processor_budget_is_what_the_cores_leave_after_the_rest() {
        let drain = crate::pipeline::Drain {
            events_per_sec: 2_000_000.0,
            cpu_us_per_event: 0.4,
            machine_us_per_event: 1.0,
            busy_cores: 2.0,
        };
        let run = crate::pipeline::ProcessorRun {
            events_per_sec: 800_000.0,
            stage_us: [0.0; 6],
            writes_per_event: 0.1,
            bytes_per_event: 30.0,
            cpu_us_per_event: 1.5,
            machine_us_per_event: 2.25,
            busy_cores: 1.8,
        };
        // 2 cores / (0.9 × 2M/s) = 1.11 µs per event, less the rest's 0.75;
        // 0.9 × 2M/s × 1.5 µs = 2.7 cores.
        assert_eq!(
            cpu_row("b", &drain, &run, 2),
            "| b | 0.40 | 0.60 | 2.00 | 1.50 | 0.75 | 1.80 | 0.36 | 2.7 |"
        );
    }

    #[test]
    fn a_run_with_nothing_measured_has_its_sections_once_in_order() {
        use clap::Parser;
        let md = Results::new(&crate::Args::parse_from(["sessionfold-bench"])).markdown();
        let headings: Vec<&str> = md.lines().filter(|l| l.starts_with('#')).collect();
        assert_eq!(
            headings,
            [
                "# Benchmarks",
                "## Writes: events per second",
                "## Reads: latency p50 / p99 in ms",
                "## Memory per tracked session (resident, above the empty process)",
                "## Against the targets",
                "## Notes",
            ]
        );
        assert!(md.ends_with(NOTES));
    }

    #[test]
    fn the_large_preset_has_the_lower_fold_target() {
        assert_eq!(fold_target(10_000), 500_000);
        assert_eq!(fold_target(99_999), 500_000);
        assert_eq!(fold_target(100_000), 250_000);
        assert_eq!(thousands(250_000), "250,000");
        assert_eq!(thousands(2_000_000), "2,000,000");
        assert_eq!(thousands(999), "999");
    }
}
