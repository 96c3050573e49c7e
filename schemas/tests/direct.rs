//! The direct decoder against apache-avro: for any record, intact or
//! damaged, both return the same value or both refuse it.

use proptest::prelude::*;
use sessionfold_schemas::*;

mod support;
use support::*;

fn contract() -> Contract {
    Contract::load().expect("schemas parse")
}

/// Damage to a record: overwrite, insert or cut at a position of the body.
#[derive(Debug, Clone)]
enum Edit {
    Set(usize, u8),
    Insert(usize, u8),
    Cut(usize),
}

fn edits() -> impl Strategy<Value = Vec<Edit>> {
    let edit = prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Edit::Set(i, b)),
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Edit::Insert(i, b)),
        any::<usize>().prop_map(Edit::Cut),
    ];
    proptest::collection::vec(edit, 0..4)
}

/// Applies `edits` to the body (past the 10-byte header, so that the record
/// still names the current writer and reaches the decoders).
fn damaged(mut bytes: Vec<u8>, edits: &[Edit]) -> Vec<u8> {
    const HEADER: usize = 10;
    for e in edits {
        let body = bytes.len() - HEADER;
        match *e {
            Edit::Set(i, b) if body > 0 => bytes[HEADER + i % body] = b,
            Edit::Insert(i, b) => bytes.insert(HEADER + i % (body + 1), b),
            Edit::Cut(i) => bytes.truncate(HEADER + i % (body + 1)),
            Edit::Set(..) => {}
        }
    }
    bytes
}

/// Both paths agree: the same value, or both an error.
fn agree<T: PartialEq + std::fmt::Debug>(
    direct: Result<T, SchemaError>,
    reference: Result<T, SchemaError>,
) -> Result<(), TestCaseError> {
    match (direct, reference) {
        (Ok(a), Ok(b)) => prop_assert_eq!(a, b),
        (Err(_), Err(_)) => {}
        (a, b) => prop_assert!(false, "direct {a:?} but apache-avro {b:?}"),
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 1024,
        failure_persistence: Some(Box::new(
            proptest::test_runner::FileFailurePersistence::WithSource("regressions"),
        )),
        ..ProptestConfig::default()
    })]

    #[test]
    fn activity_events_decode_as_apache_avro_decodes(e in any_activity(), edits in edits()) {
        let c = contract();
        let intact = c.encode_activity(&e).expect("encodes");
        agree(c.decode_activity(&intact), e.validate().map(|()| e.clone()))?;
        let bytes = damaged(intact, &edits);
        let reference = c.decode_activity_resolving(&bytes).and_then(|e| e.validate().map(|()| e));
        agree(c.decode_activity(&bytes), reference)?;
    }

    #[test]
    fn import_events_decode_as_apache_avro_decodes(e in any_import(), edits in edits()) {
        let c = contract();
        let intact = c.encode_import(&e).expect("encodes");
        agree(c.decode_import(&intact), e.validate().map(|()| e.clone()))?;
        let bytes = damaged(intact, &edits);
        let reference = c.decode_import_resolving(&bytes).and_then(|e| e.validate().map(|()| e));
        agree(c.decode_import(&bytes), reference)?;
    }

    #[test]
    fn presence_states_decode_as_apache_avro_decodes(s in any_presence(), edits in edits()) {
        let c = contract();
        let intact = c.encode_presence(&s).expect("encodes");
        prop_assert_eq!(c.decode_presence(&intact).expect("decodes"), s);
        let bytes = damaged(intact, &edits);
        agree(c.decode_presence(&bytes), c.decode_presence_resolving(&bytes))?;
    }

    #[test]
    fn import_states_decode_as_apache_avro_decodes(s in any_import_state(), edits in edits()) {
        let c = contract();
        let intact = c.encode_import_state(&s).expect("encodes");
        prop_assert_eq!(c.decode_import_state(&intact).expect("decodes"), s);
        let bytes = damaged(intact, &edits);
        agree(c.decode_import_state(&bytes), c.decode_import_state_resolving(&bytes))?;
    }

    /// Any body behind the current header: what apache-avro refuses is refused.
    #[test]
    fn arbitrary_bodies_decode_as_apache_avro_decodes(body in proptest::collection::vec(any::<u8>(), 0..96)) {
        let c = contract();
        let framed = |fp: u64| {
            let mut b = vec![0xC3, 0x01];
            b.extend_from_slice(&fp.to_le_bytes());
            b.extend_from_slice(&body);
            b
        };
        let a = framed(c.activity.fingerprint());
        agree(c.decode_activity(&a), c.decode_activity_resolving(&a).and_then(|e| e.validate().map(|()| e)))?;
        let i = framed(c.import.fingerprint());
        agree(c.decode_import(&i), c.decode_import_resolving(&i).and_then(|e| e.validate().map(|()| e)))?;
        let p = framed(c.presence.fingerprint());
        agree(c.decode_presence(&p), c.decode_presence_resolving(&p))?;
        let s = framed(c.import_state.fingerprint());
        agree(c.decode_import_state(&s), c.decode_import_state_resolving(&s))?;
    }
}

/// Records of every older version keep the resolving path and read as before.
#[test]
fn older_versions_read_through_resolution() -> Result<(), Box<dyn std::error::Error>> {
    let c = contract();
    for (i, text) in ACTIVITY_HISTORY.iter().enumerate() {
        let old = SchemaSet::new("ActivityEvent", text, &[])?;
        let schema_has_received = text.contains("\"received_at\"");
        let e = ActivityEvent {
            event_id: format!("e-{i}"),
            occurred_at: 1_700_000_000_000,
            user_id: "u".into(),
            session_id: "s".into(),
            body: ActivityBody::PageViewed {
                page: "/p".into(),
                title: None,
            },
            received_at: schema_has_received.then_some(1_700_000_000_100),
        };
        let mut value = e.to_value();
        if let apache_avro::types::Value::Record(fields) = &mut value
            && !schema_has_received
        {
            fields.retain(|(name, _)| name != "received_at");
        }
        let bytes = old.encode(value)?;
        assert_eq!(c.decode_activity(&bytes)?, e, "version {}", i + 1);
        assert_eq!(c.decode_activity_resolving(&bytes)?, e);
    }
    for text in IMPORT_HISTORY {
        let old = SchemaSet::new("ImportEvent", text, &[])?;
        let e = ImportEvent {
            event_id: "e".into(),
            occurred_at: 1,
            import_id: "imp".into(),
            actor_id: Some("a".into()),
            body: ImportBody::Completed,
            received_at: None,
        };
        let bytes = old.encode(e.to_value())?;
        assert_eq!(c.decode_import(&bytes)?, e);
    }
    Ok(())
}
