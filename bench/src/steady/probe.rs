//! Freshness of what users watch, while the load runs: a probe user
//! changes page, or closes its tab, and the time until the projections
//! show it is measured.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::services::admin_token;

const USER: &str = "steady-probe";

/// The probe user and its next move.
pub struct Prober {
    client: reqwest::Client,
    token: String,
    ingest: String,
    user: String,
    session: u32,
    page: u32,
    step: u32,
}

impl Prober {
    /// Starts the probe user's session and waits until it is online.
    pub async fn new(ingest: &str, projections: &str) -> anyhow::Result<Prober> {
        let mut p = Prober {
            client: reqwest::Client::new(),
            token: admin_token("bench-probe")?,
            ingest: format!("{ingest}/v1/activity?ack=broker"),
            user: format!("{projections}/v1/presence/users/{USER}"),
            session: 0,
            page: 0,
            step: 0,
        };
        p.start().await?;
        Ok(p)
    }

    async fn send(&self, event: Value) -> anyhow::Result<()> {
        let r = self
            .client
            .post(&self.ingest)
            .bearer_auth(&self.token)
            .json(&event)
            .send()
            .await?;
        anyhow::ensure!(r.status() == 202, "probe event answered {}", r.status());
        Ok(())
    }

    /// Milliseconds from `sent` until the user's view satisfies `ok`.
    async fn seen(&self, sent: Instant, ok: impl Fn(&Value) -> bool) -> anyhow::Result<f64> {
        loop {
            let r = self
                .client
                .get(&self.user)
                .bearer_auth(&self.token)
                .send()
                .await?;
            if r.status() == 200 && ok(&r.json::<Value>().await?) {
                return Ok(sent.elapsed().as_secs_f64() * 1000.0);
            }
            anyhow::ensure!(
                sent.elapsed() < Duration::from_secs(30),
                "the probe's change was not seen within 30 s"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    fn session_id(&self) -> String {
        format!("{USER}-{}", self.session)
    }

    async fn start(&mut self) -> anyhow::Result<()> {
        self.session += 1;
        let sent = Instant::now();
        self.send(json!({"kind": "session_started", "user_id": USER,
            "session_id": self.session_id(), "email": "probe@example.com",
            "page": format!("/probe/{}", self.page)}))
            .await?;
        self.seen(sent, |u| u["online"] == true).await?;
        Ok(())
    }

    /// One move: two page changes for each closed tab (after which a new
    /// session starts, unmeasured). Returns the milliseconds it took to show.
    pub async fn probe(&mut self) -> anyhow::Result<Option<f64>> {
        self.step += 1;
        if self.step % 3 == 0 {
            let sent = Instant::now();
            self.send(json!({"kind": "session_ended", "user_id": USER,
                "session_id": self.session_id(), "reason": "closed"}))
                .await?;
            let ms = self.seen(sent, |u| u["online"] == false).await?;
            self.start().await?;
            return Ok(Some(ms));
        }
        self.page += 1;
        let page = format!("/probe/{}", self.page);
        let sent = Instant::now();
        self.send(json!({"kind": "page_viewed", "user_id": USER,
            "session_id": self.session_id(), "page": page}))
            .await?;
        let ms = self
            .seen(sent, |u| {
                u["sessions"]
                    .as_array()
                    .is_some_and(|s| s.iter().any(|s| s["current_page"] == page.as_str()))
            })
            .await?;
        Ok(Some(ms))
    }
}
