//! A [`Report`] as files: JSON, CSV tables and the Markdown summary.

use std::fmt::Write as _;

use serde::Serialize;

use crate::error::ReportError;
use crate::figures::{Report, Stats};
use crate::table::Table;
use crate::{charts, rfc3339};

/// One output file, by name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct File {
    /// File name inside the output directory.
    pub name: &'static str,
    /// Its bytes.
    pub bytes: Vec<u8>,
}

fn csv_of<R: Serialize>(
    name: &'static str,
    rows: impl IntoIterator<Item = R>,
) -> Result<File, ReportError> {
    let mut w = csv::Writer::from_writer(Vec::new());
    for row in rows {
        w.serialize(row)
            .map_err(|e| ReportError::Csv { name, source: e })?;
    }
    let bytes = w.into_inner().map_err(|e| ReportError::Csv {
        name,
        source: e.into_error().into(),
    })?;
    Ok(File { name, bytes })
}

#[derive(Serialize)]
struct VisitRow<'a> {
    user_id: &'a str,
    session_id: &'a str,
    device_type: &'a str,
    browser: &'a str,
    start: String,
    end: String,
    duration_ms: i64,
    open: bool,
}

#[derive(Serialize)]
struct BreakdownRow<'a> {
    dimension: &'static str,
    name: &'a str,
    sessions: u64,
    users: u64,
}

#[derive(Serialize)]
struct ImportRow<'a> {
    import_id: &'a str,
    owner_id: Option<&'a str>,
    outcome: &'a str,
    started: Option<String>,
    finished: Option<String>,
    time_to_complete_ms: Option<i64>,
    abandon_reason: Option<&'a str>,
}

/// Every report file: `report.json`, the CSV tables, the SVG charts and
/// `summary.md`.
pub fn files(r: &Report) -> Result<Vec<File>, ReportError> {
    let json = serde_json::to_vec_pretty(r).map_err(ReportError::Json)?;
    let mut out = vec![File {
        name: "report.json",
        bytes: [json, b"\n".to_vec()].concat(),
    }];
    out.push(csv_of("concurrency.csv", &r.concurrency.minutes)?);
    out.push(csv_of(
        "visits.csv",
        r.visits.iter().map(|v| VisitRow {
            user_id: &v.user_id,
            session_id: &v.session_id,
            device_type: v.device_type.as_deref().unwrap_or("unknown"),
            browser: v.browser.as_deref().unwrap_or("unknown"),
            start: rfc3339(v.start_ms),
            end: rfc3339(v.end_ms),
            duration_ms: v.duration_ms(),
            open: v.open,
        }),
    )?);
    out.push(csv_of(
        "session-durations.csv",
        r.sessions.histogram.iter(),
    )?);
    out.push(csv_of(
        "devices-browsers.csv",
        r.devices
            .iter()
            .map(|c| ("device_type", c))
            .chain(r.browsers.iter().map(|c| ("browser", c)))
            .map(|(dimension, c)| BreakdownRow {
                dimension,
                name: &c.name,
                sessions: c.sessions,
                users: c.users,
            }),
    )?);
    out.push(csv_of("peak-hours.csv", &r.peak_hours)?);
    out.push(csv_of("daily-users.csv", &r.daily_users)?);
    out.push(csv_of("pages.csv", &r.pages)?);
    out.push(csv_of(
        "imports.csv",
        r.import_outcomes.iter().map(|i| ImportRow {
            import_id: &i.import_id,
            owner_id: i.owner_id.as_deref(),
            outcome: i.outcome,
            started: i.started_ms.map(rfc3339),
            finished: i.finished_ms.map(rfc3339),
            time_to_complete_ms: i.time_to_complete_ms,
            abandon_reason: i.abandon_reason.as_deref(),
        }),
    )?);
    out.push(File {
        name: "concurrency.svg",
        bytes: charts::concurrency(r)?.into_bytes(),
    });
    out.push(File {
        name: "peak-hours.svg",
        bytes: charts::peak_hours(r)?.into_bytes(),
    });
    out.push(File {
        name: "session-durations.svg",
        bytes: charts::durations(r)?.into_bytes(),
    });
    out.push(File {
        name: "summary.md",
        bytes: summary(r).into_bytes(),
    });
    Ok(out)
}

