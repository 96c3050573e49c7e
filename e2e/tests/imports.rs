//! Import events through the processor on a real broker: states on the
//! import-ownership changelog, lifecycle violations on the dead-letter topic.

use std::collections::BTreeMap;
use std::time::Duration;

use sessionfold_e2e::{Feeder, Service, consume_all, now_millis, unique_prefix};
use sessionfold_schemas::{
    Contract, ImportBody, ImportEvent, ImportState, ImportStatus, Topics, headers,
};

fn ev(id: &str, import: &str, body: ImportBody) -> ImportEvent {
    ImportEvent {
        event_id: id.into(),
        occurred_at: now_millis(),
        import_id: import.into(),
        actor_id: None,
        body,
        received_at: None,
    }
}

fn start(id: &str, import: &str, owner: Option<&str>) -> ImportEvent {
    ev(
        id,
        import,
        ImportBody::Started {
            owner_id: owner.map(str::to_owned),
            json_hash: "h".into(),
            file_name: "quiz.json".into(),
            questions_total: 40,
        },
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imports_are_folded_and_lifecycle_violations_dead_lettered() -> anyhow::Result<()> {
    let prefix = unique_prefix("imports");
    let dir = sessionfold_e2e::scratch()?;
    let state = dir.path().join("s").to_string_lossy().into_owned();
    let mut p = Service::start(
        "sessionfold-processor",
        &prefix,
        &["--state-dir", &state, "--group-id", &prefix],
        dir.path(),
    )
    .await?;
    p.wait_http("/readyz", Duration::from_secs(60)).await?;
    let feeder = Feeder::new(&prefix)?;
    let progress = |id: &str, import: &str, pct: i32| {
        ev(
            id,
            import,
            ImportBody::Progressed {
                step: "parse".into(),
                progress: pct,
                questions_imported: 10,
                questions_total: 40,
            },
        )
    };
    feeder
        .send_imports(&[
            start("a1", "ada-import", Some("ada")),
            start("b1", "bob-import", Some("bob")),
            start("l1", "legacy-import", None),
            progress("a2", "ada-import", 50),
            ev(
                "a3",
                "ada-import",
                ImportBody::Transferred {
                    new_owner_id: "bob".into(),
                },
            ),
            ev("b2", "bob-import", ImportBody::Completed),
            // Violations: progress after completion, unknown import, transfer to the owner.
            progress("b3", "bob-import", 60),
            progress("x1", "ghost-import", 10),
            ev(
                "a4",
                "ada-import",
                ImportBody::Transferred {
                    new_owner_id: "bob".into(),
                },
            ),
            ev("l2", "legacy-import", ImportBody::Deleted),
            ev("l3", "legacy-import", ImportBody::Accessed),
        ])
        .await?;

    let topics = Topics::new(&prefix);
    let dead = consume_all(&topics.dead_letter, 4, Duration::from_secs(60)).await?;
    let mut reasons: Vec<String> = dead
        .iter()
        .filter_map(|r| r.headers.get(headers::ERROR).cloned())
        .collect();
    reasons.sort();
    assert_eq!(
        reasons,
        [
            "import ada-import: import_transferred to the current owner",
            "import bob-import: import_progressed on an import that is completed",
            "import ghost-import: import_progressed for an unknown import",
            "import legacy-import: import_accessed after import_deleted",
        ]
    );
    assert!(
        dead.iter()
            .all(|r| r.headers.get(headers::ERROR_KIND).map(String::as_str) == Some("lifecycle"))
    );

    let c = Contract::load()?;
    let records = consume_all(&topics.import_ownership, 100, Duration::from_secs(10)).await?;
    let mut last: BTreeMap<String, ImportState> = BTreeMap::new();
    for r in &records {
        if let Some(v) = &r.payload {
            let s = c.decode_import_state(v)?;
            last.insert(s.import_id.clone(), s);
        }
    }
    let ada = &last["ada-import"];
    assert_eq!(
        (ada.owner_id.as_deref(), ada.previous_owner_id.as_deref()),
        (Some("bob"), Some("ada"))
    );
    assert_eq!((ada.status, ada.progress), (ImportStatus::InProgress, 50));
    let bob = &last["bob-import"];
    assert_eq!((bob.status, bob.progress), (ImportStatus::Completed, 100));
    let legacy = &last["legacy-import"];
    assert_eq!(
        (legacy.owner_id.as_deref(), legacy.status),
        (None, ImportStatus::Deleted)
    );
    assert!(!last.contains_key("ghost-import"));
    Ok(())
}
