//! A direct Avro binary decoder for records written with the current schemas.
//!
//! Every record the processor reads is decoded once, and almost all are
//! written with the current schema. apache-avro builds a generic `Value` tree
//! (a heap allocation per field and a name per record field) that is then
//! converted into the event types; that costs more than the fold itself.
//! The current schemas are fixed at build time, so their binary form is read
//! straight into the types here. Records of older versions keep the resolving
//! path. A property test (`tests/direct.rs`) checks that this decoder returns
//! exactly what the apache-avro path returns for any record, and refuses
//! exactly what it refuses.

use crate::MAX_DECODE_ALLOCATION;
use crate::activity::{ActivityBody, ActivityEvent, EndReason, Interaction, SessionStarted};
use crate::error::SchemaError;
use crate::import::{ImportBody, ImportEvent};
use crate::state::{EndedReason, ImportState, ImportStatus, SeenEvent, SessionState, UserPresence};

/// A cursor over an Avro body, with the record it belongs to for errors.
struct In<'a> {
    buf: &'a [u8],
    pos: usize,
    record: &'static str,
}

type R<T> = Result<T, SchemaError>;

impl<'a> In<'a> {
    fn new(record: &'static str, buf: &'a [u8]) -> Self {
        In {
            buf,
            pos: 0,
            record,
        }
    }

    fn bad(&self, reason: impl Into<String>) -> SchemaError {
        SchemaError::Malformed {
            record: self.record,
            reason: format!("{} at byte {}", reason.into(), self.pos),
        }
    }

    fn byte(&mut self) -> R<u8> {
        let b = *self
            .buf
            .get(self.pos)
            .ok_or_else(|| self.bad("unexpected end"))?;
        self.pos += 1;
        Ok(b)
    }

    /// A variable-length zig-zag long, read as the Avro reference reader
    /// does: at most ten bytes, bits past the 64th dropped.
    fn long(&mut self) -> R<i64> {
        // One bounds check for the whole integer instead of one per byte:
        // the loop runs once per event field, so its branches count.
        let rest = self.buf.get(self.pos..).unwrap_or_default();
        let mut z = 0u64;
        for (i, b) in rest.iter().take(10).enumerate() {
            z |= u64::from(b & 0x7F) << (7 * i);
            if b & 0x80 == 0 {
                self.pos += i + 1;
                return Ok((z >> 1) as i64 ^ -((z & 1) as i64));
            }
        }
        if rest.len() < 10 {
            self.pos = self.buf.len();
            return Err(self.bad("unexpected end"));
        }
        self.pos += 10;
        Err(self.bad("variable-length integer longer than 10 bytes"))
    }

    fn int(&mut self) -> R<i32> {
        let v = self.long()?;
        i32::try_from(v).map_err(|_| self.bad(format!("{v} is out of range for an int")))
    }

    /// A length or count: not negative and within the allocation cap.
    fn len(&mut self, v: i64) -> R<usize> {
        let n = usize::try_from(v).map_err(|_| self.bad(format!("negative length {v}")))?;
        if n > MAX_DECODE_ALLOCATION {
            return Err(self.bad(format!(
                "a length or count of {n} (maximum allowed: {MAX_DECODE_ALLOCATION})"
            )));
        }
        Ok(n)
    }

    fn string(&mut self) -> R<String> {
        self.string_or_cut()?
            .ok_or_else(|| self.bad("string past the end"))
    }

    /// A string, or `None` when its bytes are cut short by the end of the
    /// body: apache-avro reads such a string as null, which an optional
    /// field takes as absent.
    fn string_or_cut(&mut self) -> R<Option<String>> {
        let raw = self.long()?;
        let n = self.len(raw)?;
        let Some(end) = self.pos.checked_add(n).filter(|e| *e <= self.buf.len()) else {
            self.pos = self.buf.len();
            return Ok(None);
        };
        let s = std::str::from_utf8(&self.buf[self.pos..end])
            .map_err(|e| self.bad(format!("string is not UTF-8 ({e})")))?
            .to_owned();
        self.pos = end;
        Ok(Some(s))
    }

    fn boolean(&mut self) -> R<bool> {
        match self.byte()? {
            0 => Ok(false),
            1 => Ok(true),
            b => Err(self.bad(format!("{b} is not a boolean"))),
        }
    }

