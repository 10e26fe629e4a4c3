//! `gpt eval`: mean loss per token and perplexity of a model over a text file,
//! and optionally the logits of every scored token (`--logits`, a `.npy`).

use crate::autograd::{Graph, Workspace};
use crate::data::batch::{Batch, Batches};
use crate::data::dataset::Dataset;
use crate::data::docs::read_documents;
use crate::model::Gpt;
use crate::tensor::cross_entropy::IGNORE;
use crate::tokenizer::Tokenizer;
use crate::train::checkpoint::write_atomic_with;
use anyhow::{ensure, Context, Result};
use clap::Args;
use indicatif::ProgressBar;
use std::io;
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
    /// Also write the logits of every scored token to FILE, a NumPy .npy of
    /// float32 [tokens, vocab_size] in scoring order: row i predicts the
    /// text's token i + 1 (counting from 0) from the ones before it; character
    /// models: each document's characters then its end, documents in order
    #[arg(long, value_name = "FILE")]
    pub logits: Option<PathBuf>,
    /// How to hold the weights in memory
    #[arg(long, value_enum, default_value = "f32")]
    pub dtype: super::generate::Dtype,
}

/// Receives the logits row of each scored token, in scoring order.
pub type OnLogits<'a> = &'a mut dyn FnMut(&[f32]) -> io::Result<()>;

/// Sliding windows over a token stream, one window (a batch of one row) at a
/// time: input `ids[j]` predicts `ids[j + 1]`; windows of up to `n_ctx`
/// inputs start `stride` apart, and each target is scored once, in the first
/// window that holds it (the rest of the window is context).
pub struct SlidingWindows<'a> {
    ids: &'a [u32],
    n_ctx: usize,
    stride: usize,
    begin: usize,
    scored: usize,
}

impl<'a> SlidingWindows<'a> {
    pub fn new(ids: &'a [u32], n_ctx: usize, stride: usize) -> Self {
        assert!(n_ctx > 0 && stride > 0);
        SlidingWindows {
            ids,
            n_ctx,
            stride,
            begin: 0,
            scored: 0,
        }
    }
}

impl Batches for SlidingWindows<'_> {
    fn next_batch(&mut self) -> Option<Batch> {
        let pairs = self.ids.len().saturating_sub(1);
        if self.scored >= pairs {
            return None;
        }
        let (begin, end) = (self.begin, (self.begin + self.n_ctx).min(pairs));
        let targets = (begin..end)
            .map(|j| if j >= self.scored { self.ids[j + 1] } else { IGNORE })
            .collect();
        self.scored = end;
        self.begin += self.stride;
        Some(Batch {
            tokens: self.ids[begin..end].to_vec(),
            targets,
            pos: (0..(end - begin) as u32).collect(),
            b: 1,
            t: end - begin,
        })
    }
}

/// `(sum of -log p, number of targets)` of `model` over `batches`; `on_logits`
/// gets the logits row of every scored token, in order.
pub fn score(
    model: &Gpt,
    batches: &mut dyn Batches,
    progress: &ProgressBar,
    mut on_logits: Option<OnLogits>,
) -> io::Result<(f64, usize)> {
    let v = model.config.vocab_size;
    let (mut sum, mut count) = (0.0f64, 0usize);
    let mut ws = Workspace::default();
    while let Some(b) = batches.next_batch() {
        let mut g = Graph::inference(&model.params, ws);
        let logits = model.forward(&mut g, &b.tokens, &b.pos, b.b, None);
        if let Some(f) = on_logits.as_mut() {
            let rows = g.value(logits).chunks_exact(v).zip(&b.targets);
            for (row, _) in rows.filter(|(_, &t)| t != IGNORE) {
                f(row)?;
            }
        }
        let loss = g.cross_entropy(logits, &b.targets);
        let n = b.n_targets();
        sum += g.value(loss)[0] as f64 * n as f64;
        count += n;
        ws = g.finish();
        progress.inc(n as u64);
    }
    Ok((sum, count))
}

