//! Headless Chromium for the browser tests: Debian's `chromium` and
//! `chromium-driver` (`.ci/run` installs them), driven over WebDriver.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder};
use serde_json::json;
use sessionfold_e2e::{eventually, free_port};

/// A running chromedriver, stopped when dropped.
pub struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn chromedriver() -> anyhow::Result<(Driver, String)> {
    let port = free_port()?;
    let exe = ["chromedriver", "/usr/bin/chromedriver"]
        .into_iter()
        .find(|p| {
            Command::new(p)
                .arg("--version")
                .stdout(Stdio::null())
                .status()
                .is_ok()
        })
        .ok_or_else(|| {
            anyhow::anyhow!("chromedriver not found: install Debian's chromium and chromium-driver (.ci/run does)")
        })?;
    let child = Command::new(exe)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    Ok((Driver(child), format!("http://127.0.0.1:{port}")))
}

/// A headless Chromium session, with the driver that serves it.
pub async fn browser() -> anyhow::Result<(Driver, Client)> {
    let (driver, webdriver) = chromedriver()?;
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({"args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                        "--disable-dev-shm-usage", "--window-size=1280,900"]}),
    );
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    let client = eventually(Duration::from_secs(30), "chromedriver session", || {
        let mut builder = ClientBuilder::new(connector.clone());
        builder.capabilities(caps.clone());
        let webdriver = webdriver.clone();
        async move { Ok(builder.connect(&webdriver).await.ok()) }
    })
    .await?;
    Ok((driver, client))
}

/// `target/test-artifacts`, for screenshots.
#[allow(dead_code)]
pub fn artifact_dir() -> anyhow::Result<std::path::PathBuf> {
    // target/<profile>/deps/<test> → target/test-artifacts
    let exe = std::env::current_exe()?;
    let target = exe
        .ancestors()
        .nth(3)
        .ok_or_else(|| anyhow::anyhow!("test executable outside a target directory"))?;
    let dir = target.join("test-artifacts");
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
