//! A direct Avro binary encoder for the state records.
//!
//! The processor encodes every changed state once per batch, so this is its
//! hottest write path. Building an `apache_avro::types::Value` and having the
//! library validate it costs tens of microseconds per state. The state schemas
//! are fixed, so their binary form is written directly here. Tests check that
//! the output is byte-identical to apache-avro's for the same state.

use crate::state::{ImportState, SeenEvent, SessionState, UserPresence};

struct Out(Vec<u8>);

impl Out {
    fn long(&mut self, v: i64) {
        let mut z = ((v << 1) ^ (v >> 63)) as u64;
        while z >= 0x80 {
            self.0.push((z as u8) | 0x80);
            z >>= 7;
        }
        self.0.push(z as u8);
    }

    fn int(&mut self, v: i32) {
        self.long(i64::from(v));
    }

    fn string(&mut self, s: &str) {
        self.long(s.len() as i64);
        self.0.extend_from_slice(s.as_bytes());
    }

    fn opt_string(&mut self, s: Option<&str>) {
        match s {
            None => self.long(0),
            Some(s) => {
                self.long(1);
                self.string(s);
            }
        }
    }

    fn opt_long(&mut self, v: Option<i64>) {
        match v {
            None => self.long(0),
            Some(v) => {
                self.long(1);
                self.long(v);
            }
        }
    }

    fn boolean(&mut self, b: bool) {
        self.0.push(u8::from(b));
    }

    /// An array: one block with its count, then the end marker.
    fn array<T>(&mut self, items: &[T], mut each: impl FnMut(&mut Out, &T)) {
        if !items.is_empty() {
            self.long(items.len() as i64);
            for item in items {
                each(self, item);
            }
        }
        self.long(0);
    }

    fn seen(&mut self, seen: &[SeenEvent]) {
        self.array(seen, |o, s| {
            o.long(s.id_hash);
            o.long(s.occurred_at);
        });
    }
}

fn session(o: &mut Out, s: &SessionState) {
    o.string(&s.session_id);
    o.opt_long(s.started_at);
    o.opt_string(s.device_type.as_deref());
    o.opt_string(s.browser.as_deref());
    o.opt_string(s.os.as_deref());
    o.opt_string(s.ip_address.as_deref());
    o.opt_string(s.user_agent.as_deref());
    o.opt_string(s.current_page.as_deref());
    o.long(s.page_at);
    o.long(s.last_activity);
    o.boolean(s.active);
    o.opt_long(s.ended_at);
    match s.ended_reason {
        None => o.long(0),
        Some(r) => {
            o.long(1);
            o.long(r.index() as i64);
        }
    }
    o.long(s.page_views);
    o.long(s.heartbeats);
}

/// Appends the Avro binary body of a presence state to `buf`.
pub(crate) fn presence(buf: Vec<u8>, u: &UserPresence) -> Vec<u8> {
    let mut o = Out(buf);
    o.string(&u.user_id);
    o.opt_string(u.email.as_deref());
    o.opt_string(u.full_name.as_deref());
    o.opt_string(u.membership.as_deref());
    o.array(&u.roles, |o, r| o.string(r));
    o.long(u.profile_at);
    o.array(&u.sessions, session);
    o.seen(&u.recent_events);
    o.int(u.source_partition);
    o.long(u.source_offset);
    o.0
}

/// Appends the Avro binary body of an import state to `buf`.
pub(crate) fn import_state(buf: Vec<u8>, s: &ImportState) -> Vec<u8> {
    let mut o = Out(buf);
    o.string(&s.import_id);
    o.opt_string(s.owner_id.as_deref());
    o.opt_string(s.previous_owner_id.as_deref());
    o.long(s.status.index() as i64);
    o.string(&s.json_hash);
    o.string(&s.file_name);
    o.opt_string(s.step.as_deref());
    o.int(s.progress);
    o.int(s.questions_imported);
    o.int(s.questions_total);
    o.long(s.started_at);
    o.long(s.last_accessed_at);
    o.opt_long(s.finished_at);
    o.opt_string(s.abandon_reason.as_deref());
    o.seen(&s.recent_events);
    o.int(s.source_partition);
    o.long(s.source_offset);
    o.0
}