/// The report's tables as Parquet, for DuckDB, pandas and Spark: every
/// visit, every import's outcome with its owner, users per minute and per
/// day, and views per page. Times are UTC timestamps.
pub fn parquet_files(r: &Report) -> Result<Vec<File>, ReportError> {
    let visits = Table::new()
        .text("user_id", r.visits.iter().map(|v| Some(v.user_id.as_str())))
        .text(
            "session_id",
            r.visits.iter().map(|v| Some(v.session_id.as_str())),
        )
        .text(
            "device_type",
            r.visits.iter().map(|v| v.device_type.as_deref()),
        )
        .text("browser", r.visits.iter().map(|v| v.browser.as_deref()))
        .time("start", r.visits.iter().map(|v| Some(v.start_ms)))
        .time("end", r.visits.iter().map(|v| Some(v.end_ms)))
        .int(
            "duration_ms",
            r.visits.iter().map(|v| Some(v.duration_ms())),
        )
        .flag("open", r.visits.iter().map(|v| Some(v.open)));
    let i = &r.import_outcomes;
    let imports = Table::new()
        .text("import_id", i.iter().map(|x| Some(x.import_id.as_str())))
        .text("owner_id", i.iter().map(|x| x.owner_id.as_deref()))
        .text("outcome", i.iter().map(|x| Some(x.outcome)))
        .time("started", i.iter().map(|x| x.started_ms))
        .time("finished", i.iter().map(|x| x.finished_ms))
        .int(
            "time_to_complete_ms",
            i.iter().map(|x| x.time_to_complete_ms),
        )
        .text(
            "abandon_reason",
            i.iter().map(|x| x.abandon_reason.as_deref()),
        );
    let m = &r.concurrency.minutes;
    let concurrency = Table::new()
        .time("minute", m.iter().map(|x| Some(x.minute_ms)))
        .int(
            "active_users",
            m.iter().map(|x| i64::try_from(x.active_users).ok()),
        )
        .int(
            "active_sessions",
            m.iter().map(|x| i64::try_from(x.active_sessions).ok()),
        );
    let daily = Table::new()
        .text("day", r.daily_users.iter().map(|d| Some(d.day.as_str())))
        .int(
            "users",
            r.daily_users.iter().map(|d| i64::try_from(d.users).ok()),
        );
    let pages = Table::new()
        .text("page", r.pages.iter().map(|p| Some(p.page.as_str())))
        .int("views", r.pages.iter().map(|p| i64::try_from(p.views).ok()))
        .int("users", r.pages.iter().map(|p| i64::try_from(p.users).ok()));
    Ok(vec![
        File {
            name: "visits.parquet",
            bytes: visits.to_parquet()?,
        },
        File {
            name: "imports.parquet",
            bytes: imports.to_parquet()?,
        },
        File {
            name: "concurrency.parquet",
            bytes: concurrency.to_parquet()?,
        },
        File {
            name: "daily-users.parquet",
            bytes: daily.to_parquet()?,
        },
        File {
            name: "pages.parquet",
            bytes: pages.to_parquet()?,
        },
    ])
}

/// A duration for people: `4 min 20 s`, `1 h 5 min`, `850 ms`.
pub fn human(ms: i64) -> String {
    let s = ms / 1000;
    match s {
        _ if ms < 1000 => format!("{ms} ms"),
        0..60 => format!("{s} s"),
        60..3600 if s % 60 == 0 => format!("{} min", s / 60),
        60..3600 => format!("{} min {} s", s / 60, s % 60),
        _ if s % 3600 / 60 == 0 => format!("{} h", s / 3600),
        _ => format!("{} h {} min", s / 3600, s % 3600 / 60),
    }
}

