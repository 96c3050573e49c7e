//! Forgetting users, without a broker: presence dropped, imports handed on
//! or deleted by the rule, the rule applied again to later changes.

use sessionfold_fold::*;
use sessionfold_schemas::*;

const T0: Millis = 1_700_000_000_000;

fn pos(offset: i64) -> Position {
    Position {
        partition: 0,
        offset,
    }
}

fn started(id: &str, owner: &str, offset: i64) -> (ImportEvent, Position) {
    let e = ImportEvent {
        event_id: format!("e-{id}"),
        occurred_at: T0,
        import_id: id.into(),
        actor_id: Some(owner.into()),
        body: ImportBody::Started {
            owner_id: Some(owner.into()),
            json_hash: "h".into(),
            file_name: "quiz.json".into(),
            questions_total: 4,
        },
        received_at: None,
    };
    (e, pos(offset))
}

fn transferred(id: &str, to: &str, offset: i64) -> (ImportEvent, Position) {
    let e = ImportEvent {
        event_id: format!("t-{id}-{to}"),
        occurred_at: T0 + 1,
        import_id: id.into(),
        actor_id: None,
        body: ImportBody::Transferred {
            new_owner_id: to.into(),
        },
        received_at: None,
    };
    (e, pos(offset))
}

fn erased(user: &str, imports: OwnedImports) -> UserErased {
    UserErased {
        user_id: user.into(),
        erased_at: T0 + 10,
        requested_by: "admin".into(),
        imports,
    }
}

fn table(events: &[(ImportEvent, Position)]) -> Result<ImportTable, Rejected> {
    let mut t = ImportTable::new(ImportConfig::default());
    for (e, p) in events {
        t.apply(Some(&e.import_id), e, *p, Authority::Elevated)?;
    }
    t.take_dirty();
    Ok(t)
}

fn owner(t: &ImportTable, id: &str) -> Option<(Option<String>, Option<String>)> {
    t.get(id)
        .map(|s| (s.owner_id.clone(), s.previous_owner_id.clone()))
}

#[test]
fn a_forgotten_user_leaves_no_presence() {
    let mut t = PresenceTable::new(PresenceConfig::default());
    for (i, user) in ["ann", "bob"].into_iter().enumerate() {
        let e = ActivityEvent {
            event_id: format!("s-{user}"),
            occurred_at: T0,
            user_id: user.into(),
            session_id: "tab".into(),
            body: ActivityBody::SessionStarted(Box::new(SessionStarted {
                email: format!("{user}@example.com"),
                ..SessionStarted::default()
            })),
            received_at: None,
        };
        assert_eq!(
            t.apply(Some(user), &e, pos(i as i64), T0),
            Ok(Applied::Changed)
        );
    }
    t.take_dirty();
    assert!(t.forget("ann"));
    assert!(!t.forget("ann"), "a second erasure finds nothing");
    assert!(!t.forget("carol"));
    assert_eq!(t.take_dirty(), vec!["ann".to_owned()]);
    assert!(t.get("ann").is_none());
    assert_eq!((t.len(), t.session_count()), (1, 1));
    assert_eq!(t.next_deadline(), Some(T0 + 5 * 60_000));
}

#[test]
fn imports_go_to_the_named_user_and_previous_owners_are_cleared() -> Result<(), Rejected> {
    let mut t = table(&[
        started("i1", "ann", 0),
        started("i2", "ann", 1),
        started("i3", "bob", 2),
        started("i4", "dan", 3),
        transferred("i4", "eve", 4),
        started("i5", "dan", 5),
    ])?;
    let mut erasures = Erasures::new();
    erasures.insert(erased("ann", OwnedImports::TransferTo("bob".into())));
    erasures.insert(erased("dan", OwnedImports::Delete));
    assert_eq!(t.forget_users(&erasures), vec!["i5".to_owned()]);
    assert_eq!(owner(&t, "i1"), Some((Some("bob".into()), None)));
    assert_eq!(owner(&t, "i2"), Some((Some("bob".into()), None)));
    assert_eq!(owner(&t, "i3"), Some((Some("bob".into()), None)));
    assert_eq!(owner(&t, "i4"), Some((Some("eve".into()), None)));
    assert_eq!(owner(&t, "i5"), None);
    assert_eq!(t.take_dirty(), ["i1", "i2", "i4", "i5"].map(String::from));
    assert!(
        t.forget_users(&erasures).is_empty(),
        "applying twice changes nothing"
    );
    assert!(t.take_dirty().is_empty());
    Ok(())
}

#[test]
fn an_import_started_after_the_erasure_does_not_give_the_user_one_back() -> Result<(), Rejected> {
    let mut t = table(&[])?;
    let mut erasures = Erasures::new();
    erasures.insert(erased("ann", OwnedImports::Delete));
    let (e, p) = started("late", "ann", 9);
    t.apply(Some("late"), &e, p, Authority::Elevated)?;
    assert_eq!(
        t.forget_users_in_changed(&erasures),
        vec!["late".to_owned()]
    );
    assert_eq!(t.take_dirty(), vec!["late".to_owned()]);
    assert!(t.get("late").is_none());
    Ok(())
}

#[test]
fn a_chain_of_erasures_ends_at_the_first_user_kept() -> Result<(), Rejected> {
    let mut erasures = Erasures::new();
    erasures.insert(erased("ann", OwnedImports::TransferTo("bob".into())));
    erasures.insert(erased("bob", OwnedImports::TransferTo("carol".into())));
    let mut t = table(&[started("i1", "ann", 0)])?;
    t.forget_users(&erasures);
    assert_eq!(owner(&t, "i1"), Some((Some("carol".into()), None)));
    // A cycle has no one left to hand the import to.
    let mut cycle = Erasures::new();
    cycle.insert(erased("x", OwnedImports::TransferTo("y".into())));
    cycle.insert(erased("y", OwnedImports::TransferTo("x".into())));
    let mut t = table(&[started("i2", "x", 0)])?;
    assert_eq!(t.forget_users(&cycle), vec!["i2".to_owned()]);
    assert!(
        !cycle.insert(erased("x", OwnedImports::Delete)),
        "the first rule stands"
    );
    assert_eq!(
        cycle
            .since(1)
            .map(|e| e.user_id.as_str())
            .collect::<Vec<_>>(),
        ["y"]
    );
    Ok(())
}
