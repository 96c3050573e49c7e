//! Fingerprints of every published schema against independent implementations
//! of the Avro specification.
//!
//! The expected values were produced from the `.avsc` files of this
//! repository, outside Rust, with:
//! - Java Avro 1.8.2 (Debian's `libavro-java`):
//!   `SchemaNormalization.parsingFingerprint64(new Schema.Parser().parse(file))`;
//! - fastavro 1.13.1 (PyPI):
//!   `fingerprint(to_parsing_canonical_form(json.load(file)), "CRC-64-AVRO")`,
//!   whose hex string is the same 8 bytes in header (little-endian) order.
//!
//! Both gave the same value for every file. The legacy values are what builds
//! before this fix wrote (apache-avro's canonical form keeps a logical type
//! as `{"type":"long"}`); records carrying them must stay readable.

use sessionfold_schemas::*;

/// (schema text, specification fingerprint, legacy fingerprint).
const VECTORS: &[(&str, &str, u64, u64)] = &[
    (
        "activity v1",
        ACTIVITY_HISTORY[0],
        0x5851_2ae2_dd3d_eaed,
        0xb0bb_4555_32d8_bbf3,
    ),
    (
        "activity v2",
        ACTIVITY_HISTORY[1],
        0xf476_df9e_1554_4b47,
        0x5369_e15f_a10f_4a6d,
    ),
    (
        "import v1",
        IMPORT_HISTORY[0],
        0xee16_3108_25a0_f492,
        0x7ef8_4d4d_266a_ff40,
    ),
    (
        "presence",
        PRESENCE_AVSC,
        0x0a34_0857_4bdd_ed3a,
        0x406e_41b6_bcb7_99e7,
    ),
    (
        "import state",
        IMPORT_STATE_AVSC,
        0x454f_70da_d516_d166,
        0x847e_8ce1_e1dd_a9f2,
    ),
];

#[test]
fn fingerprints_are_the_specifications() {
    for (name, text, spec, _) in VECTORS {
        let got = canonical::fingerprint_of_text(text).expect("canonical form");
        assert_eq!(got, *spec, "{name}: {got:#018x}");
        let schema = apache_avro::Schema::parse_str(text).expect("parses");
        assert_eq!(
            fingerprint(&schema).ok(),
            Some(*spec),
            "{name} via the parsed schema"
        );
    }
}

#[test]
fn the_current_schemas_write_the_specifications_fingerprint() {
    let c = Contract::load().expect("schemas parse");
    assert_eq!(c.activity.fingerprint(), VECTORS[1].2);
    assert_eq!(c.import.fingerprint(), VECTORS[2].2);
    assert_eq!(c.presence.fingerprint(), VECTORS[3].2);
    assert_eq!(c.import_state.fingerprint(), VECTORS[4].2);
}

#[test]
fn legacy_fingerprints_stay_readable_as_aliases() {
    for (name, text, _, legacy) in VECTORS {
        let schema = apache_avro::Schema::parse_str(text).expect("parses");
        assert_eq!(
            legacy_fingerprint(&schema),
            *legacy,
            "{name}: {:#018x}",
            legacy_fingerprint(&schema)
        );
    }
    let c = Contract::load().expect("schemas parse");
    let known: Vec<u64> = c.activity.known_fingerprints().collect();
    for fp in [VECTORS[0].2, VECTORS[0].3, VECTORS[1].2, VECTORS[1].3] {
        assert!(known.contains(&fp), "{fp:#018x} not readable");
    }
    // A record written with the legacy header decodes to the same event.
    let event = ActivityEvent {
        event_id: "e-1".into(),
        occurred_at: 1_700_000_000_123,
        user_id: "u1".into(),
        session_id: "s1".into(),
        body: ActivityBody::SessionEnded {
            reason: EndReason::Logout,
        },
        received_at: None,
    };
    let mut bytes = c.encode_activity(&event).expect("encodes");
    bytes[2..10].copy_from_slice(&VECTORS[1].3.to_le_bytes());
    assert_eq!(
        c.decode_activity(&bytes).expect("legacy header decodes"),
        event
    );
}
