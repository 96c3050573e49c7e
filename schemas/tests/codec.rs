//! The single-object codec against the published schema files.

use apache_avro::Schema;
use apache_avro::schema_compatibility::SchemaCompatibility;
use proptest::prelude::*;
use sessionfold_schemas::*;

mod support;
use support::*;

fn contract() -> Contract {
    Contract::load().expect("schemas parse")
}

fn started(user: &str) -> ActivityEvent {
    ActivityEvent {
        event_id: "e-1".into(),
        occurred_at: 1_700_000_000_123,
        user_id: user.into(),
        session_id: "s-1".into(),
        body: ActivityBody::SessionStarted(Box::new(SessionStarted {
            email: "ada@example.com".into(),
            full_name: Some("Ada".into()),
            membership: None,
            roles: vec!["editor".into()],
            device_type: Some("desktop".into()),
            browser: Some("Firefox".into()),
            os: Some("Linux".into()),
            ip_address: Some("10.0.0.1".into()),
            user_agent: None,
            page: Some("/home".into()),
        })),
        received_at: Some(1_700_000_000_200),
    }
}

#[test]
fn header_is_marker_and_little_endian_fingerprint() {
    let c = contract();
    let bytes = c.encode_activity(&started("u1")).expect("encodes");
    assert_eq!(&bytes[..2], &[0xC3, 0x01]);
    assert_eq!(&bytes[2..10], &c.activity.fingerprint().to_le_bytes());
    let schema = Schema::parse_str(ACTIVITY_AVSC).expect("parses");
    assert_eq!(Some(c.activity.fingerprint()), fingerprint(&schema).ok());
}

#[test]
fn current_schema_files_are_the_latest_published_versions() {
    let norm = |s: &str| Schema::parse_str(s).expect("parses").canonical_form();
    assert_eq!(
        norm(ACTIVITY_AVSC),
        norm(ACTIVITY_HISTORY[ACTIVITY_HISTORY.len() - 1])
    );
    assert_eq!(
        norm(IMPORT_AVSC),
        norm(IMPORT_HISTORY[IMPORT_HISTORY.len() - 1])
    );
}

#[test]
fn activity_round_trips_every_kind() {
    let c = contract();
    let mut events = vec![started("u1")];
    for (i, body) in [
        ActivityBody::Heartbeat {
            page: Some("/a".into()),
            activity: Interaction::Scroll,
        },
        ActivityBody::Heartbeat {
            page: None,
            activity: Interaction::Navigation,
        },
        ActivityBody::PageViewed {
            page: "/b".into(),
            title: Some("B".into()),
        },
        ActivityBody::SessionEnded {
            reason: EndReason::Closed,
        },
    ]
    .into_iter()
    .enumerate()
    {
        let mut e = started("u2");
        e.event_id = format!("e-{i}");
        e.body = body;
        e.received_at = None;
        events.push(e);
    }
    for e in events {
        let bytes = c.encode_activity(&e).expect("encodes");
        assert_eq!(c.decode_activity(&bytes).expect("decodes"), e);
    }
}

#[test]
fn import_round_trips_every_kind() {
    let c = contract();
    let bodies = [
        ImportBody::Started {
            owner_id: None,
            json_hash: "h".into(),
            file_name: "f.json".into(),
            questions_total: 40,
        },
        ImportBody::Progressed {
            step: "parse".into(),
            progress: 50,
            questions_imported: 20,
            questions_total: 40,
        },
        ImportBody::Accessed,
        ImportBody::Completed,
        ImportBody::Abandoned {
            reason: "wrong file".into(),
        },
        ImportBody::Transferred {
            new_owner_id: "u9".into(),
        },
        ImportBody::Deleted,
    ];
    for body in bodies {
        let e = ImportEvent {
            event_id: "x".into(),
            occurred_at: 5,
            import_id: "imp-1".into(),
            actor_id: Some("u1".into()),
            body,
            received_at: Some(6),
        };
        let bytes = c.encode_import(&e).expect("encodes");
        assert_eq!(c.decode_import(&bytes).expect("decodes"), e);
    }
}

/// A version 1 record (no received_at) read by the current reader gets the default.
#[test]
fn new_reader_reads_old_writer() {
    let c = contract();
    let v1 = SchemaSet::new("ActivityEvent", ACTIVITY_HISTORY[0], &[]).expect("v1 parses");
    assert_ne!(v1.fingerprint(), c.activity.fingerprint());
    let mut value = started("u1").to_value();
    if let apache_avro::types::Value::Record(fields) = &mut value {
        fields.retain(|(name, _)| name != "received_at");
    }
    let old_bytes = v1.encode(value).expect("v1 encodes");
    let e = c.decode_activity(&old_bytes).expect("current reads v1");
    assert_eq!(e.received_at, None);
    assert_eq!(e.user_id, "u1");
    assert_eq!(
        e.body,
        started("u1").body,
        "fields of the old record survive"
    );
}

