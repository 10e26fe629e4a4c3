//! The loss plot a run leaves in its directory: training loss per step (and
//! its moving average) and validation loss, as an SVG.

use crate::io::write_atomic;
use anyhow::{anyhow, Result};
use plotters::prelude::*;
use std::path::Path;

/// A run's log: one JSON object per step.
pub const LOG_FILE: &str = "log.jsonl";
/// The loss plot drawn from it.
pub const PLOT_FILE: &str = "loss.svg";

/// Writes `path` (SVG): `train[i]` is the loss of step `i + 1`; `val` holds `(step, loss)`.
pub fn write_loss_plot(path: &Path, train: &[f32], val: &[(usize, f32)]) -> Result<()> {
    let mut svg = String::new();
    render(&mut svg, train, val).map_err(|e| anyhow!("drawing the loss plot: {e}"))?;
    write_atomic(path, svg.as_bytes())
}

/// Writes `dir/loss.svg` from the run's `dir/log.jsonl` (resumed runs included).
pub fn plot_log(dir: &Path) -> Result<()> {
    let text = std::fs::read_to_string(dir.join(LOG_FILE))?;
    let (mut train, mut val) = (Vec::new(), Vec::new());
    for line in text.lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if let Some(loss) = v["train_loss"].as_f64() {
            train.push(loss as f32);
        }
        if let (Some(step), Some(loss)) = (v["step"].as_u64(), v["val_loss"].as_f64()) {
            val.push((step as usize, loss as f32));
        }
    }
    write_loss_plot(&dir.join(PLOT_FILE), &train, &val)
}

/// Mean of each window of `w` steps ending at each step.
fn moving_average(xs: &[f32], w: usize) -> Vec<f32> {
    let mut sum = 0.0;
    xs.iter()
        .enumerate()
        .map(|(i, &x)| {
            sum += x;
            if i >= w {
                sum -= xs[i - w];
            }
            sum / (i + 1).min(w) as f32
        })
        .collect()
}

fn render(svg: &mut String, train: &[f32], val: &[(usize, f32)]) -> Result<(), Box<dyn std::error::Error>> {
    let root = SVGBackend::with_string(svg, (900, 540)).into_drawing_area();
    root.fill(&WHITE)?;
    let finite = train
        .iter()
        .chain(val.iter().map(|(_, v)| v))
        .copied()
        .filter(|x| x.is_finite());
    let (lo, hi) = finite.fold((f32::MAX, f32::MIN), |(lo, hi), x| (lo.min(x), hi.max(x)));
    let (lo, hi) = if lo <= hi { (lo, hi) } else { (0.0, 1.0) };
    let pad = ((hi - lo) * 0.05).max(1e-3);
    let steps = train.len().max(1) as f32;
    let mut chart = ChartBuilder::on(&root)
        .caption("loss (nats per token)", ("sans-serif", 22))
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(55)
        .build_cartesian_2d(0f32..steps, (lo - pad)..(hi + pad))?;
    chart
        .configure_mesh()
        .x_desc("step")
        .y_desc("loss")
        .x_label_formatter(&|x| format!("{x:.0}"))
        .draw()?;
    let step_of = |i: usize| (i + 1) as f32;
    chart.draw_series(LineSeries::new(
        train.iter().enumerate().map(|(i, &l)| (step_of(i), l)),
        RGBColor(170, 200, 235),
    ))?;
    let window = (train.len() / 50).max(1);
    chart
        .draw_series(LineSeries::new(
            moving_average(train, window)
                .into_iter()
                .enumerate()
                .map(|(i, l)| (step_of(i), l)),
            BLUE.stroke_width(2),
        ))?
        .label(format!("train (mean of {window} steps)"))
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLUE));
    if !val.is_empty() {
        chart
            .draw_series(LineSeries::new(
                val.iter().map(|&(s, l)| (s as f32, l)),
                RED.stroke_width(2),
            ))?
            .label("validation")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], RED));
    }
    chart
        .configure_series_labels()
        .border_style(BLACK)
        .background_style(WHITE)
        .draw()?;
    root.present()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn moving_average_of_a_ramp() {
        assert_eq!(moving_average(&[1.0, 2.0, 3.0, 4.0], 2), [1.0, 1.5, 2.5, 3.5]);
    }

    #[test]
    fn writes_an_svg_with_both_curves() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("loss.svg");
        let train: Vec<f32> = (0..200).map(|i| 3.0 - i as f32 / 100.0).collect();
        write_loss_plot(&path, &train, &[(100, 2.1), (200, 1.2)]).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        assert!(svg.starts_with("<svg") && svg.contains("validation") && svg.contains("train (mean of 4 steps)"));
        assert!(svg.matches("<polyline").count() >= 3, "three curves expected");
    }
}
