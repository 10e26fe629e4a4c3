//! `gpt eval`: mean loss per token and perplexity of a model over a text file,
//! and optionally the logits of every scored token (`--logits`, a `.npy`);
//! over the responses of instruction records only (`--task sft`); or, with
//! `--task choice`, accuracy on multiple-choice records ([`super::choice`]).

use super::out::{count, note};
use crate::autograd::Workspace;
use crate::data::batch::Batches;
use crate::data::dataset::Dataset;
use crate::data::docs::read_documents;
use crate::data::sft::{encode_file, fit};
use crate::data::windows::SlidingWindows;
use crate::io::{npy_header, write_atomic_with};
use crate::tokenizer::Tokenizer;
use crate::train::score;
use anyhow::{bail, ensure, Context, Result};
use clap::{Args, ValueEnum};
use indicatif::ProgressBar;
use std::io::{self, Write};
use std::path::PathBuf;

/// What `gpt eval` measures.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum Task {
    /// Language modelling: mean loss per token and perplexity of a text
    #[default]
    Lm,
    /// The responses of instruction records (as `gpt train --task sft` renders them)
    Sft,
    /// Multiple choice (HellaSwag style): accuracy of picking each record's
    /// right ending by its summed log-likelihood and by its mean per token
    Choice,
}

#[derive(Args, Debug)]
pub struct EvalArgs {
    /// Model: a directory or checkpoint file, or a name fetched with `gpt download` (gpt2, org/name)
    #[arg(long)]
    pub model: String,
    /// What to measure. lm: every next token of --data. sft: --data holds instruction records (as
    /// `gpt train --task sft` takes them: Alpaca-style {"instruction","input","output"} or chat
    /// {"messages":[…]}), rendered as training renders them (the model's chat template, else the
    /// Alpaca format); only the responses and the token that ends each are scored. choice:
    /// multiple-choice records, accuracy by each ending's summed and mean log-likelihood
    #[arg(long, value_enum, default_value_t = Task::Lm)]
    pub task: Task,
    /// Text file to score (character models: one document per line); for
    /// --task choice, JSON lines {"context": …, "endings": […], "label": k}
    /// (HellaSwag's `ctx`, `endings`, `label` too)
    #[arg(long)]
    pub data: PathBuf,
    /// Tokens between the starts of consecutive windows, for texts longer than
    /// the context: each token is scored once, with up to n_ctx - stride tokens
    /// of context before the window's scored part; at most n_ctx [default: n_ctx / 2]
    #[arg(long)]
    pub stride: Option<usize>,
    /// Print {"loss", "perplexity", "tokens"} as JSON (--task choice:
    /// {"accuracy", "accuracy_norm", "n", "predictions": [{"label", "pred",
    /// "pred_norm", "logprobs", "logprobs_norm", "tokens"}, …]})
    #[arg(long)]
    pub json: bool,
    /// Also write the logits of every scored token to FILE, a NumPy .npy of
    /// float32 [tokens, vocab_size] in scoring order: row i predicts the
    /// text's token i + 1 (counting from 0) from the ones before it; character
    /// models: each document's characters then its end, documents in order
    #[arg(long, value_name = "FILE")]
    pub logits: Option<PathBuf>,
    #[command(flatten)]
    pub load: super::generate::LoadArgs,
    #[command(flatten)]
    pub quiet: super::out::Quiet,
}

/// What to score: a character model's documents or a BPE model's token stream.
enum Scored {
    Docs(Dataset),
    Stream(Vec<u32>, usize),
}

impl Scored {
    fn batches(&self, n_ctx: usize, vocab: usize) -> Box<dyn Batches + '_> {
        match self {
            Scored::Docs(docs) => docs.eval_batches(n_ctx, vocab),
            Scored::Stream(ids, stride) => Box::new(SlidingWindows::new(ids, n_ctx, *stride)),
        }
    }
}

