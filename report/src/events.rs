//! The events of a history as one Parquet table: a row per event, its
//! stream, position, kind and time, and every field of every kind as a
//! column of its own (empty where the kind has no such field), written in
//! row groups as the events come, so a history of millions is never held
//! whole.

use std::io::Write;

use parquet::arrow::ArrowWriter;
use sessionfold_schemas::{ActivityBody, ActivityEvent, ImportBody, ImportEvent};

use crate::error::ReportError;
use crate::table::{Table, writer};

/// Rows held before they are written as a row group.
const ROW_GROUP: usize = 64 * 1024;

/// Where an event was read, and what the fold made of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Origin<'a> {
    /// The input partition.
    pub partition: i32,
    /// The input offset.
    pub offset: i64,
    /// What the fold did: `applied`, `duplicate`, … (`None` in an export,
    /// which does not fold).
    pub outcome: Option<&'a str>,
}

macro_rules! columns {
    ($($name:ident: $kind:ident),* $(,)?) => {
        /// One row group's columns.
        #[derive(Default)]
        struct Rows { $($name: Vec<Option<columns!(@ty $kind)>>,)* }
        impl Rows {
            fn len(&self) -> usize { self.stream.len() }
            fn table(&mut self) -> Table {
                Table::new()
                    $(.$kind(stringify!($name), std::mem::take(&mut self.$name)))*
            }
        }
    };
    (@ty text) => { String };
    (@ty int) => { i64 };
    (@ty time) => { i64 };
    (@ty flag) => { bool };
}

columns! {
    stream: text, partition: int, offset: int, outcome: text,
    event_id: text, kind: text, occurred_at: time, received_at: time,
    user_id: text, session_id: text, import_id: text, actor_id: text,
    page: text, title: text, activity: text, reason: text,
    email: text, full_name: text, membership: text, roles: text,
    device_type: text, browser: text, os: text, ip_address: text, user_agent: text,
    owner_id: text, json_hash: text, file_name: text, questions_total: int,
    step: text, progress: int, questions_imported: int, new_owner_id: text,
}

/// Writes events as Parquet to `W`.
pub struct EventsWriter<W: Write + Send> {
    rows: Rows,
    out: Option<ArrowWriter<W>>,
    sink: Option<W>,
    written: u64,
}

impl<W: Write + Send> EventsWriter<W> {
    /// A writer into `out`.
    pub fn new(out: W) -> EventsWriter<W> {
        EventsWriter {
            rows: Rows::default(),
            out: None,
            sink: Some(out),
            written: 0,
        }
    }

    fn common(
        &mut self,
        stream: &str,
        o: Origin<'_>,
        event_id: &str,
        kind: &str,
        at: i64,
        received: Option<i64>,
    ) {
        let r = &mut self.rows;
        r.stream.push(Some(stream.into()));
        r.partition.push(Some(i64::from(o.partition)));
        r.offset.push(Some(o.offset));
        r.outcome.push(o.outcome.map(Into::into));
        r.event_id.push(Some(event_id.into()));
        r.kind.push(Some(kind.into()));
        r.occurred_at.push(Some(at));
        r.received_at.push(received);
    }

    /// Adds an activity event.
    pub fn activity(&mut self, e: &ActivityEvent, o: Origin<'_>) -> Result<(), ReportError> {
        self.common(
            "activity",
            o,
            &e.event_id,
            e.body.kind(),
            e.occurred_at,
            e.received_at,
        );
        let r = &mut self.rows;
        r.user_id.push(Some(e.user_id.clone()));
        r.session_id.push(Some(e.session_id.clone()));
        r.import_id.push(None);
        r.actor_id.push(None);
        let (mut page, mut title, mut activity, mut reason) = (None, None, None, None);
        let mut started = None;
        match &e.body {
            ActivityBody::SessionStarted(s) => {
                page = s.page.clone();
                started = Some(s);
            }
            ActivityBody::Heartbeat {
                page: p,
                activity: a,
            } => {
                page = p.clone();
                activity = Some(a.as_str().to_owned());
            }
            ActivityBody::PageViewed { page: p, title: t } => {
                page = Some(p.clone());
                title = t.clone();
            }
            ActivityBody::SessionEnded { reason: why } => reason = Some(why.as_str().to_owned()),
        }
        r.page.push(page);
        r.title.push(title);
        r.activity.push(activity);
        r.reason.push(reason);
        r.email.push(started.map(|s| s.email.clone()));
        r.full_name.push(started.and_then(|s| s.full_name.clone()));
        r.membership
            .push(started.and_then(|s| s.membership.clone()));
        r.roles.push(started.map(|s| s.roles.join(",")));
        r.device_type
            .push(started.and_then(|s| s.device_type.clone()));
        r.browser.push(started.and_then(|s| s.browser.clone()));
        r.os.push(started.and_then(|s| s.os.clone()));
        r.ip_address
            .push(started.and_then(|s| s.ip_address.clone()));
        r.user_agent
            .push(started.and_then(|s| s.user_agent.clone()));
        for c in [
            &mut r.owner_id,
            &mut r.json_hash,
            &mut r.file_name,
            &mut r.step,
            &mut r.new_owner_id,
        ] {
            c.push(None);
        }
        for c in [
            &mut r.questions_total,
            &mut r.progress,
            &mut r.questions_imported,
        ] {
            c.push(None);
        }
        self.flush_full()
    }

