//! `gpt eval`: mean loss per token and perplexity of a model over a text file.

use crate::autograd::{Graph, Workspace};
use crate::data::dataset::Dataset;
use crate::data::docs::read_documents;
use crate::model::Gpt;
use crate::tensor::cross_entropy::IGNORE;
use crate::tokenizer::Tokenizer;
use crate::train::evaluate;
use anyhow::{ensure, Context, Result};
use clap::Args;
use indicatif::ProgressBar;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct EvalArgs {
    /// Model: a directory or checkpoint file, or a name fetched with `gpt download` (gpt2, org/name)
    #[arg(long)]
    pub model: String,
    /// Text file to score (character models: one document per line)
    #[arg(long)]
    pub data: PathBuf,
    /// Tokens between the starts of consecutive windows, for texts longer than
    /// the context: each token is scored once, with up to n_ctx - stride tokens
    /// of context before the window's scored part [default: n_ctx / 2]
    #[arg(long)]
    pub stride: Option<usize>,
    /// Print {"loss", "perplexity", "tokens"} as JSON
    #[arg(long)]
    pub json: bool,
    /// How to hold the weights in memory
    #[arg(long, value_enum, default_value = "f32")]
    pub dtype: super::generate::Dtype,
}

/// `(sum of -log p, number of targets)` over the stream `ids` in sliding windows.
pub fn sliding_window_loss(model: &Gpt, ids: &[u32], stride: usize, progress: &ProgressBar) -> (f64, usize) {
    let n_ctx = model.config.n_ctx;
    let pairs = ids.len().saturating_sub(1); // input ids[j] predicts ids[j + 1]
    let (mut sum, mut count, mut scored, mut begin) = (0.0f64, 0usize, 0usize, 0usize);
    let mut ws = Workspace::default();
    progress.set_length(pairs as u64);
    while scored < pairs {
        let end = (begin + n_ctx).min(pairs);
        let targets: Vec<u32> = (begin..end)
            .map(|j| if j >= scored { ids[j + 1] } else { IGNORE })
            .collect();
        let pos: Vec<u32> = (0..(end - begin) as u32).collect();
        let mut g = Graph::inference(&model.params, ws);
        let logits = model.forward(&mut g, &ids[begin..end], &pos, 1, None);
        let loss = g.cross_entropy(logits, &targets);
        let n = end - scored;
        sum += g.value(loss)[0] as f64 * n as f64;
        count += n;
        ws = g.finish();
        progress.inc(n as u64);
        scored = end;
        begin += stride;
    }
    (sum, count)
}

pub fn run(a: EvalArgs) -> Result<()> {
    let (model, tok) = super::generate::load_model(&a.model, a.dtype)?;
    let (loss, tokens) = match &tok {
        Tokenizer::Char(chars) => {
            // Documents, BOS targets included: the loss `gpt train` reports.
            let docs = read_documents(Some(&a.data))?;
            let ids = docs.iter().map(|d| chars.encode_doc(d)).collect::<Result<Vec<_>>>()?;
            let tokens = ids.iter().map(|d| d.len().min(model.config.n_ctx + 1) - 1).sum();
            let loss =
                evaluate(&model, &Dataset::Docs(ids), &mut Workspace::default()).context("no tokens to score")?;
            (loss as f64, tokens)
        }
        Tokenizer::Bpe(_) => {
            let bytes = std::fs::read(&a.data).with_context(|| format!("cannot read {}", a.data.display()))?;
            let text =
                String::from_utf8(bytes).with_context(|| format!("{} is not valid UTF-8 text", a.data.display()))?;
            let ids = tok.encode(&text)?;
            ensure!(
                ids.len() >= 2,
                "{} has fewer than 2 tokens: nothing to score",
                a.data.display()
            );
            let stride = a.stride.unwrap_or(model.config.n_ctx / 2).clamp(1, model.config.n_ctx);
            let bar = if a.json {
                ProgressBar::hidden()
            } else {
                ProgressBar::new(0)
            };
            let (sum, count) = sliding_window_loss(&model, &ids, stride, &bar);
            bar.finish_and_clear();
            (sum / count as f64, count)
        }
    };
    let perplexity = loss.exp();
    if a.json {
        println!(
            "{}",
            serde_json::json!({ "loss": loss, "perplexity": perplexity, "tokens": tokens })
        );
    } else {
        println!("loss {loss:.4} nats/token | perplexity {perplexity:.3} | {tokens} tokens");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{GptConfig, Init};
    use crate::tensor::rng;

    #[test]
    fn windows_score_every_token_once_and_match_one_pass_when_it_fits() {
        let model = Gpt::new(GptConfig::gpt2(20, 8, 8, 2, 1), Init::Normal(0.3), &mut rng(2));
        let ids: Vec<u32> = (0..30).map(|i| (i * 7 % 20) as u32).collect();
        let bar = ProgressBar::hidden();
        // Stride = n_ctx: disjoint windows; every target scored exactly once.
        let (_, count) = sliding_window_loss(&model, &ids, 8, &bar);
        assert_eq!(count, 29);
        let (_, count) = sliding_window_loss(&model, &ids, 3, &bar);
        assert_eq!(count, 29);
        // A text that fits one window: the same as a single forward.
        let short = &ids[..8];
        let (sum, count) = sliding_window_loss(&model, short, 4, &bar);
        let mut g = Graph::inference(&model.params, Workspace::default());
        let pos: Vec<u32> = (0..7).collect();
        let logits = model.forward(&mut g, &short[..7], &pos, 1, None);
        let loss = g.cross_entropy(logits, &short[1..]);
        assert_eq!(count, 7);
        assert!(((sum / 7.0) as f32 - g.value(loss)[0]).abs() < 1e-6);
    }
}
