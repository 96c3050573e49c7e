//! A client that sends its request head slowly cannot hold a connection
//! open: the services close it after the header-read timeout and go on
//! answering everyone else.

use std::time::{Duration, Instant};

use sessionfold_e2e::{Service, get_json, unique_prefix};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_headers_are_cut_off() -> anyhow::Result<()> {
    let prefix = unique_prefix("slowloris");
    let dir = sessionfold_e2e::scratch()?;
    let svc = Service::start("sessionfold-projections", &prefix, &[], dir.path()).await?;
    let addr = svc.url.trim_start_matches("http://").to_owned();
    let mut conns = Vec::new();
    for _ in 0..200 {
        let mut s = TcpStream::connect(&addr).await?;
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n").await?;
        conns.push(s);
    }
    let started = Instant::now();
    // Trickle a header byte per connection every second; a server without a
    // header-read timeout keeps all of them open for as long as this goes on.
    let mut open = conns.len();
    while open > 0 && started.elapsed() < Duration::from_secs(30) {
        tokio::time::sleep(Duration::from_secs(1)).await;
        open = 0;
        for s in &mut conns {
            let mut buf = [0u8; 256];
            let closed =
                match tokio::time::timeout(Duration::from_millis(5), s.read(&mut buf)).await {
                    Ok(Ok(0)) | Ok(Err(_)) => true,
                    Ok(Ok(_)) => true, // an error answer, then the close
                    Err(_) => s.write_all(b"X").await.is_err(),
                };
            if !closed {
                open += 1;
            }
        }
        // Everyone else is still served.
        let (status, _) = get_json(&format!("{}/v1/presence/summary", svc.url)).await?;
        assert_eq!(status, 200);
    }
    let took = started.elapsed();
    assert_eq!(open, 0, "{open} slow connections still open after {took:?}");
    assert!(
        took >= Duration::from_secs(9),
        "closed after {took:?}, before the 10 s timeout"
    );
    Ok(())
}
