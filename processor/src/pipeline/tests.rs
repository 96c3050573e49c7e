//! The commit protocol in process, with the changelog and the store in
//! memory: a batch's states are stored, and its positions move, only once
//! its output is acknowledged; a batch that changes nothing a reader sees
//! publishes nothing and still moves its positions.

use std::sync::atomic::AtomicBool;

use rdkafka::message::Headers;
use sessionfold_fold::{ImportConfig, PresenceConfig};
use sessionfold_schemas::{ActivityBody, ActivityEvent, Interaction};

use super::*;
use crate::output::Reached;
use crate::store::{MemoryStore, StateStore};

pub(super) const P0: Part = (Stream::Activity, 0);

/// One record handed to the changelog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Published {
    pub(super) topic: String,
    partition: Option<i32>,
    pub(super) key: String,
    headers: Vec<(String, String)>,
    /// The state, `None` for a deletion.
    pub(super) payload: Option<Vec<u8>>,
}

impl Published {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A changelog in memory whose broker acknowledges, or refuses, everything.
#[derive(Clone, Default)]
pub(super) struct MemorySink {
    pub(super) published: Arc<Mutex<Vec<Published>>>,
    pub(super) refuse: Arc<AtomicBool>,
}

impl ChangelogSink for MemorySink {
    fn publish(&self, records: &mut [Outgoing<'_>]) -> Result<(), ProcessorError> {
        let mut published = sessionfold_edge::lock(&self.published);
        for o in records.iter() {
            published.push(Published {
                topic: o.topic.to_owned(),
                partition: o.partition,
                key: String::from_utf8_lossy(&o.key).into_owned(),
                payload: o.payload.clone(),
                headers: o
                    .headers
                    .iter()
                    .map(|h| {
                        let value = h.value.map(String::from_utf8_lossy).unwrap_or_default();
                        (h.key.to_owned(), value.into_owned())
                    })
                    .collect(),
            });
        }
        Ok(())
    }

    fn acknowledged(&self) -> Result<Reached, ProcessorError> {
        if self.refuse.load(Ordering::SeqCst) {
            return Err(ProcessorError::Delivery {
                topic: "t.presence".into(),
                reason: "refused".into(),
            });
        }
        // Offsets as a broker gives them: one per record, per partition.
        let mut reached: Reached = Vec::new();
        for p in sessionfold_edge::lock(&self.published).iter() {
            let partition = p.partition.unwrap_or(0);
            match reached
                .iter_mut()
                .find(|(t, q, _)| *q == partition && *t == p.topic)
            {
                Some((_, _, n)) => *n += 1,
                None => reached.push((p.topic.clone(), partition, 1)),
            }
        }
        Ok(reached)
    }
}

pub(super) fn settings() -> LoopSettings {
    LoopSettings {
        brokers: "unused".into(),
        topics: Topics::new("t"),
        group_id: "g".into(),
        presence: PresenceConfig::default(),
        imports: ImportConfig::default(),
        activity_resolution: 0,
        tick: Duration::from_secs(1),
        batch_max: 100,
        instance_id: None,
        batch_wait: Duration::from_millis(50),
        rebuild_damaged: true,
        session_timeout: Duration::from_secs(6),
        heartbeat_interval: Duration::from_secs(1),
        stuck_after: Duration::from_secs(60),
        describe_group: false,
        fold_threads: 1,
        fold_parallel_from: 1000,
        standby: false,
        standby_ready_within: Duration::from_secs(10),
    }
}

/// A core owning partition 0 of the activity topic from offset 0.
fn core(store: &MemoryStore, sink: &MemorySink, metrics: &Metrics) -> Core {
    coalescing(store, sink, metrics, 0)
}

/// Like [`core`], holding back refreshes for up to `resolution`.
pub(super) fn coalescing(
    store: &MemoryStore,
    sink: &MemorySink,
    metrics: &Metrics,
    resolution: Millis,
) -> Core {
    let settings = LoopSettings {
        activity_resolution: resolution,
        ..settings()
    };
    let mut core = Core::new(
        settings,
        Contract::load().expect("the schemas load"),
        Arc::new(store.clone()),
        metrics.clone(),
        Box::new(sink.clone()),
        Arc::new(Status::default()),
        Arc::new(RwLock::new(Erasures::new())),
    )
    .expect("a core");
    core.parts.insert(
        P0,
        Owned {
            table: Table::coalescing(
                Stream::Activity,
                PresenceConfig::default(),
                ImportConfig::default(),
                resolution,
            ),
            position: Some(0),
            resume: Some(0),
            moved: crate::liveness::Movement::new(0, Instant::now()),
            stuck_logged: false,
            erasures_applied: 0,
        },
    );
    core
}

fn heartbeat(user: &str, at: Millis) -> ActivityEvent {
    ActivityEvent {
        event_id: format!("{user}-1"),
        occurred_at: at,
        user_id: user.into(),
        session_id: format!("{user}-s"),
        body: ActivityBody::Heartbeat {
            page: Some("/a".into()),
            activity: Interaction::Mouse,
        },
        received_at: None,
    }
}

/// Folds `events` as partition 0's records from `first` on.
fn fold(core: &mut Core, first: i64, events: &[ActivityEvent], metrics: &Metrics) {
    fold_at(core, first, events, metrics, now_millis());
}

/// Like [`fold`], at time `now`.
pub(super) fn fold_at(
    core: &mut Core,
    first: i64,
    events: &[ActivityEvent],
    metrics: &Metrics,
    now: Millis,
) {
    let handoff = Handoff::default();
    handoff.own(P0, Some(first));
    for (i, e) in events.iter().enumerate() {
        let payload = core.contract.encode_activity(e).expect("encodes");
        handoff.accept_record(
            P0,
            first + i as i64,
            e.user_id.as_bytes(),
            &payload,
            metrics,
        );
    }
    assert!(handoff.hand_over(false));
    let polled = handoff.take_ready().expect("a batch");
    core.fold(polled, now);
}

#[test]
fn a_batch_is_stored_and_its_position_moves_once_its_output_is_acknowledged() {
    let (store, sink) = (MemoryStore::new(), MemorySink::default());
    let metrics = Metrics::new().expect("metrics");
    let mut core = core(&store, &sink, &metrics);
    let now = now_millis();
    let users = ["ann", "bob", "cy"];
    let events: Vec<_> = users.iter().map(|u| heartbeat(u, now)).collect();
    fold(&mut core, 0, &events, &metrics);
    core.commit_all().expect("committed");
    let published = sessionfold_edge::lock(&sink.published).clone();
    assert_eq!(
        published.iter().map(|p| p.key.as_str()).collect::<Vec<_>>(),
        users
    );
    for p in &published {
        assert_eq!((p.topic.as_str(), p.partition), ("t.presence", Some(0)));
        for h in [
            headers::SOURCE_OFFSET,
            headers::BATCH_END,
            headers::IDLE_TIMEOUT_MS,
        ] {
            assert!(p.header(h).is_some(), "{h} missing from {p:?}");
        }
    }
    assert_eq!(store.next_offset("presence/0").expect("reads"), Some(3));
    assert_eq!(core.parts[&P0].position, Some(3));
    let mut stored = 0;
    store
        .for_each_state("presence/0", &mut |_| {
            stored += 1;
            Ok(())
        })
        .expect("reads");
    assert_eq!(stored, 3);
    // The same events again (a producer's retry): nothing a reader sees
    // changes, so nothing is published, and the position still moves on.
    fold(&mut core, 3, &events, &metrics);
    core.commit_all().expect("committed");
    assert_eq!(sessionfold_edge::lock(&sink.published).len(), 3);
    assert_eq!(store.next_offset("presence/0").expect("reads"), Some(6));
    assert_eq!(core.parts[&P0].position, Some(6));
}

#[test]
fn a_refused_batch_stores_nothing_and_moves_no_position() {
    let (store, sink) = (MemoryStore::new(), MemorySink::default());
    sink.refuse.store(true, Ordering::SeqCst);
    let metrics = Metrics::new().expect("metrics");
    let mut core = core(&store, &sink, &metrics);
    fold(&mut core, 0, &[heartbeat("ann", now_millis())], &metrics);
    let refused = core.commit_all();
    assert!(
        matches!(refused, Err(ProcessorError::Delivery { .. })),
        "{refused:?}"
    );
    // Published, never acknowledged: the record may reach readers, but
    // neither the store nor the group learns that the input was handled,
    // so it is folded again after a restart.
    assert_eq!(sessionfold_edge::lock(&sink.published).len(), 1);
    assert_eq!(store.next_offset("presence/0").expect("reads"), None);
    assert_eq!(core.parts[&P0].position, Some(0));
}

#[test]
fn a_held_refresh_keeps_the_restart_offset_back_until_it_is_published() {
    let (store, sink) = (MemoryStore::new(), MemorySink::default());
    let metrics = Metrics::new().expect("metrics");
    let mut core = coalescing(&store, &sink, &metrics, 60_000);
    let now = now_millis();
    let mut start = heartbeat("ann", now);
    start.event_id = "ann-0".into();
    start.body = ActivityBody::SessionStarted(Box::new(sessionfold_schemas::SessionStarted {
        email: "ann@example.com".into(),
        page: Some("/a".into()),
        ..Default::default()
    }));
    fold(&mut core, 0, &[start], &metrics);
    core.commit().expect("published");
    core.finish().expect("stored");
    core.settle().expect("settled");
    assert_eq!(sessionfold_edge::lock(&sink.published).len(), 1);
    // Three heartbeats on the page held: folded, neither published nor
    // stored, and the offset a restart reads from stays at the first.
    let beats: Vec<_> = (1..=3)
        .map(|i| {
            let mut b = heartbeat("ann", now + i);
            b.event_id = format!("ann-{i}");
            b
        })
        .collect();
    fold(&mut core, 1, &beats, &metrics);
    core.commit().expect("published");
    core.finish().expect("stored");
    core.settle().expect("settled");
    assert_eq!(sessionfold_edge::lock(&sink.published).len(), 1);
    assert_eq!(store.next_offset("presence/0").expect("reads"), Some(1));
    assert_eq!(core.parts[&P0].position, Some(4));
    // Before a handover or a stop, what is held is published; its batch
    // starts where a restart would have read from.
    core.commit_all().expect("committed");
    let published = sessionfold_edge::lock(&sink.published).clone();
    assert_eq!(published.len(), 2);
    let last = &published[1];
    assert_eq!(
        (
            last.header(headers::BATCH_START),
            last.header(headers::BATCH_END),
            last.header(headers::SOURCE_OFFSET),
            last.header(headers::ACTIVITY_RESOLUTION_MS),
        ),
        (Some("1"), Some("4"), Some("3"), Some("60000"))
    );
    assert_eq!(store.next_offset("presence/0").expect("reads"), Some(4));
}
