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
        .build_cartesian_2d(x0..x1, 0u64..y1)?;
    let span = x1 - x0;
    chart
        .configure_mesh()
        .x_desc("time (UTC)")
        .y_desc("active users")
        .x_labels(8)
        .x_label_formatter(&|t| {
            chrono::DateTime::from_timestamp_millis(*t).map_or_else(String::new, |d| {
                if span > 2 * 86_400_000 {
                    d.format("%m-%d %H:%M").to_string()
                } else {
                    d.format("%H:%M").to_string()
                }
            })
        })
        .draw()?;
    chart.draw_series(
        AreaSeries::new(points.iter().copied(), 0, RGBColor(46, 125, 50).mix(0.25))
            .border_style(RGBColor(46, 125, 50)),
    )?;
    root.present()?;
    Ok(())
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
            format!("Peak hours: user-minutes by weekday and hour, UTC (darkest {max})"),
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
        let level = c.user_minutes as f64 / max as f64;
        let shade = (255.0 - 200.0 * level) as u8;
        Rectangle::new(
            [
                (SegmentValue::Exact(hour), SegmentValue::Exact(row)),
                (SegmentValue::Exact(hour + 1), SegmentValue::Exact(row + 1)),
            ],
            RGBColor(shade, 255 - (55.0 * level) as u8, shade).filled(),
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