/// The header of a NumPy `.npy` file (format 1.0) holding little-endian f32 of `shape`, C order.
pub fn npy_header(shape: &[usize]) -> Vec<u8> {
    let mut dims = shape.iter().map(usize::to_string).collect::<Vec<_>>().join(", ");
    if shape.len() == 1 {
        dims.push(','); // a Python 1-tuple
    }
    let mut dict = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({dims}), }}");
    // Magic (6) + version (2) + length (2) + dict + '\n', padded to a multiple of 64.
    let pad = (64 - (10 + dict.len() + 1) % 64) % 64;
    dict.extend(std::iter::repeat_n(' ', pad));
    dict.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend((dict.len() as u16).to_le_bytes());
    out.extend(dict.as_bytes());
    out
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
    let (model, tok) = super::generate::load_model(&a.model, a.dtype)?;
    let n_ctx = model.config.n_ctx;
    let (scored, tokens) = match &tok {
        Tokenizer::Char(chars) => {
            // Documents, BOS targets included: the loss `gpt train` reports.
            let docs = read_documents(Some(&a.data))?;
            let ids = docs.iter().map(|d| chars.encode_doc(d)).collect::<Result<Vec<_>>>()?;
            let tokens = ids.iter().map(|d| d.len().min(n_ctx + 1) - 1).sum();
            (Scored::Docs(Dataset::Docs(ids)), tokens)
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
            let stride = a.stride.unwrap_or(n_ctx / 2).clamp(1, n_ctx);
            let tokens = ids.len() - 1;
            (Scored::Stream(ids, stride), tokens)
        }
    };
    ensure!(tokens > 0, "no tokens to score in {}", a.data.display());
    let bar = if a.json {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(tokens as u64)
    };
    let mut batches = scored.batches(n_ctx, model.config.vocab_size);
    let (sum, count) = match &a.logits {
        None => score(&model, &mut *batches, &bar, None)?,
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
                result = score(&model, &mut *batches, &bar, Some(&mut write_row))?;
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
    let loss = sum / count as f64;
    let perplexity = loss.exp();
    if a.json {
        println!(
            "{}",
            serde_json::json!({ "loss": loss, "perplexity": perplexity, "tokens": count })
        );
    } else {
        println!("loss {loss:.4} nats/token | perplexity {perplexity:.3} | {count} tokens");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{GptConfig, Init};
    use crate::tensor::rng;

    fn sliding_window_loss(model: &Gpt, ids: &[u32], stride: usize) -> (f64, usize) {
        let mut windows = SlidingWindows::new(ids, model.config.n_ctx, stride);
        score(model, &mut windows, &ProgressBar::hidden(), None).unwrap()
    }

    #[test]
    fn windows_score_every_token_once_and_match_one_pass_when_it_fits() {
        let model = Gpt::new(GptConfig::gpt2(20, 8, 8, 2, 1), Init::Normal(0.3), &mut rng(2));
        let ids: Vec<u32> = (0..30).map(|i| (i * 7 % 20) as u32).collect();
        // Stride = n_ctx: disjoint windows; every target scored exactly once.
        let (_, count) = sliding_window_loss(&model, &ids, 8);
        assert_eq!(count, 29);
        let (_, count) = sliding_window_loss(&model, &ids, 3);
        assert_eq!(count, 29);
        // A text that fits one window: the same as a single forward.
        let short = &ids[..8];
        let (sum, count) = sliding_window_loss(&model, short, 4);
        let mut g = Graph::inference(&model.params, Workspace::default());
        let pos: Vec<u32> = (0..7).collect();
        let logits = model.forward(&mut g, &short[..7], &pos, 1, None);
        let loss = g.cross_entropy(logits, &short[1..]);
        assert_eq!(count, 7);
        assert!(((sum / 7.0) as f32 - g.value(loss)[0]).abs() < 1e-6);
    }

    #[test]
    fn documents_score_as_training_evaluates_them() {
        let model = Gpt::new(GptConfig::gpt2(6, 4, 8, 2, 1), Init::Normal(0.3), &mut rng(3));
        let docs = Dataset::Docs(vec![vec![5, 0, 1, 5], vec![5, 2, 3, 4, 0, 1, 5], vec![5, 5]]);
        let want = crate::train::evaluate(&model, &docs, model.config.n_ctx, &mut Workspace::default()).unwrap();
        let (sum, count) = score(
            &model,
            &mut *docs.eval_batches(4, 1 << 20),
            &ProgressBar::hidden(),
            None,
        )
        .unwrap();
        assert_eq!(count, 3 + 4 + 1);
        assert!(((sum / count as f64) as f32 - want).abs() < 1e-6);
    }

    #[test]
    fn npy_header_is_numpy_format_1_0() {
        let h = npy_header(&[3, 50257]);
        assert_eq!(h.len() % 64, 0);
        assert_eq!(&h[..8], b"\x93NUMPY\x01\x00");
        assert_eq!(u16::from_le_bytes([h[8], h[9]]) as usize, h.len() - 10);
        let dict = std::str::from_utf8(&h[10..]).unwrap();
        assert!(dict.starts_with("{'descr': '<f4', 'fortran_order': False, 'shape': (3, 50257), }"));
        assert!(dict.ends_with('\n'));
        let one = npy_header(&[7]);
        assert!(std::str::from_utf8(&one[10..]).unwrap().contains("'shape': (7,)"));
    }
}
