//! Dead letters: a record that cannot be folded, with why and where it was read.
//!
//! Anything the broker accepted on an input must fit on the dead-letter
//! topic, or one record would stop its partition for good. So a key or value
//! larger than the limits below is cut short, and the original size and a
//! SHA-256 of the whole value travel in headers: enough to find the record at
//! its source position and to check a copy against it.

use rdkafka::message::{Header, OwnedHeaders};
use sessionfold_fold::Position;
use sessionfold_schemas::headers;
use sha2::{Digest, Sha256};

/// Longest value kept whole on the dead-letter topic (bytes).
pub const MAX_VALUE: usize = 64 * 1024;
/// Longest key kept whole on the dead-letter topic (bytes).
pub const MAX_KEY: usize = 1024;
/// Longest error sentence kept (bytes); a longer one is cut at a character boundary.
const MAX_ERROR: usize = 2048;

/// A record that goes to the dead-letter topic.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    /// The record's key as read.
    pub key: Option<Vec<u8>>,
    /// The record's value as read.
    pub payload: Option<Vec<u8>>,
    /// Machine-readable reason.
    pub kind: &'static str,
    /// What was wrong.
    pub error: String,
    /// The input topic.
    pub source_topic: String,
    /// Where on the input topic.
    pub pos: Position,
}

/// Key, value and headers of a dead letter as published.
pub struct Published {
    /// Key, cut to [`MAX_KEY`].
    pub key: Vec<u8>,
    /// Value, cut to [`MAX_VALUE`].
    pub payload: Option<Vec<u8>>,
    /// The contract's dead-letter headers.
    pub headers: OwnedHeaders,
}

fn cut_str(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

impl DeadLetter {
    /// The record to publish, cut to the limits.
    pub fn published(&self) -> Published {
        let add = |h: OwnedHeaders, key: &str, value: &str| {
            h.insert(Header {
                key,
                value: Some(value),
            })
        };
        let mut h = OwnedHeaders::new();
        h = add(h, headers::ERROR, cut_str(&self.error, MAX_ERROR));
        h = add(h, headers::ERROR_KIND, self.kind);
        h = add(h, headers::SOURCE_TOPIC, &self.source_topic);
        h = add(
            h,
            headers::SOURCE_PARTITION,
            &self.pos.partition.to_string(),
        );
        h = add(h, headers::SOURCE_OFFSET, &self.pos.offset.to_string());
        let mut key = self.key.clone().unwrap_or_default();
        if key.len() > MAX_KEY {
            h = add(h, headers::ORIGINAL_KEY_SIZE, &key.len().to_string());
            key.truncate(MAX_KEY);
        }
        let mut payload = self.payload.clone();
        if let Some(p) = payload.as_mut()
            && p.len() > MAX_VALUE
        {
            let digest: String = Sha256::digest(&p[..])
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            h = add(h, headers::ORIGINAL_SIZE, &p.len().to_string());
            h = add(h, headers::ORIGINAL_SHA256, &digest);
            p.truncate(MAX_VALUE);
        }
        Published {
            key,
            payload,
            headers: h,
        }
    }
}

#[cfg(test)]
mod tests {
    use rdkafka::message::Headers;

    use super::*;

    fn letter(key: usize, value: usize) -> DeadLetter {
        DeadLetter {
            key: Some(vec![b'k'; key]),
            payload: Some(vec![7; value]),
            kind: "undecodable",
            error: "é".repeat(MAX_ERROR),
            source_topic: "t.activity".into(),
            pos: Position {
                partition: 3,
                offset: 41,
            },
        }
    }

    fn header(h: &OwnedHeaders, name: &str) -> Option<String> {
        h.iter()
            .find(|x| x.key == name)
            .and_then(|x| x.value)
            .map(|v| String::from_utf8_lossy(v).into_owned())
    }

    #[test]
    fn small_records_are_kept_whole() {
        let p = letter(10, MAX_VALUE).published();
        assert_eq!(p.key.len(), 10);
        assert_eq!(p.payload.map(|v| v.len()), Some(MAX_VALUE));
        assert_eq!(header(&p.headers, headers::ORIGINAL_SIZE), None);
        assert_eq!(
            header(&p.headers, headers::SOURCE_OFFSET).as_deref(),
            Some("41")
        );
    }

    #[test]
    fn large_records_are_cut_with_size_and_digest() {
        let p = letter(5000, 999_810).published();
        assert_eq!(p.key.len(), MAX_KEY);
        assert_eq!(p.payload.map(|v| v.len()), Some(MAX_VALUE));
        assert_eq!(
            header(&p.headers, headers::ORIGINAL_SIZE).as_deref(),
            Some("999810")
        );
        assert_eq!(
            header(&p.headers, headers::ORIGINAL_KEY_SIZE).as_deref(),
            Some("5000")
        );
        let want: String = Sha256::digest(vec![7u8; 999_810])
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(header(&p.headers, headers::ORIGINAL_SHA256), Some(want));
        let error = header(&p.headers, headers::ERROR).unwrap_or_default();
        assert!(error.len() <= MAX_ERROR && error.len() > MAX_ERROR - 2);
    }
}
