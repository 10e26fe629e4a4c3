//! The training loop: batches in, AdamW steps out, with periodic validation,
//! a progress bar and one JSON line per step.

use super::optim::{clip_grad_norm, AdamW, AdamWConfig};
use super::schedule::Schedule;
use crate::autograd::{Graph, Workspace};
use crate::data::dataset::Dataset;
use crate::model::Gpt;
use crate::tensor::rng;
use anyhow::{bail, Result};
use indicatif::{ProgressBar, ProgressStyle};
use std::io::Write;
use std::time::Instant;

#[derive(Clone, Debug, PartialEq)]
pub struct TrainOptions {
    pub steps: usize,
    /// Rows per batch, each of up to `n_ctx` tokens.
    pub batch_size: usize,
    /// Several documents per row (no padding waste) instead of one.
    pub pack: bool,
    pub schedule: Schedule,
    pub adamw: AdamWConfig,
    pub grad_clip: Option<f32>,
    /// Dropout probability on the embeddings and each residual branch (0 = off).
    pub dropout: f32,
    /// Validate every this many steps (and always at the end); 0 = only at the end.
    pub eval_every: usize,
    pub seed: u64,
    pub progress: bool,
}

/// What a run did.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TrainReport {
    /// Training loss of every step (on its own batch).
    pub losses: Vec<f32>,
    /// `(step, val_loss)` at each validation.
    pub val_losses: Vec<(usize, f32)>,
    /// Final loss on (up to as many documents as the validation set of) the training set.
    pub train_loss: Option<f32>,
    pub val_loss: Option<f32>,
    pub seconds: f64,
    pub tokens: usize,
}

/// Mean per-token loss (nats) of `model` over `data` (for documents, BOS targets included).
pub fn evaluate(model: &Gpt, data: &Dataset, ws: &mut Workspace) -> Option<f32> {
    let mut batches = data.eval_batches(model.config.n_ctx);
    let (mut sum, mut count) = (0.0f64, 0usize);
    while let Some(b) = batches.next_batch() {
        let mut g = Graph::inference(&model.params, std::mem::take(ws));
        let logits = model.forward(&mut g, &b.tokens, &b.pos, b.b, None);
        let loss = g.cross_entropy(logits, &b.targets);
        let n = b.n_targets();
        sum += g.value(loss)[0] as f64 * n as f64;
        count += n;
        *ws = g.finish();
    }
    (count > 0).then(|| (sum / count as f64) as f32)
}

