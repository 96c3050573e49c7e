//! The client address an ingest records, and how much of it.
//!
//! A session's start may carry the client's IP address. It is personal data:
//! by default the ingest keeps only the network part (IPv4 to /24, IPv6 to
//! /48) before anything reaches Kafka, so no topic, state, changelog, replay
//! or report ever holds a full address. The address is the one the event
//! names (a backend posting for a browser knows it), else the connection's
//! peer; `X-Forwarded-For` is believed only from configured proxies.

use std::net::IpAddr;

use ipnet::IpNet;

/// How much of a client address is recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AddressPolicy {
    /// The network part only: IPv4 to /24, IPv6 to /48.
    #[default]
    Anonymized,
    /// The whole address.
    Full,
    /// No address at all.
    None,
}

/// Keeps the network part of `ip`: the first three octets of an IPv4
/// address, the first 48 bits of an IPv6 one.
pub fn anonymize(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            IpAddr::from([a, b, c, 0])
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            IpAddr::from([s[0], s[1], s[2], 0, 0, 0, 0, 0])
        }
    }
}

/// The client behind a connection from `peer`: the last address of
/// `X-Forwarded-For` not added by a trusted proxy, when `peer` is one of
/// `trusted`; otherwise `peer` itself.
pub fn client_address(peer: IpAddr, forwarded_for: Option<&str>, trusted: &[IpNet]) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !is_trusted(&peer) {
        return peer;
    }
    let mut client = peer;
    // Each proxy appends the address it received from; read from the right
    // and stop at the first hop that is not one of ours.
    for hop in forwarded_for.unwrap_or_default().rsplit(',') {
        match hop.trim().parse::<IpAddr>() {
            Ok(ip) => {
                client = ip;
                if !is_trusted(&ip) {
                    break;
                }
            }
            Err(_) => break,
        }
    }
    client
}

/// The address to record for a session start: the one the event names,
/// else the connection's client, as much of it as `policy` allows. A named
/// value that is not an IP address is not recorded unless the policy is
/// `Full`.
pub fn recorded(
    named: Option<&str>,
    client: Option<IpAddr>,
    policy: AddressPolicy,
) -> Option<String> {
    let parsed = match named {
        Some(text) => text.trim().parse::<IpAddr>().ok(),
        None => client,
    };
    match policy {
        AddressPolicy::None => None,
        AddressPolicy::Full => named
            .map(str::to_owned)
            .or_else(|| client.map(|c| c.to_string())),
        AddressPolicy::Anonymized => parsed.map(|ip| anonymize(ip).to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap_or(IpAddr::from([0, 0, 0, 0]))
    }

    #[test]
    fn anonymized_addresses_keep_the_network_part() {
        assert_eq!(anonymize(ip("203.0.113.77")), ip("203.0.113.0"));
        assert_eq!(
            anonymize(ip("2001:db8:1234:5678::1")),
            ip("2001:db8:1234::")
        );
        assert_eq!(
            recorded(Some("198.51.100.9"), None, AddressPolicy::Anonymized).as_deref(),
            Some("198.51.100.0")
        );
        assert_eq!(
            recorded(None, Some(ip("10.1.2.3")), AddressPolicy::Anonymized).as_deref(),
            Some("10.1.2.0")
        );
        assert_eq!(
            recorded(Some("not an ip"), None, AddressPolicy::Anonymized),
            None
        );
        assert_eq!(
            recorded(Some("198.51.100.9"), None, AddressPolicy::Full).as_deref(),
            Some("198.51.100.9")
        );
        assert_eq!(
            recorded(
                Some("198.51.100.9"),
                Some(ip("10.0.0.1")),
                AddressPolicy::None
            ),
            None
        );
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap_or_default()];
        // An untrusted peer cannot claim another address.
        assert_eq!(
            client_address(ip("198.51.100.1"), Some("1.2.3.4"), &trusted),
            ip("198.51.100.1")
        );
        // Through two of our proxies: the first hop that is not ours.
        assert_eq!(
            client_address(
                ip("10.0.0.2"),
                Some("1.2.3.4, 203.0.113.5, 10.0.0.9"),
                &trusted
            ),
            ip("203.0.113.5")
        );
        // A garbled header stops the walk at the last good hop.
        assert_eq!(
            client_address(ip("10.0.0.2"), Some("junk, 10.0.0.7"), &trusted),
            ip("10.0.0.7")
        );
        assert_eq!(
            client_address(ip("10.0.0.2"), None, &trusted),
            ip("10.0.0.2")
        );
    }
}