/// A current record read by a client that only knows version 1 drops the new field.
#[test]
fn old_reader_reads_new_writer() {
    let c = contract();
    let old_reader = c
        .activity
        .with_reader(ACTIVITY_HISTORY[0])
        .expect("v1 reader");
    let bytes = c.encode_activity(&started("u7")).expect("encodes");
    let value = old_reader.decode(&bytes, None).expect("v1 reader reads v2");
    let apache_avro::types::Value::Record(fields) = &value else {
        panic!("record expected")
    };
    assert!(fields.iter().all(|(n, _)| n != "received_at"));
    let e = ActivityEvent::from_value(value).expect("typed");
    assert_eq!(e.user_id, "u7");
    assert_eq!(e.received_at, None);
}

#[test]
fn versions_are_compatible_both_ways() {
    let v1 = Schema::parse_str(ACTIVITY_HISTORY[0]).expect("parses");
    let v2 = Schema::parse_str(ACTIVITY_HISTORY[1]).expect("parses");
    assert!(SchemaCompatibility::can_read(&v1, &v2).is_ok());
    assert!(SchemaCompatibility::can_read(&v2, &v1).is_ok());
}

#[test]
fn garbage_is_a_typed_error() {
    let c = contract();
    assert_eq!(
        c.decode_activity(b"hello").map_err(|e| e.kind()).err(),
        Some("not_single_object")
    );
    let mut unknown = vec![0xC3, 0x01];
    unknown.extend_from_slice(&42u64.to_le_bytes());
    unknown.push(0);
    let err = c
        .decode_activity(&unknown)
        .expect_err("unknown fingerprint");
    assert_eq!(err.kind(), "unknown_schema");
    assert_eq!(
        err.to_string(),
        "unknown writer schema fingerprint 000000000000002a for ActivityEvent"
    );
    let good = c.encode_activity(&started("u1")).expect("encodes");
    let truncated = &good[..good.len() - 3];
    assert_eq!(
        c.decode_activity(truncated).expect_err("truncated").kind(),
        "undecodable"
    );
    let mut long = good.clone();
    long.push(7);
    assert_eq!(
        c.decode_activity(&long).expect_err("trailing").to_string(),
        "1 trailing bytes after the Avro body"
    );
}

#[test]
fn invalid_values_are_rejected_on_decode() {
    let c = contract();
    let mut e = started("u1");
    e.user_id = " ".into();
    let bytes = c.encode_activity(&e).expect("schema allows it");
    assert_eq!(
        c.decode_activity(&bytes).expect_err("invalid").to_string(),
        "invalid user_id: must not be empty"
    );
}

#[test]
fn presence_state_round_trips() {
    let c = contract();
    let s = UserPresence {
        user_id: "u1".into(),
        email: Some("a@b".into()),
        full_name: None,
        membership: Some("pro".into()),
        roles: vec!["admin".into()],
        profile_at: 10,
        sessions: vec![SessionState {
            session_id: "s".into(),
            started_at: Some(10),
            current_page: Some("/x".into()),
            page_at: 11,
            last_activity: 12,
            active: false,
            ended_at: Some(12),
            ended_reason: Some(EndedReason::Expired),
            page_views: 3,
            heartbeats: 4,
            ..SessionState::default()
        }],
        recent_events: vec![SeenEvent {
            id_hash: -5,
            occurred_at: 12,
        }],
        source_partition: 2,
        source_offset: 99,
    };
    let bytes = c.encode_presence(&s).expect("encodes");
    let back = c.decode_presence(&bytes).expect("decodes");
    assert_eq!(back, s);
    // A decoded state is held for as long as its user lives: no spare slots.
    assert_eq!(back.sessions.capacity(), 1);
    assert_eq!(back.roles.capacity(), 1);
    assert_eq!(back.recent_events.capacity(), 1);
}