/// Trains `model` in place. `log` receives one JSON object per step.
pub fn train(
    model: &mut Gpt,
    train_data: &Dataset,
    val_data: &Dataset,
    opts: &TrainOptions,
    log: &mut dyn Write,
) -> Result<TrainReport> {
    if train_data.is_empty() {
        bail!("no training data: nothing to predict");
    }
    let mut batches = train_data.training_batches(opts.batch_size, model.config.n_ctx, opts.pack, opts.seed);
    let mut opt = AdamW::new(opts.adamw, &model.params);
    let mut grads = model.params.zero_grads();
    let mut ws = Workspace::default();
    let mut report = TrainReport::default();

    let bar = if opts.progress {
        ProgressBar::new(opts.steps as u64)
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} {msg} (eta {eta})")
            .expect("valid template"),
    );
    let start = Instant::now();
    for step in 0..opts.steps {
        let batch = batches.next_batch().expect("training batches never end");
        let mut g = Graph::new(&model.params, ws);
        // One mask stream per step, so a run can be replayed or resumed exactly.
        g.enable_dropout(
            opts.dropout,
            rng(opts.seed ^ (step as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15)),
        );
        let logits = model.forward(&mut g, &batch.tokens, &batch.pos, batch.b, None);
        let loss_var = g.cross_entropy(logits, &batch.targets);
        let loss = g.value(loss_var)[0];
        if !loss.is_finite() {
            bar.abandon();
            bail!(
                "the loss became {loss} at step {step}: training diverged. Lower --lr (now {}) or clip gradients (--grad-clip); nothing was saved from this run",
                opts.schedule.lr
            );
        }
        grads.zero();
        g.backward(loss_var, &mut grads);
        ws = g.finish();
        if let Some(max) = opts.grad_clip {
            clip_grad_norm(&mut grads, max);
        }
        let lr = opts.schedule.lr_at(step);
        opt.step(&mut model.params, &grads, lr);
        report.losses.push(loss);
        report.tokens += batch.n_targets();

        let last = step + 1 == opts.steps;
        let val = if !val_data.is_empty() && (last || (opts.eval_every > 0 && (step + 1) % opts.eval_every == 0)) {
            let v = evaluate(model, val_data, &mut ws);
            if let Some(v) = v {
                report.val_losses.push((step + 1, v));
            }
            v
        } else {
            None
        };
        let mut line = serde_json::json!({ "step": step + 1, "train_loss": loss, "lr": lr });
        if let Some(v) = val {
            line["val_loss"] = v.into();
        }
        writeln!(log, "{line}")?;

        let tok_s = report.tokens as f64 / start.elapsed().as_secs_f64();
        let val_msg = report
            .val_losses
            .last()
            .map(|(_, v)| format!(" val {v:.4}"))
            .unwrap_or_default();
        bar.set_message(format!("loss {loss:.4}{val_msg} | {tok_s:.0} tok/s"));
        bar.inc(1);
    }
    report.seconds = start.elapsed().as_secs_f64();
    bar.finish();
    log.flush()?;
    report.val_loss = report.val_losses.last().map(|&(_, v)| v);
    report.train_loss = evaluate(model, &train_data.prefix_like(val_data), &mut ws);
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{GptConfig, Init};
    use crate::train::schedule::Decay;

    #[test]
    fn tiny_model_learns_a_tiny_corpus() {
        // BOS = 5. In "x 2 x" the letter after 2 repeats the first one, so it
        // can only be predicted by attending back. Best possible: ln 3 for the
        // first letter over 4 targets ≈ 0.27 per token; without working
        // attention gradients the repeat costs ln 3 too (≈ 0.55); a unigram
        // model scores ≈ 1.6.
        let docs: Vec<Vec<u32>> = vec![vec![5, 0, 2, 0, 5], vec![5, 1, 2, 1, 5], vec![5, 3, 2, 3, 5]];
        let mut model = Gpt::new(GptConfig::gpt2(6, 8, 16, 2, 1), Init::Gpt2, &mut rng(0));
        let opts = TrainOptions {
            steps: 300,
            batch_size: 3,
            pack: true,
            schedule: Schedule {
                lr: 1e-2,
                min_lr: 1e-3,
                warmup: 10,
                steps: 300,
                decay: Decay::Cosine,
            },
            adamw: AdamWConfig {
                beta1: 0.9,
                beta2: 0.99,
                eps: 1e-8,
                weight_decay: 0.0,
            },
            grad_clip: Some(1.0),
            dropout: 0.0,
            eval_every: 50,
            seed: 1,
            progress: false,
        };
        let mut log = Vec::new();
        let data = Dataset::Docs(docs);
        let report = train(&mut model, &data, &data, &opts, &mut log).unwrap();
        let val = report.val_loss.unwrap();
        assert!(val < 0.4, "val loss {val}");
        assert_eq!(report.val_losses.len(), 6);
        let lines: Vec<serde_json::Value> = String::from_utf8(log)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 300);
        assert!(lines[49]["val_loss"].is_number() && lines[48].get("val_loss").is_none());
        assert!(lines[0]["lr"].as_f64().unwrap() > 0.0);
    }

    #[test]
    fn divergence_is_an_error_not_a_nan_model() {
        let docs: Vec<Vec<u32>> = vec![vec![2, 0, 1, 2]];
        let mut model = Gpt::new(GptConfig::gpt2(3, 4, 8, 2, 1), Init::Gpt2, &mut rng(0));
        model.params.tensors[0].data[0] = f32::NAN;
        let opts = TrainOptions {
            steps: 3,
            batch_size: 1,
            pack: false,
            schedule: Schedule {
                lr: 1e-3,
                min_lr: 0.0,
                warmup: 0,
                steps: 3,
                decay: Decay::Constant,
            },
            adamw: AdamWConfig {
                beta1: 0.9,
                beta2: 0.99,
                eps: 1e-8,
                weight_decay: 0.0,
            },
            grad_clip: None,
            dropout: 0.0,
            eval_every: 0,
            seed: 1,
            progress: false,
        };
        let err = train(
            &mut model,
            &Dataset::Docs(docs),
            &Dataset::Docs(vec![]),
            &opts,
            &mut Vec::new(),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("diverged"), "{err}");
    }
}
