//! The dashboard in a real headless Chromium: sign in with a token, watch a
//! user go online from a posted heartbeat without reloading, see the stream
//! indicator when the projections go away. Saves a screenshot under
//! `target/test-artifacts/`.
//!
//! Needs Debian's `chromium` and `chromium-driver` (`.ci/run` installs them).

mod chromium;

use std::time::Duration;

use fantoccini::Locator;
use serde_json::json;
use sessionfold_e2e::{Stack, eventually, get_json_as, post_json_as, token};

use chromium::artifact_dir;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_a_user_going_online_live() -> anyhow::Result<()> {
    let mut s = Stack::start("dashboard", &[], &[]).await?;
    let (_driver, browser) = chromium::browser().await?;

    let result = async {
        browser.goto(&format!("{}/", s.projections.url)).await?;
        // No stream before a token: the sign-in page says nothing about one.
        let conn = browser.find(Locator::Css("#conn")).await?;
        assert!(
            !conn.is_displayed().await?,
            "stream state shown before sign-in"
        );
        let admin = token("root", &["admin"], &[]);
        browser
            .find(Locator::Css("#token"))
            .await?
            .send_keys(&admin)
            .await?;
        browser
            .find(Locator::Css("#signin-form button"))
            .await?
            .click()
            .await?;
        let live = eventually(Duration::from_secs(30), "stream connected", || async {
            let t = browser.find(Locator::Css("#conn")).await?.text().await?;
            Ok(t.contains("live").then_some(t))
        })
        .await?;
        assert!(live.contains("live"));
        let rows = browser.find_all(Locator::Css("#users tbody tr")).await?;
        assert_eq!(rows.len(), 0, "nobody online yet");

        // A heartbeat posted now appears without a reload.
        let svc = token("svc", &["service"], &[]);
        let activity = format!("{}/v1/activity", s.producer.url);
        let login = json!({"events": [
            {"kind": "session_started", "user_id": "browser-user", "session_id": "b-s",
             "email": "browser-user@example.com", "full_name": "Browser User",
             "device_type": "desktop", "browser": "Chromium", "page": "/"},
            {"kind": "heartbeat", "user_id": "browser-user", "session_id": "b-s",
             "page": "/courses/42", "activity": "click"}]});
        assert_eq!(post_json_as(&activity, &login, Some(&svc)).await?.0, 202);
        let row = eventually(Duration::from_secs(30), "user row appears", || async {
            let rows = browser
                .find_all(Locator::Css(r#"#users tbody tr[data-user="browser-user"]"#))
                .await?;
            match rows.first() {
                Some(r) => Ok(Some(r.text().await?)),
                None => Ok(None),
            }
        })
        .await?;
        assert!(row.contains("browser-user@example.com"), "{row}");
        assert!(
            row.contains("/courses/42") && row.contains("Chromium"),
            "{row}"
        );
        let dot = browser
            .find(Locator::Css(r#"tr[data-user="browser-user"] .dot"#))
            .await?
            .attr("class")
            .await?;
        assert_eq!(dot.as_deref(), Some("dot on"));
        let total = browser.find(Locator::Css("#total")).await?.text().await?;
        assert_eq!(total, "(1)");
        // The counts follow shortly (they are reloaded, debounced, after stream events).
        let counts = eventually(Duration::from_secs(30), "device counts", || async {
            let t = browser
                .find(Locator::Css("#by-device tbody"))
                .await?
                .text()
                .await?;
            Ok(t.contains("desktop").then_some(t))
        })
        .await?;
        assert_eq!(
            counts.split_whitespace().collect::<Vec<_>>(),
            ["desktop", "1"]
        );
        // The admin sees the import monitor.
        let monitor = browser.find(Locator::Css("#imports")).await?;
        assert!(monitor.is_displayed().await?);
        let png = browser.screenshot().await?;
        let path = artifact_dir()?.join("dashboard.png");
        std::fs::write(&path, png)?;
        eprintln!("screenshot: {}", path.display());

        // A logout takes the user off the list, and the header with it, as the API does.
        let logout = json!({"kind": "session_ended", "user_id": "browser-user",
                            "session_id": "b-s", "reason": "logout"});
        assert_eq!(post_json_as(&activity, &logout, Some(&svc)).await?.0, 202);
        eventually(
            Duration::from_secs(30),
            "ended user leaves the list",
            || async {
                let rows = browser.find_all(Locator::Css("#users tbody tr")).await?;
                let total = browser.find(Locator::Css("#total")).await?.text().await?;
                Ok((rows.is_empty() && total == "(0)").then_some(()))
            },
        )
        .await?;
        let (status, api) = get_json_as(
            &format!("{}/v1/presence/active?window=5m", s.projections.url),
            Some(&admin),
        )
        .await?;
        assert_eq!((status, &api["total"]), (200, &json!(0)), "{api}");

        // The projections go away: the page says so.
        s.projections.kill();
        eventually(Duration::from_secs(30), "disconnected shown", || async {
            let t = browser.find(Locator::Css("#conn")).await?.text().await?;
            Ok(t.contains("disconnected").then_some(()))
        })
        .await?;
        anyhow::Ok(())
    }
    .await;
    browser.close().await?;
    result
}