    /// Adds an import event.
    pub fn import(&mut self, e: &ImportEvent, o: Origin<'_>) -> Result<(), ReportError> {
        self.common(
            "imports",
            o,
            &e.event_id,
            e.body.kind(),
            e.occurred_at,
            e.received_at,
        );
        let r = &mut self.rows;
        r.user_id.push(None);
        r.session_id.push(None);
        r.import_id.push(Some(e.import_id.clone()));
        r.actor_id.push(e.actor_id.clone());
        for c in [
            &mut r.page,
            &mut r.title,
            &mut r.activity,
            &mut r.email,
            &mut r.full_name,
            &mut r.membership,
            &mut r.roles,
            &mut r.device_type,
            &mut r.browser,
            &mut r.os,
            &mut r.ip_address,
            &mut r.user_agent,
        ] {
            c.push(None);
        }
        let (
            mut owner,
            mut hash,
            mut file,
            mut total,
            mut step,
            mut progress,
            mut imported,
            mut new_owner,
            mut reason,
        ) = (None, None, None, None, None, None, None, None, None);
        match &e.body {
            ImportBody::Started {
                owner_id,
                json_hash,
                file_name,
                questions_total,
            } => {
                owner = owner_id.clone();
                hash = Some(json_hash.clone());
                file = Some(file_name.clone());
                total = Some(i64::from(*questions_total));
            }
            ImportBody::Progressed {
                step: s,
                progress: p,
                questions_imported: q,
                questions_total: t,
            } => {
                step = Some(s.clone());
                progress = Some(i64::from(*p));
                imported = Some(i64::from(*q));
                total = Some(i64::from(*t));
            }
            ImportBody::Abandoned { reason: why } => reason = Some(why.clone()),
            ImportBody::Transferred { new_owner_id } => new_owner = Some(new_owner_id.clone()),
            ImportBody::Accessed | ImportBody::Completed | ImportBody::Deleted => {}
        }
        r.owner_id.push(owner);
        r.json_hash.push(hash);
        r.file_name.push(file);
        r.questions_total.push(total);
        r.step.push(step);
        r.progress.push(progress);
        r.questions_imported.push(imported);
        r.new_owner_id.push(new_owner);
        r.reason.push(reason);
        self.flush_full()
    }

    fn flush_full(&mut self) -> Result<(), ReportError> {
        if self.rows.len() >= ROW_GROUP {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), ReportError> {
        if self.rows.len() == 0 && self.out.is_some() {
            return Ok(());
        }
        let table = self.rows.table();
        if self.out.is_none() {
            let sink = self
                .sink
                .take()
                .ok_or_else(|| ReportError::Parquet("writer closed".into()))?;
            self.out = Some(writer(sink, table.schema())?);
        }
        self.written += table.rows() as u64;
        if let Some(w) = self.out.as_mut() {
            w.write(&table.batch()?)
                .map_err(|e| ReportError::Parquet(e.to_string()))?;
        }
        Ok(())
    }

    /// Writes what is held and closes the file; the number of events written.
    pub fn finish(mut self) -> Result<u64, ReportError> {
        self.flush()?;
        if let Some(w) = self.out.take() {
            w.close().map_err(|e| ReportError::Parquet(e.to_string()))?;
        }
        Ok(self.written)
    }
}
