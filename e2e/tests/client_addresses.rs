//! How much of a client's IP address reaches Kafka: by default only the
//! network part (IPv4 /24, IPv6 /48) of the address an event names or of the
//! connection's peer; `X-Forwarded-For` only from trusted proxies; all of it
//! or nothing when configured. Read back from the folded presence state.

use std::time::Duration;

use serde_json::{Value, json};
use sessionfold_e2e::{Service, Stack, eventually, get_json_as, scratch, token};

/// Posts a session start for `user` as a service, with `ip` in the event
/// (when given) and `forwarded` as `X-Forwarded-For` (when given).
async fn start(
    producer: &str,
    user: &str,
    ip: Option<&str>,
    forwarded: Option<&str>,
) -> anyhow::Result<u16> {
    let svc = token("svc", &["service"], &[]);
    start_as(producer, &svc, user, ip, forwarded.as_slice()).await
}

/// Posts a session start for `user` with `bearer`, `ip` in the event (when
/// given) and each of `forwarded` as an `X-Forwarded-For` line of its own.
async fn start_as(
    producer: &str,
    bearer: &str,
    user: &str,
    ip: Option<&str>,
    forwarded: &[&str],
) -> anyhow::Result<u16> {
    let mut body = json!({"kind": "session_started", "user_id": user,
        "session_id": format!("{user}-s"), "email": format!("{user}@example.com")});
    if let Some(ip) = ip {
        body["ip_address"] = json!(ip);
    }
    let mut req = reqwest::Client::new()
        .post(format!("{producer}/v1/activity"))
        .bearer_auth(bearer)
        .json(&body);
    for f in forwarded {
        req = req.header("x-forwarded-for", *f);
    }
    Ok(req.send().await?.status().as_u16())
}

/// The address recorded in `user`'s session, once the user is folded.
async fn recorded(projections: &str, user: &str) -> anyhow::Result<Value> {
    let url = format!("{projections}/v1/presence/users/{user}");
    let admin = token("root", &["admin"], &[]);
    eventually(Duration::from_secs(60), "the user folded", || async {
        let (status, u) = get_json_as(&url, Some(&admin)).await?;
        Ok((status == 200).then(|| u["sessions"][0]["ip_address"].clone()))
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn only_the_network_part_is_recorded_by_default() -> anyhow::Result<()> {
    let s = Stack::start("addresses", &[], &[]).await?;
    let (p, v) = (s.producer.url.as_str(), s.projections.url.as_str());
    assert_eq!(start(p, "peer", None, None).await?, 202);
    assert_eq!(start(p, "named4", Some("203.0.113.77"), None).await?, 202);
    assert_eq!(
        start(p, "named6", Some("2001:db8:1234:5678::1"), None).await?,
        202
    );
    // From a peer that is no trusted proxy, the header is not believed.
    assert_eq!(start(p, "spoofed", None, Some("198.51.100.23")).await?, 202);
    assert_eq!(
        start(p, "garbage", Some("not-an-address"), None).await?,
        202
    );
    assert_eq!(recorded(v, "peer").await?, json!("127.0.0.0"));
    assert_eq!(recorded(v, "named4").await?, json!("203.0.113.0"));
    assert_eq!(recorded(v, "named6").await?, json!("2001:db8:1234::"));
    assert_eq!(recorded(v, "spoofed").await?, json!("127.0.0.0"));
    assert_eq!(recorded(v, "garbage").await?, Value::Null);

    // Behind a trusted proxy, with full addresses: the forwarded client.
    let dir = scratch()?;
    let full = Service::start(
        "sessionfold-producer",
        &s.prefix,
        &["--trusted-proxy", "127.0.0.1", "--client-ip", "full"],
        dir.path(),
    )
    .await?;
    assert_eq!(
        start(&full.url, "proxied", None, Some("198.51.100.23, 127.0.0.1")).await?,
        202
    );
    assert_eq!(recorded(v, "proxied").await?, json!("198.51.100.23"));
    // A client's forged line first, the proxy's own line appended after it:
    // the lines are one list, and the right-most untrusted hop is the client.
    assert_eq!(
        start_as(
            &full.url,
            &token("svc", &["service"], &[]),
            "two-lines",
            None,
            &["203.0.113.9", "198.51.100.44"],
        )
        .await?,
        202
    );
    assert_eq!(recorded(v, "two-lines").await?, json!("198.51.100.44"));
    // A user's token may not name its own address: the connection's client
    // is recorded instead.
    assert_eq!(
        start_as(
            &full.url,
            &token("self-named", &[], &[]),
            "self-named",
            Some("192.0.2.200"),
            &["198.51.100.45"],
        )
        .await?,
        202
    );
    assert_eq!(recorded(v, "self-named").await?, json!("198.51.100.45"));
    // And none at all.
    let none = Service::start(
        "sessionfold-producer",
        &s.prefix,
        &["--client-ip", "none"],
        dir.path(),
    )
    .await?;
    assert_eq!(
        start(&none.url, "unrecorded", Some("203.0.113.77"), None).await?,
        202
    );
    assert_eq!(recorded(v, "unrecorded").await?, Value::Null);
    Ok(())
}
