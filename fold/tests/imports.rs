//! The import fold, without a broker: lifecycle rules and a model check.

use std::collections::HashMap;

use proptest::prelude::*;
use sessionfold_fold::*;
use sessionfold_schemas::*;

const T0: Millis = 1_700_000_000_000;

fn ev(id: &str, import: &str, at: Millis, body: ImportBody) -> ImportEvent {
    ImportEvent {
        event_id: id.into(),
        occurred_at: at,
        import_id: import.into(),
        actor_id: None,
        body,
        received_at: None,
    }
}

fn started(id: &str, import: &str, owner: Option<&str>, hash: &str) -> ImportEvent {
    ev(
        id,
        import,
        T0,
        ImportBody::Started {
            owner_id: owner.map(str::to_owned),
            json_hash: hash.into(),
            file_name: "quiz.json".into(),
            questions_total: 40,
        },
    )
}

fn pos(offset: i64) -> Position {
    Position {
        partition: 0,
        offset,
    }
}

fn progressed(id: &str, import: &str, p: i32) -> ImportEvent {
    ev(
        id,
        import,
        T0 + 1000,
        ImportBody::Progressed {
            step: "parse".into(),
            progress: p,
            questions_imported: 10,
            questions_total: 40,
        },
    )
}

fn by(actor: &str, mut e: ImportEvent) -> ImportEvent {
    e.actor_id = Some(actor.into());
    e
}

#[test]
fn only_the_owner_or_a_vouched_actor_acts_on_an_import() {
    let mut t = ImportTable::new(ImportConfig::default());
    t.apply(
        None,
        &by("ada", started("a", "i1", Some("ada"), "h")),
        pos(0),
        Authority::Actor,
    )
    .expect("ada starts her import");
    t.apply(
        None,
        &by("ada", started("l", "old", None, "h")),
        pos(1),
        Authority::Elevated,
    )
    .expect("a service starts a legacy import");
    let refused = |t: &mut ImportTable, e: ImportEvent, at: i64| {
        t.apply(None, &e, pos(at), Authority::Actor)
            .map_err(|r| (r.kind(), r.to_string()))
    };
    for (i, body) in [
        ImportBody::Deleted,
        ImportBody::Completed,
        ImportBody::Accessed,
        ImportBody::Abandoned { reason: "x".into() },
    ]
    .into_iter()
    .enumerate()
    {
        let kind = body.kind();
        assert_eq!(
            refused(
                &mut t,
                by("bob", ev(&format!("b{i}"), "i1", T0, body)),
                10 + i as i64
            ),
            Err((
                "not_owner",
                format!("import i1: {kind} by bob, who does not own it")
            ))
        );
    }
    assert_eq!(
        refused(&mut t, by("bob", progressed("bp", "i1", 50)), 20).map_err(|e| e.0),
        Err("not_owner")
    );
    assert_eq!(
        refused(&mut t, by("bob", ev("bo", "old", T0, ImportBody::Accessed)), 21),
        Err((
            "not_owner",
            "import old: import_accessed by bob on an import with no owner: only an admin, IMPORT_ADMIN or a service may".into()
        ))
    );
    let transfer = |id: &str| {
        ev(
            id,
            "i1",
            T0,
            ImportBody::Transferred {
                new_owner_id: "bob".into(),
            },
        )
    };
    assert_eq!(
        refused(&mut t, by("ada", transfer("t1")), 22),
        Err((
            "not_owner",
            "import i1: ada may not transfer it: only an admin, IMPORT_ADMIN or a service may"
                .into()
        ))
    );
    let s = t.get("i1").expect("held");
    assert_eq!(
        (s.status, s.progress, s.owner_id.as_deref()),
        (ImportStatus::InProgress, 0, Some("ada"))
    );
    // The owner, a vouched admin and a service with no actor may.
    t.apply(
        None,
        &by("ada", progressed("ap", "i1", 30)),
        pos(23),
        Authority::Actor,
    )
    .expect("the owner writes progress");
    t.apply(
        None,
        &by("root", transfer("t2")),
        pos(24),
        Authority::Elevated,
    )
    .expect("an admin transfers");
    t.apply(
        None,
        &by("ada", progressed("ap2", "i1", 40)),
        pos(25),
        Authority::Actor,
    )
    .expect_err("the old owner no longer may");
    t.apply(
        None,
        &ev("svc", "i1", T0, ImportBody::Completed),
        pos(26),
        Authority::Actor,
    )
    .expect("a service completes it");
    assert_eq!(t.get("i1").map(|s| s.status), Some(ImportStatus::Completed));
    assert_eq!(
        Authority::from_role(Some("import_admin")),
        Authority::Elevated
    );
    assert_eq!(Authority::from_role(Some("owner")), Authority::Actor);
    assert_eq!(Authority::from_role(None), Authority::Actor);
}

