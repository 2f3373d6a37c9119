//! Latency distributions as an SVG chart (cumulative, log-scaled latency), floor beside cvbot.

use std::path::Path;

use plotters::prelude::*;

/// Draws each named series of sorted microsecond values as a cumulative distribution.
pub fn latency_cdf(path: &Path, series: &[(String, Vec<f64>)]) -> anyhow::Result<()> {
    let series: Vec<&(String, Vec<f64>)> = series.iter().filter(|(_, v)| !v.is_empty()).collect();
    let max = series.iter().filter_map(|(_, v)| v.last().copied()).fold(10.0_f64, f64::max);
    let min = series.iter().filter_map(|(_, v)| v.first().copied()).fold(max, f64::min).max(1.0);
    let root = SVGBackend::new(path, (1000, 600)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut chart = ChartBuilder::on(&root)
        .caption("cvbot latency vs floor (cumulative)", ("sans-serif", 24))
        .margin(20)
        .x_label_area_size(40)
        .y_label_area_size(50)
        .build_cartesian_2d((min * 0.8..max * 1.2).log_scale(), 0.0..100.0)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    chart
        .configure_mesh()
        .x_desc("latency (µs, log scale)")
        .y_desc("percent of events at or below")
        .draw()
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let colours = [RED, BLUE, GREEN, MAGENTA, CYAN, BLACK];
    for (i, (name, values)) in series.iter().enumerate() {
        let colour = colours[i % colours.len()];
        let n = values.len() as f64;
        let points = values.iter().enumerate().map(|(k, v)| (*v, (k as f64 + 1.0) / n * 100.0));
        chart
            .draw_series(LineSeries::new(points, colour.stroke_width(2)))
            .map_err(|e| anyhow::anyhow!("{e}"))?
            .label(name.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], colour.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    root.present().map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(())
}
