//! The lines a run ends with: what it did, where it is saved, how to go on.

use crate::train::plot::PLOT_FILE;
use crate::train::progress::count;
use crate::train::TrainReport;
use std::path::Path;

/// Prints the summary of a run that reached step `step` of `steps` in `out`;
/// `quiet`: only its first line (and how to continue an unfinished run).
pub fn print(report: &TrainReport, step: usize, steps: usize, out: &Path, quiet: bool) {
    let loss = |l: Option<f32>| l.map_or("n/a".to_string(), |l| format!("{l:.4}"));
    let start = report
        .start_val_loss
        .map(|v| format!(" (at step 0: {v:.4})"))
        .unwrap_or_default();
    let n = report.losses.len();
    let verb = if report.interrupted { "stopped" } else { "done" };
    println!(
        "{verb}: {n} step{} in {:.1}s ({:.1} ms/step, {} tok/s) | train loss {} | val loss {}{start}",
        if n == 1 { "" } else { "s" },
        report.seconds,
        1e3 * report.seconds / n.max(1) as f64,
        count(report.tokens as f64 / report.seconds.max(1e-9)),
        loss(report.train_loss),
        loss(report.val_loss)
    );
    if !quiet {
        println!(
            "saved step {step} of {steps} to {} (loss plot: {})",
            out.display(),
            out.join(PLOT_FILE).display()
        );
    }
    if step < steps {
        println!("continue with: gpt train --resume {}", out.display());
    }
}
