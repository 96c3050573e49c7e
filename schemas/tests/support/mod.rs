//! Strategies shared by the codec's property tests.

#![allow(dead_code)]

use proptest::prelude::*;
use sessionfold_schemas::*;

/// Short text or nothing.
pub fn opt_text() -> impl Strategy<Value = Option<String>> {
    proptest::option::of("[a-zA-Z0-9 /._-]{0,20}")
}

prop_compose! {
    /// Any valid activity event.
    pub fn any_activity()(
        id in "[a-z0-9-]{1,36}", user in "[a-z0-9]{1,12}", session in "[a-z0-9]{1,12}",
        at in 0i64..4_000_000_000_000, received in proptest::option::of(0i64..4_000_000_000_000),
        kind in 0u8..4, page in opt_text(), title in opt_text(), which in 0usize..7,
        email in "[a-z]{1,8}@[a-z]{1,8}", roles in proptest::collection::vec("[a-z]{1,8}", 0..3),
    ) -> ActivityEvent {
        let body = match kind {
            0 => ActivityBody::SessionStarted(Box::new(SessionStarted {
                email, roles, page: page.clone(), browser: title.clone(), ..SessionStarted::default()
            })),
            1 => ActivityBody::Heartbeat { page, activity: Interaction::ALL[which] },
            2 => ActivityBody::PageViewed { page: page.unwrap_or_else(|| "/".into()), title },
            _ => ActivityBody::SessionEnded { reason: EndReason::ALL[which % 2] },
        };
        ActivityEvent { event_id: id, occurred_at: at, user_id: user, session_id: session, body, received_at: received }
    }
}

prop_compose! {
    /// Any session state.
    pub fn any_session()(
        id in "[a-z0-9]{1,8}", started in proptest::option::of(any::<i64>()), dev in opt_text(),
        page in opt_text(), at in any::<i64>(), last in any::<i64>(), active in any::<bool>(),
        ended in proptest::option::of(any::<i64>()), reason in proptest::option::of(0usize..3),
        views in any::<i64>(), beats in any::<i64>(),
    ) -> SessionState {
        let dev: Option<Box<str>> = dev.map(Into::into);
        let page: Option<Box<str>> = page.map(Into::into);
        SessionState {
            session_id: id.into(), started_at: started, device_type: dev.clone(), browser: page.clone(),
            os: dev, ip_address: None, user_agent: page.clone(), current_page: page, page_at: at,
            last_activity: last, active, ended_at: ended, ended_reason: reason.map(|r| EndedReason::ALL[r]),
            page_views: views, heartbeats: beats,
        }
    }
}

prop_compose! {
    /// Any presence state.
    pub fn any_presence()(
        user in "[a-z0-9]{1,12}", email in opt_text(), roles in proptest::collection::vec("[a-z]{1,6}", 0..3),
        at in any::<i64>(), sessions in proptest::collection::vec(any_session(), 0..4),
        seen in proptest::collection::vec((any::<i64>(), any::<i64>()), 0..5),
        partition in any::<i32>(), offset in any::<i64>(),
    ) -> UserPresence {
        UserPresence {
            user_id: user.into(), email: email.map(Into::into), full_name: None, membership: Some("m".into()), roles, profile_at: at, sessions,
            recent_events: seen.into_iter().map(|(h, t)| SeenEvent { id_hash: h, occurred_at: t }).collect(),
            source_partition: partition, source_offset: offset,
        }
    }
}

prop_compose! {
    /// Any valid import event.
    pub fn any_import()(
        id in "[a-z0-9-]{1,36}", import in "[a-z0-9]{1,12}", actor in opt_text(),
        at in 0i64..4_000_000_000_000, received in proptest::option::of(0i64..4_000_000_000_000),
        kind in 0u8..7, owner in opt_text(), total in 0i32..1000, done in 0i32..1000,
        progress in 0i32..=100, text in "[a-z0-9]{1,12}",
    ) -> ImportEvent {
        let body = match kind {
            0 => ImportBody::Started { owner_id: owner, json_hash: text.clone(), file_name: text, questions_total: total },
            1 => ImportBody::Progressed { step: text, progress, questions_imported: done.min(total), questions_total: total },
            2 => ImportBody::Accessed,
            3 => ImportBody::Completed,
            4 => ImportBody::Abandoned { reason: text },
            5 => ImportBody::Transferred { new_owner_id: text },
            _ => ImportBody::Deleted,
        };
        ImportEvent { event_id: id, occurred_at: at, import_id: import, actor_id: actor, body, received_at: received }
    }
}

prop_compose! {
    /// Any import state.
    pub fn any_import_state()(
        owner in opt_text(), status in 0usize..4, progress in any::<i32>(), at in any::<i64>(),
        finished in proptest::option::of(any::<i64>()), offset in any::<i64>(),
        seen in proptest::collection::vec((any::<i64>(), any::<i64>()), 0..4),
    ) -> ImportState {
        ImportState {
            import_id: "imp".into(), owner_id: owner.clone(), previous_owner_id: owner.clone(),
            status: ImportStatus::ALL[status], json_hash: "h".into(), file_name: "f".into(), step: owner,
            progress, questions_imported: progress / 2, questions_total: progress, started_at: at,
            last_accessed_at: at, finished_at: finished, abandon_reason: None,
            recent_events: seen.into_iter().map(|(h, t)| SeenEvent { id_hash: h, occurred_at: t }).collect(),
            source_partition: 1, source_offset: offset,
        }
    }
}