pub fn run(a: EvalArgs) -> Result<()> {
    a.quiet.apply();
    if a.task == Task::Choice {
        return super::choice::run(a);
    }
    if let Some(stride) = a.stride {
        super::check::flag(stride >= 1, "--stride", stride, "at least 1")?;
    }
    let crate::model::Loaded {
        model,
        tokenizer: tok,
        chat,
        ..
    } = crate::model::load(&a.model, &a.load.options())?;
    let n_ctx = model.config.n_ctx;
    let (scored, tokens) = match &tok {
        _ if a.task == Task::Sft => {
            ensure!(
                a.stride.is_none() && a.logits.is_none(),
                "--stride and --logits go with --task lm: --task sft scores each record from its start"
            );
            let (format, about) = super::train::sft_format(&chat, &tok)?;
            note!("{about}");
            let records = encode_file(&a.data, &tok, &format)?;
            let mut warnings = Vec::new();
            let docs = fit(&a.data, records, n_ctx, &mut warnings);
            warnings.iter().for_each(|w| note!("{w}"));
            // What is scored: response targets within the context.
            let tokens = docs
                .iter()
                .map(|(_, m)| m.iter().take(n_ctx + 1).skip(1).filter(|&&s| s).count())
                .sum();
            (Scored::Docs(Dataset::Masked(docs)), tokens)
        }
        Tokenizer::Char(chars) => {
            if let Some(stride) = a.stride {
                bail!(
                    "--stride {stride}: a character model scores each line of {} as a document of its own, \
                     from its start: there is no window to slide; leave --stride out",
                    a.data.display()
                );
            }
            // Documents, BOS targets included: the loss `gpt train` reports.
            let docs = read_documents(Some(&a.data))?;
            let ids = docs.iter().map(|d| chars.encode_doc(d)).collect::<Result<Vec<_>>>();
            let ids = ids.with_context(|| format!("{} does not fit the model's characters", a.data.display()))?;
            let cut = ids.iter().filter(|d| d.len() > n_ctx + 1).count();
            if cut > 0 {
                note!(
                    "note: {} longer than the model's context of {n_ctx}: scored on {} first {n_ctx} characters",
                    count(cut, "document is", "documents are"),
                    if cut == 1 { "its" } else { "their" }
                );
            }
            let tokens = ids.iter().map(|d| d.len().min(n_ctx + 1) - 1).sum();
            (Scored::Docs(Dataset::Docs(ids)), tokens)
        }
        Tokenizer::Bpe(_) => {
            let stride = a.stride.unwrap_or(n_ctx / 2).max(1);
            // A stride past the context would skip tokens.
            super::check::flag(
                stride <= n_ctx,
                "--stride",
                stride,
                &format!("at most the model's context, {n_ctx} (a longer one would skip tokens)"),
            )?;
            let bytes = std::fs::read(&a.data).with_context(|| format!("cannot read {}", a.data.display()))?;
            let text =
                String::from_utf8(bytes).with_context(|| format!("{} is not valid UTF-8 text", a.data.display()))?;
            let ids = tok.encode(&text)?;
            ensure!(
                ids.len() >= 2,
                "{} has fewer than 2 tokens: nothing to score",
                a.data.display()
            );
            let tokens = ids.len() - 1;
            (Scored::Stream(ids, stride), tokens)
        }
    };
    ensure!(tokens > 0, "no tokens to score in {}", a.data.display());
    let bar = if a.json {
        ProgressBar::hidden()
    } else {
        super::out::bar(tokens as u64)
    };
    let mut batches = scored.batches(n_ctx, model.config.vocab_size);
    let mut ws = Workspace::default();
    let mut progress = |n: usize| bar.inc(n as u64);
    let (sum, n_scored) = match &a.logits {
        None => score(&model, &mut *batches, &mut ws, &mut progress, None)?,
        Some(path) => {
            let mut result = (0.0, 0);
            write_atomic_with(path, |w| {
                w.write_all(&npy_header(&[tokens, model.config.vocab_size]))?;
                let mut bytes = Vec::new();
                let mut write_row = |row: &[f32]| {
                    bytes.clear();
                    bytes.extend(row.iter().flat_map(|x| x.to_le_bytes()));
                    w.write_all(&bytes)
                };
                result = score(&model, &mut *batches, &mut ws, &mut progress, Some(&mut write_row))?;
                // The header promised `tokens` rows.
                if result.1 != tokens {
                    return Err(io::Error::other(format!(
                        "scored {} tokens, expected {tokens}",
                        result.1
                    )));
                }
                Ok(())
            })?;
            result
        }
    };
    bar.finish_and_clear();
    let loss = sum / n_scored as f64;
    let perplexity = loss.exp();
    let mut out = super::out::stdout();
    if a.json {
        let line = serde_json::json!({ "loss": loss, "perplexity": perplexity, "tokens": n_scored });
        writeln!(out, "{line}")?;
    } else {
        writeln!(
            out,
            "loss {loss:.4} nats/token | perplexity {perplexity:.3} | {}",
            count(n_scored, "token", "tokens")
        )?;
    }
    Ok(())
}
