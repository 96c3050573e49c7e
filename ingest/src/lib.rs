//! The JSON input of sessionfold's ingest API.
//!
//! Browsers and services post activity and import events as JSON; this
//! crate turns a request body into typed events of `sessionfold-schemas`
//! with field-level errors (`parse`), clamps claimed times to the receipt time,
//! and decides in one place whether the caller may emit each event
//! (`authorize`). The producer calls it before
//! anything reaches Kafka, and the Rust client builds its requests from the
//! same wire types. Pure code: no I/O, no Kafka, no clock.

pub mod address;
mod authorize;
mod parse;
mod wire;

pub use authorize::{Event, Forbidden, Refusal, authorize, authorize_request};
pub use parse::{
    FieldError, Receipt, activity_event, activity_request, import_event, import_events, item_path,
};
pub use wire::{ActivityInput, ImportInput};

use serde_json::Value;
use sessionfold_auth::Caller;
use sessionfold_schemas::ImportEvent;

/// Parses the body of `POST /v1/imports/{import_id}/events` sent by `caller`
/// and authorizes each event with the import's owner unknown.
pub fn import_request(
    body: &Value,
    import_id: &str,
    caller: &Caller,
    r: Receipt,
    max_events: usize,
) -> Result<Vec<ImportEvent>, Refusal> {
    let events = import_events(body, import_id, &caller.user_id, r, max_events)?;
    authorize_request(caller, body, events.iter().map(|e| Event::Import(e, None)))?;
    Ok(events)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authorize::tests::caller;
    use serde_json::json;
    use sessionfold_schemas::{ActivityBody, ImportBody, Interaction, Millis};

    const NOW: Millis = 1_700_000_000_000;
    fn r() -> Receipt {
        Receipt {
            received_at: NOW,
            max_clock_skew: 60_000,
        }
    }

    fn err(body: Value) -> String {
        activity_request(&body, r(), 10)
            .expect_err("invalid")
            .to_string()
    }

    #[test]
    fn heartbeat_defaults() {
        let v = json!({"kind": "heartbeat", "user_id": "u1", "session_id": "s1", "page": "/x"});
        let e = activity_request(&v, r(), 10).expect("valid").remove(0);
        assert_eq!(e.occurred_at, NOW);
        assert_eq!(e.received_at, Some(NOW));
        assert_eq!(e.event_id.len(), 36);
        assert_eq!(
            e.body,
            ActivityBody::Heartbeat {
                page: Some("/x".into()),
                activity: Interaction::Timer
            }
        );
    }

    #[test]
    fn clock_skew_is_clamped_only_past_the_limit() {
        let at = |t: &str| {
            let v =
                json!({"kind": "heartbeat", "user_id": "u", "session_id": "s", "occurred_at": t});
            activity_request(&v, r(), 10).expect("valid")[0].occurred_at
        };
        // 2023-11-14T22:13:20Z is NOW.
        assert_eq!(at("2023-11-14T22:14:20Z"), NOW + 60_000);
        assert_eq!(at("2023-11-14T22:14:20.001Z"), NOW);
        assert_eq!(at("2023-11-14T21:13:20Z"), NOW - 3_600_000);
    }

    #[test]
    fn errors_name_the_field() {
        assert_eq!(
            err(json!({"user_id": "u", "session_id": "s"})),
            "kind: is required"
        );
        assert_eq!(
            err(json!({"kind": "wave", "user_id": "u", "session_id": "s"})),
            "kind: unknown kind \"wave\"; expected session_started, heartbeat, page_viewed or session_ended"
        );
        assert_eq!(
            err(json!({"events": [
                {"kind": "heartbeat", "user_id": "u", "session_id": "s"},
                {"kind": "heartbeat", "user_id": "u", "session_id": "s", "activity": "dance"}]})),
            "events[1].activity: must be one of mouse, keyboard, click, scroll, visibility, timer, navigation"
        );
        assert_eq!(
            err(json!({"kind": "session_ended", "user_id": "u", "session_id": "s"})),
            "reason: is required"
        );
        assert_eq!(
            err(json!({"kind": "page_viewed", "user_id": "u", "session_id": "s", "page": 3})),
            "page: must be a string"
        );
        assert_eq!(
            err(
                json!({"kind": "heartbeat", "user_id": "u", "session_id": "s", "occurred_at": "yesterday"})
            ),
            "occurred_at: must be an RFC 3339 time (premature end of input)"
        );
        assert_eq!(err(json!({"events": []})), "events: must not be empty");
        assert_eq!(err(json!([1])), "body: must be a JSON object");
        assert_eq!(
            err(
                json!({"kind": "session_started", "user_id": "u", "session_id": "s", "email": "a@b", "roles": ["x", 1]})
            ),
            "roles[1]: must be a string"
        );
        let long = "x".repeat(300);
        assert_eq!(
            err(json!({"kind": "heartbeat", "user_id": long, "session_id": "s"})),
            "user_id: longer than 256 bytes"
        );
    }

    #[test]
    fn client_input_serializes_to_what_the_parser_reads() {
        let input = ActivityInput {
            kind: "page_viewed".into(),
            user_id: "u".into(),
            session_id: "s".into(),
            event_id: Some("id-1".into()),
            page: Some("/p".into()),
            title: Some("P".into()),
            ..ActivityInput::default()
        };
        let v = serde_json::to_value(&input).expect("serializes");
        let e = activity_request(&v, r(), 10).expect("valid").remove(0);
        assert_eq!(e.event_id, "id-1");
        assert_eq!(
            e.body,
            ActivityBody::PageViewed {
                page: "/p".into(),
                title: Some("P".into())
            }
        );
    }

    fn import(body: Value, who: &Caller) -> Result<ImportEvent, Refusal> {
        import_request(&body, "imp-1", who, r(), 10).map(|mut v| v.remove(0))
    }

    fn started() -> Value {
        json!({"kind": "import_started", "json_hash": "h1", "file_name": "a.json", "questions_total": 10})
    }

    #[test]
    fn import_owner_and_actor_come_from_the_token() {
        let alice = caller("alice", &[], &[]);
        let e = import(started(), &alice).expect("valid");
        assert_eq!(e.import_id, "imp-1");
        assert_eq!(e.actor_id.as_deref(), Some("alice"));
        assert_eq!(
            e.body,
            ImportBody::Started {
                owner_id: Some("alice".into()),
                json_hash: "h1".into(),
                file_name: "a.json".into(),
                questions_total: 10
            }
        );
        let mut own = started();
        own["owner_id"] = json!("alice");
        own["actor_id"] = json!("alice");
        assert!(import(own, &alice).is_ok());
    }

    #[test]
    fn users_may_not_act_for_others_or_start_legacy_imports() {
        let alice = caller("alice", &["admin"], &[]);
        let mut other_actor = started();
        other_actor["actor_id"] = json!("bob");
        assert_eq!(
            import(other_actor.clone(), &alice),
            Err(Refusal::Forbidden(
                "actor_id: a user token may only emit events for its own sub".into()
            ))
        );
        let mut legacy = started();
        legacy["owner_id"] = Value::Null;
        assert!(matches!(
            import(legacy.clone(), &alice),
            Err(Refusal::Forbidden(_))
        ));
        let service = caller("importer", &["service"], &[]);
        let e = import(legacy, &service).expect("service may start legacy imports");
        assert!(matches!(e.body, ImportBody::Started { owner_id: None, .. }));
        let e = import(other_actor, &service).expect("service may name the actor");
        assert_eq!(e.actor_id.as_deref(), Some("bob"));
        assert!(matches!(e.body, ImportBody::Started { owner_id: Some(ref o), .. } if o == "bob"));
    }

    #[test]
    fn only_import_admins_transfer() {
        let t = json!({"kind": "import_transferred", "new_owner_id": "bob"});
        assert_eq!(
            import(t.clone(), &caller("alice", &[], &[])),
            Err(Refusal::Forbidden(
                "only an admin or IMPORT_ADMIN may transfer an import".into()
            ))
        );
        assert!(import(t.clone(), &caller("alice", &[], &["IMPORT_ADMIN"])).is_ok());
        assert!(import(t, &caller("root", &["admin"], &[])).is_ok());
    }

    #[test]
    fn import_errors_name_the_field() {
        let alice = caller("alice", &["admin"], &[]);
        let invalid = |body: Value| match import(body, &alice) {
            Err(Refusal::Invalid(f)) => f.to_string(),
            other => panic!("expected a field error, got {other:?}"),
        };
        let progress = |p: i64, done: i64, total: i64| {
            json!({"kind": "import_progressed", "step": "parse", "progress": p,
                   "questions_imported": done, "questions_total": total})
        };
        assert_eq!(
            invalid(progress(101, 1, 2)),
            "progress: must be between 0 and 100"
        );
        assert_eq!(
            invalid(progress(50, 3, 2)),
            "questions_imported: must be between 0 and questions_total"
        );
        assert_eq!(
            invalid(json!({"kind": "import_transferred"})),
            "new_owner_id: is required"
        );
        assert_eq!(
            invalid(
                json!({"kind": "import_progressed", "step": "s", "progress": "half",
                           "questions_imported": 1, "questions_total": 2})
            ),
            "progress: must be a number"
        );
        assert_eq!(
            invalid(json!({"events": [started(), {"kind": "import_paused"}]})),
            "events[1].kind: unknown kind \"import_paused\"; expected import_started, import_progressed, import_accessed, import_completed, import_abandoned, import_transferred or import_deleted"
        );
        assert_eq!(
            import_request(&started(), " ", &alice, r(), 10),
            Err(Refusal::Invalid(FieldError::new(
                "import_id",
                "must not be empty"
            )))
        );
    }

    #[test]
    fn client_import_input_serializes_to_what_the_parser_reads() {
        let input = ImportInput {
            kind: "import_started".into(),
            owner_id: Some(None),
            json_hash: Some("h".into()),
            file_name: Some("f.json".into()),
            questions_total: Some(3),
            actor_id: Some("bob".into()),
            ..ImportInput::default()
        };
        let v = serde_json::to_value(&input).expect("serializes");
        let e = import(v, &caller("svc", &["service"], &[])).expect("valid");
        assert!(matches!(e.body, ImportBody::Started { owner_id: None, .. }));
        assert_eq!(e.actor_id.as_deref(), Some("bob"));
    }
}