    /// A union's branch index, below `branches`.
    fn branch(&mut self, branches: usize) -> R<usize> {
        // Every union index of these schemas fits in one byte.
        if let Some(&b) = self.buf.get(self.pos)
            && b & 0x80 == 0
        {
            let i = usize::from(b >> 1);
            if b & 1 == 0 && i < branches {
                self.pos += 1;
                return Ok(i);
            }
        }
        // apache-avro reads a union index cut short by the end of the body
        // as the first branch (null for the optional fields), so that a
        // record written before a trailing optional field was added still
        // reads. Records it accepts are accepted here alike.
        let rest = &self.buf[self.pos..];
        let continued = rest.iter().take(10).take_while(|b| *b & 0x80 != 0).count();
        if continued == rest.len() && continued < 10 {
            self.pos = self.buf.len();
            return Ok(0);
        }
        let i = self.long()?;
        usize::try_from(i)
            .ok()
            .filter(|i| *i < branches)
            .ok_or_else(|| self.bad(format!("union branch {i} of {branches}")))
    }

    /// `["null", T]`.
    fn opt<T>(&mut self, read: impl FnOnce(&mut Self) -> R<T>) -> R<Option<T>> {
        match self.branch(2)? {
            0 => Ok(None),
            _ => read(self).map(Some),
        }
    }

    fn opt_string(&mut self) -> R<Option<String>> {
        self.opt(Self::string_or_cut).map(Option::flatten)
    }

    fn opt_long(&mut self) -> R<Option<i64>> {
        self.opt(Self::long)
    }

    fn symbol<T: Copy>(&mut self, all: &[T]) -> R<T> {
        let i = self.int()?;
        usize::try_from(i)
            .ok()
            .and_then(|i| all.get(i).copied())
            .ok_or_else(|| self.bad(format!("enum symbol {i} of {}", all.len())))
    }

    /// An array: blocks of items, a negative count followed by the block's
    /// byte size, ended by a zero count.
    fn array<T>(&mut self, mut item: impl FnMut(&mut Self) -> R<T>) -> R<Vec<T>> {
        let mut out = Vec::new();
        loop {
            let raw = self.long()?;
            let count = match raw {
                0 => return Ok(out),
                n if n < 0 => {
                    self.long()?;
                    let n = n
                        .checked_neg()
                        .ok_or_else(|| self.bad("block count overflows"))?;
                    self.len(n)?
                }
                n => self.len(n)?,
            };
            // Every item takes at least one byte: a count past the end is
            // refused before anything is reserved for it.
            if count > self.buf.len() - self.pos {
                return Err(self.bad(format!("{count} items past the end")));
            }
            // Exactly: a state is held per user for as long as it lives, and
            // `reserve` would round one session up to four (a kilobyte).
            out.reserve_exact(count);
            for _ in 0..count {
                out.push(item(self)?);
            }
        }
    }

    fn strings(&mut self) -> R<Vec<String>> {
        self.array(Self::string)
    }

    fn seen(&mut self) -> R<Vec<SeenEvent>> {
        self.array(|i| {
            Ok(SeenEvent {
                id_hash: i.long()?,
                occurred_at: i.long()?,
            })
        })
    }

    /// The value read, once the whole body is read.
    fn done<T>(self, value: T) -> R<T> {
        match self.buf.len() - self.pos {
            0 => Ok(value),
            rest => Err(SchemaError::TrailingBytes(rest)),
        }
    }
}

/// Decodes the body of an activity event written with the current schema.
pub(crate) fn activity(body: &[u8]) -> R<ActivityEvent> {
    let mut i = In::new("ActivityEvent", body);
    // Fields are read in the order written, which is the schema's order.
    let e = ActivityEvent {
        event_id: i.string()?,
        occurred_at: i.long()?,
        user_id: i.string()?,
        session_id: i.string()?,
        body: activity_body(&mut i)?,
        received_at: i.opt_long()?,
    };
    i.done(e)
}

fn activity_body(i: &mut In<'_>) -> R<ActivityBody> {
    Ok(match i.branch(4)? {
        0 => ActivityBody::SessionStarted(Box::new(SessionStarted {
            email: i.string()?,
            full_name: i.opt_string()?,
            membership: i.opt_string()?,
            roles: i.strings()?,
            device_type: i.opt_string()?,
            browser: i.opt_string()?,
            os: i.opt_string()?,
            ip_address: i.opt_string()?,
            user_agent: i.opt_string()?,
            page: i.opt_string()?,
        })),
        1 => ActivityBody::Heartbeat {
            page: i.opt_string()?,
            activity: i.symbol(Interaction::ALL)?,
        },
        2 => ActivityBody::PageViewed {
            page: i.string()?,
            title: i.opt_string()?,
        },
        _ => ActivityBody::SessionEnded {
            reason: i.symbol(EndReason::ALL)?,
        },
    })
}

