//! The views' snapshot on disk: what is written loads back into views that
//! answer alike, and a damaged, foreign or outdated file is refused.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, RwLock};

use sessionfold_projections::follow::Views;
use sessionfold_projections::imports::ImportView;
use sessionfold_projections::snapshot::{self, Identity, SnapshotError};
use sessionfold_projections::view::PresenceView;
use sessionfold_schemas::{
    Contract, ImportState, ImportStatus, SessionState, Topics, UserPresence,
};
use sessionfold_views::freshness::Freshness;

const NOW: i64 = 1_700_000_000_000;

fn user(n: usize) -> UserPresence {
    let id = format!("u{n}");
    UserPresence {
        user_id: id.clone().into(),
        email: Some(format!("{id}@example.com").into()),
        sessions: vec![SessionState {
            session_id: format!("{id}-s").into(),
            started_at: Some(NOW - 60_000),
            last_activity: NOW - (n as i64 % 600) * 1_000,
            page_at: NOW,
            current_page: Some(format!("/room/{}", n % 7).into()),
            active: n % 5 != 0,
            heartbeats: n as i64,
            ..SessionState::default()
        }],
        profile_at: NOW - 60_000,
        source_partition: (n % 3) as i32,
        source_offset: n as i64,
        ..UserPresence::default()
    }
}

fn import(n: usize) -> ImportState {
    ImportState {
        import_id: format!("imp-{n}"),
        owner_id: Some(format!("u{n}")),
        previous_owner_id: None,
        status: ImportStatus::InProgress,
        json_hash: format!("H{}", n % 4),
        file_name: "f.json".into(),
        step: Some("parse".into()),
        progress: 10,
        questions_imported: 1,
        questions_total: 9,
        started_at: NOW,
        last_accessed_at: NOW,
        finished_at: None,
        abandon_reason: None,
        recent_events: Vec::new(),
        source_partition: 0,
        source_offset: n as i64,
    }
}

fn empty() -> Views {
    Views {
        presence: Arc::new(RwLock::new(PresenceView::new(300_000))),
        imports: Arc::new(RwLock::new(ImportView::new(86_400_000))),
    }
}

fn topics() -> Topics {
    Topics::new("snap")
}

fn identity() -> Identity {
    Identity::of(&topics(), Some("cluster-a".into()))
}

/// Views of 500 users and 40 imports, fresh up to offset 500 of each presence
/// partition and 40 of the imports one.
fn filled() -> (Views, Mutex<Freshness>) {
    let views = empty();
    {
        let mut p = views.presence.write().expect("lock");
        p.set_activity_resolution(2_000);
        for n in 0..500 {
            p.apply(&format!("u{n}"), Some(user(n)));
        }
        let mut i = views.imports.write().expect("lock");
        for n in 0..40 {
            i.apply(&format!("imp-{n}"), Some(import(n)));
        }
    }
    let mut f = Freshness::new();
    for p in 0..3 {
        f.applied((topics().presence, p), 500, Some(NOW));
    }
    f.applied((topics().import_ownership, 0), 40, Some(NOW - 5));
    (views, Mutex::new(f))
}

/// A broker whose reported ends are where its records end.
fn reported(_: &(String, i32), (_, high): (i64, i64)) -> i64 {
    high
}

fn marks(high: i64) -> BTreeMap<(String, i32), (i64, i64)> {
    let mut m: BTreeMap<_, _> = (0..3)
        .map(|p| ((topics().presence, p), (0, high)))
        .collect();
    m.insert((topics().import_ownership, 0), (0, high));
    m
}

/// What a reader can see of the views.
fn answers(v: &Views) -> (String, String, String) {
    let p = v.presence.read().expect("lock");
    let i = v.imports.read().expect("lock");
    (
        format!("{:?}", p.active(NOW, 900_000, 1_000, None)),
        format!("{:?}", p.summary(NOW, 300_000)),
        format!("{:?}", i.all(NOW)),
    )
}

#[test]
fn a_snapshot_loads_back_into_views_that_answer_alike() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let contract = Contract::load()?;
    let (views, fresh) = filled();
    let written = snapshot::write(dir.path(), &identity(), &contract, &views, &fresh)?;
    assert_eq!((written.presence, written.imports), (500, 40));
    let back = empty();
    let restored = snapshot::restore(
        dir.path(),
        &identity(),
        &contract,
        &back,
        &marks(600),
        &reported,
    )
    .expect("the snapshot is used");
    assert_eq!(restored.newest_change, Some(NOW));
    assert_eq!(restored.positions.len(), 4);
    assert_eq!(restored.positions[&(topics().presence, 1)], 500);
    assert_eq!(restored.positions[&(topics().import_ownership, 0)], 40);
    assert_eq!(answers(&back), answers(&views));
    let p = back.presence.read().expect("lock");
    assert_eq!((p.len(), p.activity_resolution()), (500, 2_000));
    Ok(())
}

#[test]
fn damaged_foreign_and_outdated_snapshots_are_refused() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let contract = Contract::load()?;
    let (views, fresh) = filled();
    snapshot::write(dir.path(), &identity(), &contract, &views, &fresh)?;
    let file = snapshot::path(dir.path());
    let whole = std::fs::read(&file)?;

    // Another cluster, or other topics: foreign.
    let other = Identity::of(&topics(), Some("cluster-b".into()));
    assert!(matches!(
        snapshot::verify(&file, &other),
        Err(SnapshotError::Foreign(_))
    ));
    let back = empty();
    assert!(
        snapshot::restore(dir.path(), &other, &contract, &back, &marks(600), &reported).is_none()
    );
    assert!(back.presence.read().expect("lock").is_empty());

    // Positions the changelogs do not hold (recreated topics): not used.
    assert!(
        snapshot::restore(
            dir.path(),
            &identity(),
            &contract,
            &back,
            &marks(100),
            &reported
        )
        .is_none()
    );
    assert!(back.presence.read().expect("lock").is_empty());

    // A broker whose reported end lags its records (tansu 0.6.0): the
    // positions past it are checked against where the records really end.
    let lagging = empty();
    let really = |_: &(String, i32), _: (i64, i64)| 600;
    assert!(
        snapshot::restore(
            dir.path(),
            &identity(),
            &contract,
            &lagging,
            &marks(100),
            &really
        )
        .is_some()
    );
    assert_eq!(lagging.presence.read().expect("lock").len(), 500);

    // Cut short, or one byte changed: damaged.
    std::fs::write(&file, &whole[..whole.len() / 2])?;
    assert!(matches!(
        snapshot::verify(&file, &identity()),
        Err(SnapshotError::Damaged(_))
    ));
    let mut flipped = whole.clone();
    flipped[whole.len() / 3] ^= 0x40;
    std::fs::write(&file, &flipped)?;
    assert!(matches!(
        snapshot::verify(&file, &identity()),
        Err(SnapshotError::Damaged(_))
    ));
    assert!(
        snapshot::restore(
            dir.path(),
            &identity(),
            &contract,
            &back,
            &marks(600),
            &reported
        )
        .is_none()
    );
    assert!(back.presence.read().expect("lock").is_empty());

    // The whole file again: used.
    std::fs::write(&file, &whole)?;
    assert!(
        snapshot::restore(
            dir.path(),
            &identity(),
            &contract,
            &back,
            &marks(600),
            &reported
        )
        .is_some()
    );
    assert_eq!(back.presence.read().expect("lock").len(), 500);
    Ok(())
}