proptest! {
    #![proptest_config(ProptestConfig {
        failure_persistence: Some(Box::new(
            proptest::test_runner::FileFailurePersistence::WithSource("regressions"),
        )),
        ..ProptestConfig::default()
    })]

    #[test]
    fn any_activity_round_trips(e in any_activity()) {
        let c = contract();
        let bytes = c.encode_activity(&e).expect("encodes");
        let value = c.activity.decode(&bytes, None).expect("decodes");
        prop_assert_eq!(ActivityEvent::from_value(value).expect("typed"), e);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
        let c = contract();
        let _ = c.decode_activity(&bytes);
        let mut framed = vec![0xC3, 0x01];
        framed.extend_from_slice(&c.activity.fingerprint().to_le_bytes());
        framed.extend_from_slice(&bytes);
        let _ = c.decode_activity(&framed);
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        failure_persistence: Some(Box::new(
            proptest::test_runner::FileFailurePersistence::WithSource("regressions"),
        )),
        ..ProptestConfig::default()
    })]

    /// The direct state encoder writes exactly what apache-avro writes.
    #[test]
    fn direct_presence_encoding_matches_apache_avro(s in any_presence()) {
        let c = contract();
        let fast = c.encode_presence(&s).expect("encodes");
        let reference = c.presence.encode(s.to_value()).expect("apache-avro encodes");
        prop_assert_eq!(&fast, &reference);
        prop_assert_eq!(c.decode_presence(&fast).expect("decodes"), s);
    }

    #[test]
    fn direct_import_state_encoding_matches_apache_avro(
        owner in opt_text(), status in 0usize..4, progress in any::<i32>(), at in any::<i64>(),
        finished in proptest::option::of(any::<i64>()), offset in any::<i64>(),
    ) {
        let s = ImportState {
            import_id: "imp".into(), owner_id: owner.clone(), previous_owner_id: owner.clone(),
            status: ImportStatus::ALL[status], json_hash: "h".into(), file_name: "f".into(), step: owner,
            progress, questions_imported: progress / 2, questions_total: progress, started_at: at,
            last_accessed_at: at, finished_at: finished, abandon_reason: None,
            recent_events: vec![SeenEvent { id_hash: at, occurred_at: offset }], source_partition: 1, source_offset: offset,
        };
        let c = contract();
        let fast = c.encode_import_state(&s).expect("encodes");
        prop_assert_eq!(&fast, &c.import_state.encode(s.to_value()).expect("apache-avro encodes"));
        prop_assert_eq!(c.decode_import_state(&fast).expect("decodes"), s);
    }
}

/// A record of a few bytes that claims an array of half a billion items is
/// refused without reserving memory for them.
#[test]
fn an_array_count_bomb_is_refused() -> Result<(), Box<dyn std::error::Error>> {
    let c = Contract::load()?;
    // The fuzzer's find: the current activity header, then a body whose
    // roles array claims about 2^28 items.
    let bomb: [u8; 55] = [
        195, 1, 71, 75, 84, 21, 158, 223, 118, 244, 4, 101, 52, 128, 160, 0, 0, 0, 0, 0, 0, 0, 164,
        132, 206, 103, 4, 101, 49, 4, 115, 0, 0, 0, 0, 0, 0, 0, 0, 48, 115, 115, 105, 111, 95, 0,
        100, 0, 0, 115, 0, 0, 0, 0, 0,
    ];
    let e = c
        .decode_activity(&bomb)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(e.contains("maximum allowed: 2097152"), "{e}");
    Ok(())
}

/// Ids from a registry, as the edge resolves them.
struct Ids(std::collections::HashMap<u32, u64>);

impl SchemaIds for Ids {
    fn fingerprint(&self, id: u32) -> Result<u64, String> {
        self.0
            .get(&id)
            .copied()
            .ok_or_else(|| "not registered".into())
    }
}

/// The same event in both wire formats reads the same; the first byte tells
/// them apart, and a registry id that names no published version is refused.
#[test]
fn both_wire_formats_read_the_same() -> Result<(), Box<dyn std::error::Error>> {
    let plain = Contract::load()?;
    let e = ActivityEvent {
        event_id: "e1".into(),
        occurred_at: 1_780_000_000_000,
        user_id: "u1".into(),
        session_id: "s1".into(),
        body: ActivityBody::Heartbeat {
            page: Some("/q".into()),
            activity: Interaction::Click,
        },
        received_at: None,
    };
    let single = plain.encode_activity(&e)?;
    let framed = to_registry_format(&single, 7)?;
    assert_eq!(&framed[..5], &[0, 0, 0, 0, 7]);
    assert_eq!(&framed[5..], &single[10..]);
    assert_eq!(registry_id(&framed), Some(7));
    assert_eq!(registry_id(&single), None);
    let fp = header_fingerprint(&single)?;
    let with = Contract::load()?.with_registry(std::sync::Arc::new(Ids([(7, fp), (8, 1)].into())));
    assert_eq!(with.decode_activity(&framed)?, e);
    assert_eq!(with.decode_activity(&single)?, e);
    let err = |c: &Contract, b: &[u8]| c.decode_activity(b).map_err(|e| (e.kind(), e.to_string()));
    assert_eq!(
        err(&plain, &framed),
        Err(("no_registry", "record in the Schema Registry wire format (schema id 7) and no schema registry is configured".into()))
    );
    assert_eq!(
        err(&with, &to_registry_format(&single, 8)?).map_err(|e| e.0),
        Err("unknown_schema")
    );
    assert_eq!(
        err(&with, &to_registry_format(&single, 9)?),
        Err((
            "unknown_schema",
            "schema id 9 from the registry: not registered".into()
        ))
    );
    Ok(())
}
