//! A consumer's fetch settings: short waits by default, the operator's
//! `--kafka-property` when given. Its own test binary, because the installed
//! properties are process-wide.

use sessionfold_edge::cluster::install_properties;
use sessionfold_edge::consumer_config;

#[test]
fn short_fetch_waits_unless_the_operator_sets_them() {
    install_properties(vec![("fetch.wait.max.ms".into(), "250".into())]);
    let c = consumer_config("127.0.0.1:9092");
    assert_eq!(c.get("fetch.wait.max.ms"), Some("250"));
    assert_eq!(c.get("fetch.queue.backoff.ms"), Some("20"));
    assert_eq!(c.get("bootstrap.servers"), Some("127.0.0.1:9092"));
}