#[test]
fn an_import_runs_its_course() {
    let mut t = ImportTable::new(ImportConfig::default());
    assert_eq!(
        t.apply(
            Some("i1"),
            &started("a", "i1", Some("ada"), "h1"),
            pos(0),
            Authority::Actor
        ),
        Ok(Applied::Changed)
    );
    t.apply(None, &progressed("b", "i1", 25), pos(1), Authority::Actor)
        .expect("in progress");
    let s = t.get("i1").expect("held");
    assert_eq!(
        (s.status, s.progress, s.questions_imported),
        (ImportStatus::InProgress, 25, 10)
    );
    assert_eq!(s.last_accessed_at, T0 + 1000);
    t.apply(
        None,
        &ev(
            "c",
            "i1",
            T0 + 2000,
            ImportBody::Transferred {
                new_owner_id: "bob".into(),
            },
        ),
        pos(2),
        Authority::Actor,
    )
    .expect("transfer");
    let s = t.get("i1").expect("held");
    assert_eq!(
        (s.owner_id.as_deref(), s.previous_owner_id.as_deref()),
        (Some("bob"), Some("ada"))
    );
    assert!(t.owned_by("ada").is_empty());
    assert_eq!(t.owned_by("bob").len(), 1);
    t.apply(
        None,
        &ev("d", "i1", T0 + 3000, ImportBody::Completed),
        pos(3),
        Authority::Actor,
    )
    .expect("complete");
    let s = t.get("i1").expect("held");
    assert_eq!(
        (s.status, s.progress, s.finished_at),
        (ImportStatus::Completed, 100, Some(T0 + 3000))
    );
    assert_eq!(t.take_dirty(), vec!["i1".to_string()]);
    // Purged a retention after its last event.
    assert_eq!(t.tick(T0 + 3000 + 24 * 3_600_000 - 1), 0);
    assert_eq!(t.tick(T0 + 3000 + 24 * 3_600_000), 1);
    assert!(t.is_empty());
    assert_eq!(t.take_dirty(), vec!["i1".to_string()]);
}

#[test]
fn lifecycle_violations_are_refused_and_change_nothing() {
    let mut t = ImportTable::new(ImportConfig::default());
    let err = t
        .apply(None, &progressed("x", "ghost", 5), pos(0), Authority::Actor)
        .expect_err("unknown");
    assert_eq!(
        err.to_string(),
        "import ghost: import_progressed for an unknown import"
    );
    assert_eq!(err.kind(), "lifecycle");
    t.apply(
        None,
        &started("a", "i1", Some("ada"), "h"),
        pos(1),
        Authority::Actor,
    )
    .expect("start");
    let same_owner = ev(
        "t",
        "i1",
        T0,
        ImportBody::Transferred {
            new_owner_id: "ada".into(),
        },
    );
    assert_eq!(
        t.apply(None, &same_owner, pos(2), Authority::Actor)
            .expect_err("same owner")
            .to_string(),
        "import i1: import_transferred to the current owner"
    );
    t.apply(
        None,
        &ev("c", "i1", T0, ImportBody::Completed),
        pos(3),
        Authority::Actor,
    )
    .expect("complete");
    let before = t.get("i1").cloned();
    assert_eq!(
        t.apply(None, &progressed("p", "i1", 50), pos(4), Authority::Actor)
            .expect_err("completed")
            .to_string(),
        "import i1: import_progressed on an import that is completed"
    );
    t.apply(
        None,
        &ev("del", "i1", T0, ImportBody::Deleted),
        pos(5),
        Authority::Actor,
    )
    .expect("delete");
    assert_eq!(
        t.apply(
            None,
            &ev("acc", "i1", T0, ImportBody::Accessed),
            pos(6),
            Authority::Actor
        )
        .expect_err("deleted")
        .to_string(),
        "import i1: import_accessed after import_deleted"
    );
    assert_eq!(t.get("i1").map(|s| s.status), Some(ImportStatus::Deleted));
    assert_eq!(before.map(|s| s.progress), Some(100));
}