fn stat_line(s: &Stats) -> String {
    let f = |v: Option<i64>| v.map_or_else(|| "–".to_owned(), human);
    format!(
        "p50 {}, p90 {}, p99 {}, longest {}",
        f(s.p50_ms),
        f(s.p90_ms),
        f(s.p99_ms),
        f(s.max_ms)
    )
}

/// The headline figures, with links to the charts and tables.
pub fn summary(r: &Report) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "# Replay summary as of {}\n", r.as_of);
    let _ = writeln!(md, "Idle timeout: {}.\n", human(r.idle_timeout_ms));
    let s = &r.sessions;
    let _ = writeln!(md, "| Figure | Value |\n|---|---|");
    let _ = writeln!(md, "| Users with a session | {} |", s.users);
    let _ = writeln!(md, "| Sessions | {} |", s.sessions);
    let _ = writeln!(
        md,
        "| Visits (open at the end) | {} ({}) |",
        s.visits, s.open_visits
    );
    let _ = writeln!(md, "| Visit length | {} |", stat_line(&s.duration));
    let peak = r.concurrency.peak_minute.as_deref().unwrap_or("–");
    let _ = writeln!(
        md,
        "| Peak concurrent users | {} (minute {peak}) |",
        r.concurrency.peak_users
    );
    if let Some(busiest) = r
        .peak_hours
        .iter()
        .filter(|c| c.user_minutes > 0)
        .max_by(|a, b| {
            a.user_minutes
                .cmp(&b.user_minutes)
                .then_with(|| b.hour.cmp(&a.hour))
        })
    {
        let _ = writeln!(
            md,
            "| Busiest hour (UTC) | {} {:02}:00 ({} user-minutes) |",
            busiest.weekday, busiest.hour, busiest.user_minutes
        );
    }
    if let Some(d) = r.devices.first() {
        let _ = writeln!(md, "| Top device | {} ({} sessions) |", d.name, d.sessions);
    }
    if let Some(b) = r.browsers.first() {
        let _ = writeln!(md, "| Top browser | {} ({} sessions) |", b.name, b.sessions);
    }
    if let Some(p) = r.pages.first() {
        let _ = writeln!(md, "| Top page | {} ({} views) |", p.page, p.views);
    }
    let i = &r.imports;
    let _ = writeln!(
        md,
        "| Imports started / completed / abandoned / in progress | {} / {} / {} / {} |",
        i.started, i.completed, i.abandoned, i.in_progress
    );
    let rate = i
        .abandonment_rate
        .map_or_else(|| "–".to_owned(), |r| format!("{:.1} %", r * 100.0));
    let _ = writeln!(md, "| Abandonment rate | {rate} |");
    let _ = writeln!(
        md,
        "| Time to complete | {} |",
        stat_line(&i.time_to_complete)
    );
    let _ = writeln!(
        md,
        "\n## Charts\n\n![Concurrent users per minute](concurrency.svg)\n\n\
         ![Peak hours](peak-hours.svg)\n\n![Visit durations](session-durations.svg)\n"
    );
    let _ = writeln!(
        md,
        "## Tables\n\n`report.json` holds every figure. CSV: [concurrency](concurrency.csv), \
         [visits](visits.csv), [visit durations](session-durations.csv), \
         [devices and browsers](devices-browsers.csv), [peak hours](peak-hours.csv), \
         [pages](pages.csv), [imports](imports.csv). The as-of views: \
         `presence-users.json`, `presence-active.json`, `presence-summary.json`, `imports.json`."
    );
    md
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_durations() {
        assert_eq!(human(850), "850 ms");
        assert_eq!(human(42_000), "42 s");
        assert_eq!(human(300_000), "5 min");
        assert_eq!(human(260_000), "4 min 20 s");
        assert_eq!(human(3_900_000), "1 h 5 min");
        assert_eq!(human(7_200_000), "2 h");
    }
}
