//! The dashboard and the alerts watch what the services really export:
//! every metric named in `deploy/grafana/sessionfold.json` and
//! `deploy/prometheus/alerts.yml` is on the live services' `/metrics` once
//! they have seen a little traffic (a session, a refused request, a record
//! that cannot be read, a stream subscriber).

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::json;
use sessionfold_e2e::{SseClient, Stack, eventually, post_json, produce_raw, root_token};
use sessionfold_schemas::Topics;

/// Every metric name a PromQL text names, alternatives such as
/// `sessionfold_(a|b)_ready` spelled out, histogram suffixes kept.
fn names(text: &str) -> BTreeSet<String> {
    let word = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let mut out = BTreeSet::new();
    let mut i = 0;
    while let Some(at) = text[i..].find("sessionfold_") {
        let mut words = vec![String::new()];
        let mut rest = &text[i + at..];
        loop {
            let len = rest.find(|c: char| !word(c)).unwrap_or(rest.len());
            for w in &mut words {
                w.push_str(&rest[..len]);
            }
            rest = &rest[len..];
            // A group of alternatives inside the name: `(a|b)`.
            let group = rest
                .strip_prefix('(')
                .and_then(|r| Some((r, r.find(')')?)))
                .filter(|(r, close)| {
                    r[..*close].contains('|') && r[..*close].chars().all(|c| word(c) || c == '|')
                });
            let Some((r, close)) = group else { break };
            let alts: Vec<&str> = r[..close].split('|').collect();
            words = words
                .iter()
                .flat_map(|w| alts.iter().map(move |a| format!("{w}{a}")))
                .collect();
            rest = &r[close + 1..];
        }
        out.extend(
            words
                .into_iter()
                .map(|w| w.trim_end_matches('_').to_owned()),
        );
        i = text.len() - rest.len();
    }
    out
}

#[test]
fn names_are_read_with_their_alternatives() {
    let got = names(
        r#"min({__name__=~"sessionfold_(producer|processor)_ready"}) + rate(sessionfold_x_total[5m])"#,
    );
    let want: BTreeSet<String> = [
        "sessionfold_producer_ready",
        "sessionfold_processor_ready",
        "sessionfold_x_total",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    assert_eq!(got, want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_the_dashboard_and_the_alerts_name_is_exported() -> anyhow::Result<()> {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let dashboard = std::fs::read_to_string(format!("{root}/deploy/grafana/sessionfold.json"))?;
    let alerts = std::fs::read_to_string(format!("{root}/deploy/prometheus/alerts.yml"))?;
    let wanted: BTreeSet<String> = names(&dashboard)
        .into_iter()
        .chain(names(&alerts))
        .collect();
    assert!(wanted.len() > 15, "{wanted:?}");

    let s = Stack::start("monitoring", &[], &[]).await?;
    let _sub = SseClient::connect(
        &format!("{}/v1/stream", s.projections.url),
        &root_token(),
        None,
    )
    .await?;
    let url = format!("{}/v1/activity", s.producer.url);
    let (status, _) = post_json(
        &url,
        &json!({"kind": "session_started", "user_id": "m1",
        "session_id": "m1-s", "email": "m1@example.com"}),
    )
    .await?;
    assert_eq!(status, 202);
    let (status, _) = post_json(&url, &json!({"kind": "nonsense"})).await?;
    assert_eq!(status, 400);
    produce_raw(
        &Topics::new(&s.prefix).activity,
        &[(Some("m2"), b"not avro")],
    )
    .await?;

    let services = [&s.producer, &s.processor, &s.projections];
    let missing = eventually(Duration::from_secs(60), "every metric exported", || async {
        let mut text = String::new();
        for svc in services {
            text.push_str(
                &reqwest::get(format!("{}/metrics", svc.url))
                    .await?
                    .text()
                    .await?,
            );
        }
        let exported = |name: &str| {
            text.lines().any(|l| {
                l.strip_prefix(name)
                    .is_some_and(|r| r.starts_with('{') || r.starts_with(' '))
            })
        };
        let missing: Vec<&String> = wanted.iter().filter(|n| !exported(n)).collect();
        Ok(missing.is_empty().then_some(()).or_else(|| {
            eprintln!("not yet exported: {missing:?}");
            None
        }))
    })
    .await;
    missing?;
    Ok(())
}
