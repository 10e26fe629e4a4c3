//! What a run says when it starts (the model, the data, every setting) and
//! when it ends (what it did, where it is saved, how to go on).

use super::super::out::{count as count_of, short};
use super::data::Prepared;
use super::Settings;
use crate::model::Gpt;
use crate::tensor::linear::Precision;
use crate::tensor::matmul_bf16::has_bf16_kernel;
use crate::train::plot::PLOT_FILE;
use crate::train::progress::count;
use crate::train::TrainReport;
use anyhow::Result;
use std::path::Path;

/// Units of parameter counts.
const UNITS: &[&str] = &["", "k", "M", "B"];

/// The notes on the data, the model and data in a line, every setting, and
/// warnings for a warmup that outlasts the run and bf16 without a bf16 kernel.
pub fn start(model: &Gpt, data: &Prepared, s: &Settings) -> Result<()> {
    let c = &model.config;
    data.notes.iter().for_each(|n| eprintln!("{n}"));
    eprintln!(
        "training {} parameters ({}, {} wide, {}, n_ctx {}) on {}, {} of {} x {}",
        model.params.count(),
        count_of(c.n_layer, "layer", "layers"),
        c.n_embd,
        count_of(c.n_head, "head", "heads"),
        s.n_ctx.unwrap_or(c.n_ctx),
        data.what,
        count_of(s.steps, "step", "steps"),
        s.grad_accum,
        count_of(s.batch_size, "row", "rows")
    );
    let (trainable, all) = (model.params.trainable_count(), model.params.count());
    eprintln!(
        "trainable {} of {} ({:.2}%)",
        short(trainable as f64, UNITS),
        short(all as f64, UNITS),
        100.0 * trainable as f64 / all.max(1) as f64
    );
    eprintln!("settings: {}", settings_line(s)?);
    if s.precision == Precision::Bf16 && !has_bf16_kernel() {
        eprintln!(
            "warning: this CPU has neither AMX nor AVX512-BF16: --precision bf16 rounds as it would there, but runs slower than f32"
        );
    }
    if s.warmup >= s.steps {
        eprintln!(
            "warning: --warmup {} is not below --steps {}: the learning rate never reaches --lr {}",
            s.warmup, s.steps, s.lr
        );
    }
    Ok(())
}

/// Every setting of a run as `name value` pairs, defaults resolved.
fn settings_line(s: &Settings) -> Result<String> {
    let resolved = Settings {
        min_lr: Some(s.min_lr.unwrap_or(s.lr / 10.0)),
        ..s.clone()
    };
    // Through text, so that an f32 prints as written (0.1, not 0.10000000149011612).
    let value: serde_json::Value = serde_json::from_str(&serde_json::to_string(&resolved)?)?;
    let pairs = value.as_object().expect("settings are an object").iter();
    let shown = pairs.map(|(k, v)| match v {
        serde_json::Value::Null => format!("{k} none"),
        serde_json::Value::String(text) => format!("{k} {text}"),
        v => format!("{k} {v}"),
    });
    Ok(shown.collect::<Vec<_>>().join(", "))
}

/// Prints the summary of a run that reached step `step` of `steps` in `out`;
/// `quiet`: only its first line (and how to continue an unfinished run).
/// Written through [`crate::cli::out`]: a closed pipe is an error the command ends on quietly.
pub fn end(report: &TrainReport, step: usize, steps: usize, out: &Path, quiet: bool) -> std::io::Result<()> {
    use std::io::Write;
    let mut stdout = super::super::out::stdout();
    let loss = |l: Option<f32>| l.map_or("n/a".to_string(), |l| format!("{l:.4}"));
    let start = report
        .start_val_loss
        .map(|v| format!(" (at step 0: {v:.4})"))
        .unwrap_or_default();
    let n = report.losses.len();
    let verb = if report.interrupted { "stopped" } else { "done" };
    writeln!(
        stdout,
        "{verb}: {} in {:.1}s ({:.1} ms/step, {} tok/s) | train loss {} | val loss {}{start}",
        count_of(n, "step", "steps"),
        report.seconds,
        1e3 * report.seconds / n.max(1) as f64,
        count(report.tokens as f64 / report.seconds.max(1e-9)),
        loss(report.train_loss),
        loss(report.val_loss)
    )?;
    if let Some(a) = report.val_accuracy {
        writeln!(stdout, "val accuracy {:.2}%", 100.0 * a)?;
    }
    if !quiet {
        writeln!(
            stdout,
            "saved step {step} of {steps} to {} (loss plot: {})",
            out.display(),
            out.join(PLOT_FILE).display()
        )?;
    }
    if step < steps {
        writeln!(stdout, "continue with: gpt train --resume {}", out.display())?;
    }
    Ok(())
}