/// Decodes the body of an import event written with the current schema.
pub(crate) fn import(body: &[u8]) -> R<ImportEvent> {
    let mut i = In::new("ImportEvent", body);
    let e = ImportEvent {
        event_id: i.string()?,
        occurred_at: i.long()?,
        import_id: i.string()?,
        actor_id: i.opt_string()?,
        body: import_body(&mut i)?,
        received_at: i.opt_long()?,
    };
    i.done(e)
}

fn import_body(i: &mut In<'_>) -> R<ImportBody> {
    Ok(match i.branch(7)? {
        0 => ImportBody::Started {
            owner_id: i.opt_string()?,
            json_hash: i.string()?,
            file_name: i.string()?,
            questions_total: i.int()?,
        },
        1 => {
            let step = i.string()?;
            let progress = i.int()?;
            let questions_imported = i.int()?;
            ImportBody::Progressed {
                questions_total: i.int()?,
                step,
                progress,
                questions_imported,
            }
        }
        2 => ImportBody::Accessed,
        3 => ImportBody::Completed,
        4 => ImportBody::Abandoned {
            reason: i.string()?,
        },
        5 => ImportBody::Transferred {
            new_owner_id: i.string()?,
        },
        _ => ImportBody::Deleted,
    })
}

fn session(i: &mut In<'_>) -> R<SessionState> {
    Ok(SessionState {
        session_id: i.string()?.into(),
        started_at: i.opt_long()?,
        device_type: i.opt_string()?.map(Into::into),
        browser: i.opt_string()?.map(Into::into),
        os: i.opt_string()?.map(Into::into),
        ip_address: i.opt_string()?.map(Into::into),
        user_agent: i.opt_string()?.map(Into::into),
        current_page: i.opt_string()?.map(Into::into),
        page_at: i.long()?,
        last_activity: i.long()?,
        active: i.boolean()?,
        ended_at: i.opt_long()?,
        ended_reason: i.opt(|i| i.symbol(EndedReason::ALL))?,
        page_views: i.long()?,
        heartbeats: i.long()?,
    })
}

/// Decodes the body of a presence state written with the current schema.
pub(crate) fn presence(body: &[u8]) -> R<UserPresence> {
    let mut i = In::new("UserPresence", body);
    let u = UserPresence {
        user_id: i.string()?.into(),
        email: i.opt_string()?.map(Into::into),
        full_name: i.opt_string()?.map(Into::into),
        membership: i.opt_string()?.map(Into::into),
        roles: i.strings()?,
        profile_at: i.long()?,
        sessions: i.array(session)?,
        recent_events: i.seen()?,
        source_partition: i.int()?,
        source_offset: i.long()?,
    };
    i.done(u)
}

/// Decodes the body of an import state written with the current schema.
pub(crate) fn import_state(body: &[u8]) -> R<ImportState> {
    let mut i = In::new("ImportState", body);
    let s = ImportState {
        import_id: i.string()?,
        owner_id: i.opt_string()?,
        previous_owner_id: i.opt_string()?,
        status: i.symbol(ImportStatus::ALL)?,
        json_hash: i.string()?,
        file_name: i.string()?,
        step: i.opt_string()?,
        progress: i.int()?,
        questions_imported: i.int()?,
        questions_total: i.int()?,
        started_at: i.long()?,
        last_accessed_at: i.long()?,
        finished_at: i.opt_long()?,
        abandon_reason: i.opt_string()?,
        recent_events: i.seen()?,
        source_partition: i.int()?,
        source_offset: i.long()?,
    };
    i.done(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn longs_read_as_the_reference_reader_does() {
        let read = |b: &[u8]| In::new("T", b).long();
        assert_eq!(read(&[0x00]).ok(), Some(0));
        assert_eq!(read(&[0x01]).ok(), Some(-1));
        assert_eq!(read(&[0x02]).ok(), Some(1));
        assert_eq!(read(&[0x80, 0x01]).ok(), Some(64));
        assert_eq!(
            read(&[0xFE, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01]).ok(),
            Some(i64::MAX)
        );
        assert!(read(&[0x80; 10]).is_err());
        assert!(read(&[0x80]).is_err());
    }
}