#[test]
fn legacy_imports_have_no_owner_and_duplicates_are_per_owner() {
    let mut t = ImportTable::new(ImportConfig::default());
    t.apply(
        None,
        &started("a", "legacy", None, "h"),
        pos(0),
        Authority::Actor,
    )
    .expect("legacy");
    t.apply(
        None,
        &started("b", "i1", Some("ada"), "same"),
        pos(1),
        Authority::Actor,
    )
    .expect("ada");
    t.apply(
        None,
        &started("c", "i2", Some("bob"), "same"),
        pos(2),
        Authority::Actor,
    )
    .expect("bob");
    t.apply(
        None,
        &started("d", "i3", Some("ada"), "same"),
        pos(3),
        Authority::Actor,
    )
    .expect("ada again");
    assert_eq!(t.get("legacy").and_then(|s| s.owner_id.clone()), None);
    let dup = |owner: &str| {
        t.owned_by(owner)
            .iter()
            .filter(|s| s.json_hash == "same")
            .count()
    };
    assert_eq!((dup("ada"), dup("bob")), (2, 1));
    // A repeated event id is applied once; a re-read position is a no-op.
    assert_eq!(
        t.apply(None, &progressed("b", "i1", 9), pos(9), Authority::Actor),
        Ok(Applied::Duplicate)
    );
    assert_eq!(
        t.apply(None, &progressed("z", "i1", 9), pos(1), Authority::Actor),
        Ok(Applied::AlreadyApplied)
    );
}

/// The obviously correct model: which transitions are allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Start,
    Progress,
    Access,
    Complete,
    Abandon,
    Transfer,
    Delete,
}

fn model_step(
    m: &mut HashMap<String, (ImportStatus, Option<String>)>,
    id: &str,
    k: Kind,
    who: &str,
) -> bool {
    use ImportStatus::*;
    let Some((status, owner)) = m.get(id).cloned() else {
        if k == Kind::Start {
            m.insert(id.into(), (InProgress, Some(who.into())));
            return true;
        }
        return false;
    };
    let next = match (status, k) {
        (Deleted, _) | (_, Kind::Start) => return false,
        (InProgress, Kind::Progress) => (InProgress, owner),
        (InProgress, Kind::Complete) => (Completed, owner),
        (InProgress, Kind::Abandon) => (Abandoned, owner),
        (_, Kind::Progress | Kind::Complete | Kind::Abandon) => return false,
        (s, Kind::Access) => (s, owner),
        (s, Kind::Transfer) if owner.as_deref() != Some(who) => (s, Some(who.into())),
        (_, Kind::Transfer) => return false,
        (_, Kind::Delete) => (Deleted, owner),
    };
    m.insert(id.into(), next);
    true
}

fn event_of(i: usize, id: &str, k: Kind, who: &str) -> ImportEvent {
    let body = match k {
        Kind::Start => ImportBody::Started {
            owner_id: Some(who.into()),
            json_hash: "h".into(),
            file_name: "f".into(),
            questions_total: 10,
        },
        Kind::Progress => ImportBody::Progressed {
            step: "s".into(),
            progress: 50,
            questions_imported: 5,
            questions_total: 10,
        },
        Kind::Access => ImportBody::Accessed,
        Kind::Complete => ImportBody::Completed,
        Kind::Abandon => ImportBody::Abandoned { reason: "r".into() },
        Kind::Transfer => ImportBody::Transferred {
            new_owner_id: who.into(),
        },
        Kind::Delete => ImportBody::Deleted,
    };
    ev(&format!("e{i}"), id, T0 + i as i64, body)
}

proptest! {
    #![proptest_config(ProptestConfig {
        failure_persistence: Some(Box::new(
            proptest::test_runner::FileFailurePersistence::WithSource("regressions"),
        )),
        ..ProptestConfig::default()
    })]

    #[test]
    fn the_fold_agrees_with_the_model(steps in proptest::collection::vec((0usize..3, 0usize..7, 0usize..3), 1..60)) {
        let kinds = [Kind::Start, Kind::Progress, Kind::Access, Kind::Complete, Kind::Abandon, Kind::Transfer, Kind::Delete];
        let mut t = ImportTable::new(ImportConfig::default());
        let mut m = HashMap::new();
        for (i, (imp, k, who)) in steps.into_iter().enumerate() {
            let (id, who) = (format!("i{imp}"), ["ada", "bob", "cy"][who]);
            let before = t.get(&id).cloned();
            let e = event_of(i, &id, kinds[k], who);
            let accepted = t.apply(Some(&id), &e, pos(i as i64), Authority::Actor).is_ok();
            prop_assert_eq!(accepted, model_step(&mut m, &id, kinds[k], who), "event {} {:?}", i, kinds[k]);
            if !accepted {
                prop_assert_eq!(t.get(&id).cloned(), before, "a refused event changed the state");
            }
        }
        for (id, (status, owner)) in &m {
            let s = t.get(id).expect("model and fold hold the same imports");
            prop_assert_eq!(s.status, *status);
            prop_assert_eq!(&s.owner_id, owner);
        }
        prop_assert_eq!(t.len(), m.len());
    }
}
