//! SVG charts of a [`Report`], drawn with plotters' SVG backend (text is left
//! to the viewer's fonts, so no font library is needed).

use plotters::prelude::*;

use crate::error::ReportError;
use crate::figures::{Report, WEEKDAYS};

const SIZE: (u32, u32) = (960, 420);

fn chart_error(chart: &'static str) -> impl Fn(Box<dyn std::error::Error>) -> ReportError {
    move |e| ReportError::Chart {
        chart,
        reason: e.to_string(),
    }
}

/// Concurrently active users per minute.
pub fn concurrency(r: &Report) -> Result<String, ReportError> {
    let mut svg = String::new();
    draw_concurrency(r, &mut svg).map_err(chart_error("concurrency"))?;
    Ok(svg)
}

fn draw_concurrency(r: &Report, svg: &mut String) -> Result<(), Box<dyn std::error::Error>> {
    let root = SVGBackend::with_string(svg, SIZE).into_drawing_area();
    root.fill(&WHITE)?;
    let points: Vec<(i64, u64)> = r
        .concurrency
        .minutes
        .iter()
        .map(|m| (m.minute_ms, m.active_users))
        .collect();
    let x0 = points.first().map_or(0, |p| p.0);
    let x1 = points
        .last()
        .map_or(60_000, |p| p.0 + 60_000)
        .max(x0 + 60_000);
    let y1 = r.concurrency.peak_users.max(1) + r.concurrency.peak_users / 10 + 1;
    let ticks = time_ticks(x0, x1);
    let step = ticks
        .get(1)
        .zip(ticks.first())
        .map_or(MINUTE, |(b, a)| b - a);
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!(
                "Concurrent users per minute (peak {})",
                r.concurrency.peak_users
            ),
            ("sans-serif", 20),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(56)
        .build_cartesian_2d((x0..x1).with_key_points(ticks), 0u64..y1)?;
    let multi_day = x1 - x0 > DAY;
    chart
        .configure_mesh()
        .x_desc("time (UTC)")
        .y_desc("active users")
        .x_label_formatter(&|t| time_label(*t, step, multi_day))
        .draw()?;
    chart.draw_series(
        AreaSeries::new(points.iter().copied(), 0, RGBColor(46, 125, 50).mix(0.25))
            .border_style(RGBColor(46, 125, 50)),
    )?;
    root.present()?;
    Ok(())
}

const MINUTE: i64 = 60_000;
const HOUR: i64 = 60 * MINUTE;
const DAY: i64 = 24 * HOUR;

/// Tick times for a time axis from `x0` to `x1` (milliseconds): whole
/// multiples of the smallest round step that gives at most ten ticks, so
/// every tick falls on a time its label names exactly (10:15, not 10:13:20).
fn time_ticks(x0: i64, x1: i64) -> Vec<i64> {
    const STEPS: [i64; 14] = [
        MINUTE,
        2 * MINUTE,
        5 * MINUTE,
        10 * MINUTE,
        15 * MINUTE,
        30 * MINUTE,
        HOUR,
        2 * HOUR,
        3 * HOUR,
        6 * HOUR,
        12 * HOUR,
        DAY,
        2 * DAY,
        7 * DAY,
    ];
    let span = (x1 - x0).max(1);
    let step = STEPS
        .iter()
        .copied()
        .find(|s| span / s <= 10)
        .unwrap_or_else(|| (span / 10 / DAY + 1) * DAY);
    let first = x0.div_euclid(step) * step + if x0.rem_euclid(step) == 0 { 0 } else { step };
    (0..)
        .map(|i| first + i * step)
        .take_while(|t| *t <= x1)
        .collect()
}

/// A tick's label: the date when ticks are days apart, the time of day
/// otherwise (with the date too when the axis spans several days).
fn time_label(t: i64, step: i64, multi_day: bool) -> String {
    chrono::DateTime::from_timestamp_millis(t).map_or_else(String::new, |d| {
        let format = if step >= DAY {
            "%m-%d"
        } else if multi_day {
            "%m-%d %H:%M"
        } else {
            "%H:%M"
        };
        d.format(format).to_string()
    })
}

/// User-minutes by weekday and hour of day, as a heat map.
pub fn peak_hours(r: &Report) -> Result<String, ReportError> {
    let mut svg = String::new();
    draw_peak_hours(r, &mut svg).map_err(chart_error("peak-hours"))?;
    Ok(svg)
}

