//! The services' OpenAPI documents, from outside: each live service serves
//! the document committed in docs/openapi, openapi-spec-validator accepts
//! it, and Schemathesis, generating valid and invalid requests from it with
//! a real token, finds no server error and no answer the document does not
//! describe (status, content type, body). `/v1/stream` is left out of the
//! Schemathesis run: an event stream never ends, so there is no answer to
//! check; e2e/tests/stream.rs covers it.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Context;
use sessionfold_e2e::{Stack, get_json, scratch, skip, token};

fn python() -> String {
    std::env::var("SESSIONFOLD_TEST_PYTHON").unwrap_or_else(|_| "python3".into())
}

/// True when the Python has the validator and Schemathesis.
fn has_tools(python: &str) -> bool {
    Command::new(python)
        .args(["-c", "import openapi_spec_validator, schemathesis"])
        .output()
        .is_ok_and(|o| o.status.success())
}

fn run(python: &str, args: &[&str], what: &str) -> anyhow::Result<String> {
    let output = Command::new(python)
        .args(args)
        .output()
        .with_context(|| format!("running {python} for {what}"))?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    anyhow::ensure!(output.status.success(), "{what} failed:\n{text}");
    Ok(text)
}

/// Checks one service's document and fuzzes the service with it.
async fn check(
    python: &str,
    name: &str,
    url: &str,
    bearer: &str,
    dir: &Path,
) -> anyhow::Result<()> {
    let (status, served) = get_json(&format!("{url}/openapi.json")).await?;
    anyhow::ensure!(status == 200, "{name}: /openapi.json answered {status}");
    let committed_path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("../docs/openapi/{name}.json"));
    let committed: serde_json::Value = serde_json::from_slice(&std::fs::read(&committed_path)?)?;
    anyhow::ensure!(
        served == committed,
        "{name} serves a document other than {}",
        committed_path.display()
    );
    let file = dir.join(format!("{name}.json"));
    std::fs::write(&file, serde_json::to_vec_pretty(&served)?)?;
    let file_s = file.to_string_lossy();
    run(
        python,
        &["-m", "openapi_spec_validator", &file_s],
        &format!("validating the {name} document"),
    )?;

    let report = dir.join(format!("{name}-schemathesis.xml"));
    let header = format!("Authorization: Bearer {bearer}");
    // The command line Schemathesis installs, run by this Python whether
    // or not its scripts directory is on PATH.
    let schemathesis = "import sys; from schemathesis.cli import schemathesis; sys.argv[0] = 'schemathesis'; sys.exit(schemathesis())";
    let out = run(
        python,
        &[
            "-c",
            schemathesis,
            "run",
            &format!("{url}/openapi.json"),
            "--checks",
            "all",
            "--exclude-checks",
            "positive_data_acceptance",
            "--exclude-path-regex",
            "^/v1/stream$",
            "--header",
            &header,
            "--max-examples",
            "40",
            "--seed",
            "20261206",
            "--workers",
            "1",
            "--request-timeout",
            "15",
            "--report",
            "junit",
            "--report-junit-path",
            &report.to_string_lossy(),
            "--no-color",
        ],
        &format!("Schemathesis against the {name}"),
    )?;
    eprintln!(
        "{name}: {}",
        out.lines()
            .rev()
            .find(|l| l.contains("passed") || l.contains("failed"))
            .unwrap_or("")
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn documents_are_served_valid_and_describe_every_answer() -> anyhow::Result<()> {
    let python = python();
    if !has_tools(&python) {
        return skip(
            "openapi",
            "openapi-spec-validator and Schemathesis are not installed (scripts/test installs them)",
        );
    }
    let stack = Stack::start("openapi", &[], &[]).await?;
    let dir = scratch()?;
    let admin = token("openapi-admin", &["admin", "service"], &[]);
    check(&python, "producer", &stack.producer.url, &admin, dir.path()).await?;
    check(
        &python,
        "projections",
        &stack.projections.url,
        &admin,
        dir.path(),
    )
    .await?;
    Ok(())
}