fn draw_peak_hours(r: &Report, svg: &mut String) -> Result<(), Box<dyn std::error::Error>> {
    let root = SVGBackend::with_string(svg, SIZE).into_drawing_area();
    root.fill(&WHITE)?;
    let max = r
        .peak_hours
        .iter()
        .map(|c| c.user_minutes)
        .max()
        .unwrap_or(0)
        .max(1);
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!(
                "Peak hours: user-minutes by weekday and hour, UTC (white 0, darkest green {max})"
            ),
            ("sans-serif", 20),
        )
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(48)
        .build_cartesian_2d((0u32..23).into_segmented(), (0u32..6).into_segmented())?;
    let centre = |v: &SegmentValue<u32>| match v {
        SegmentValue::CenterOf(i) => Some(*i),
        _ => None,
    };
    chart
        .configure_mesh()
        .disable_mesh()
        .x_labels(24)
        .y_labels(7)
        .x_desc("hour of day")
        .x_label_formatter(&|v| centre(v).map_or_else(String::new, |h| format!("{h:02}")))
        .y_label_formatter(&|v| {
            // Monday at the top.
            centre(v)
                .and_then(|row| WEEKDAYS.get(6usize.saturating_sub(row as usize)))
                .map_or_else(String::new, |s| (*s).to_owned())
        })
        .draw()?;
    chart.draw_series(r.peak_hours.iter().enumerate().map(|(i, c)| {
        let row = 6 - (i / 24) as u32;
        let hour = u32::from(c.hour);
        // From white at 0 to a dark green at the busiest cell, so "darkest" in
        // the title names the cell that looks darkest.
        let level = c.user_minutes as f64 / max as f64;
        let mix = |dark: f64| (255.0 - (255.0 - dark) * level).round() as u8;
        Rectangle::new(
            [
                (SegmentValue::Exact(hour), SegmentValue::Exact(row)),
                (SegmentValue::Exact(hour + 1), SegmentValue::Exact(row + 1)),
            ],
            RGBColor(mix(27.0), mix(94.0), mix(32.0)).filled(),
        )
    }))?;
    root.present()?;
    Ok(())
}

/// The visit-duration histogram.
pub fn durations(r: &Report) -> Result<String, ReportError> {
    let mut svg = String::new();
    draw_durations(r, &mut svg).map_err(chart_error("session-durations"))?;
    Ok(svg)
}

fn draw_durations(r: &Report, svg: &mut String) -> Result<(), Box<dyn std::error::Error>> {
    let root = SVGBackend::with_string(svg, SIZE).into_drawing_area();
    root.fill(&WHITE)?;
    let buckets = &r.sessions.histogram;
    let top = buckets.iter().map(|b| b.count).max().unwrap_or(0);
    let n = u32::try_from(buckets.len()).unwrap_or(0);
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!(
                "Visit durations ({} closed visits)",
                r.sessions.duration.count
            ),
            ("sans-serif", 20),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(56)
        .build_cartesian_2d(
            (0u32..n.saturating_sub(1)).into_segmented(),
            0usize..(top + top / 10 + 1),
        )?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .y_desc("visits")
        .x_labels(buckets.len())
        .x_label_formatter(&|v| match v {
            SegmentValue::CenterOf(i) => buckets
                .get(*i as usize)
                .map_or_else(String::new, |b| b.label.clone()),
            _ => String::new(),
        })
        .draw()?;
    // Bars drawn one by one in bucket order: plotters' Histogram groups
    // through a hash map, which would make the SVG differ between runs.
    chart.draw_series(buckets.iter().enumerate().map(|(i, b)| {
        let i = i as u32;
        let mut bar = Rectangle::new(
            [
                (SegmentValue::Exact(i), 0),
                (SegmentValue::Exact(i + 1), b.count),
            ],
            RGBColor(46, 125, 50).filled(),
        );
        bar.set_margin(0, 0, 6, 6);
        bar
    }))?;
    root.present()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(hms: &str) -> i64 {
        chrono::DateTime::parse_from_rfc3339(&format!("2026-11-23T{hms}Z"))
            .map(|d| d.timestamp_millis())
            .unwrap_or_default()
    }

    #[test]
    fn ticks_fall_on_round_times_named_by_their_labels() {
        // 09:58:20 to 11:27:00: 89 minutes, so ten-minute ticks from 10:00.
        let ticks = time_ticks(at("09:58:20"), at("11:27:00"));
        let labels: Vec<String> = ticks
            .iter()
            .map(|t| time_label(*t, 10 * MINUTE, false))
            .collect();
        assert_eq!(
            labels,
            [
                "10:00", "10:10", "10:20", "10:30", "10:40", "10:50", "11:00", "11:10", "11:20"
            ]
        );
        assert!(ticks.iter().all(|t| t % (10 * MINUTE) == 0));
    }

    #[test]
    fn a_tick_on_the_first_minute_is_kept_and_long_spans_use_days() {
        assert_eq!(time_ticks(at("10:00:00"), at("10:05:00")).len(), 6);
        let week = time_ticks(at("00:00:00"), at("00:00:00") + 7 * DAY);
        assert_eq!(week.len(), 8);
        assert_eq!(time_label(week[1], DAY, true), "11-24");
    }
}
