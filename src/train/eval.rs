//! Scoring a model on data: the one loop behind validation during training
//! and `gpt eval`.

use crate::autograd::{Graph, Workspace};
use crate::data::batch::{Batch, Batches};
use crate::data::dataset::Dataset;
use crate::model::Gpt;
use crate::tensor::cross_entropy::IGNORE;
use std::io;

/// Receives the logits row of each scored token, in scoring order.
pub type OnLogits<'a> = &'a mut dyn FnMut(&[f32]) -> io::Result<()>;

/// `(sum of -log p, number of targets)` of `model` over `batches`.
/// `on_batch` hears how many targets each batch scored (for progress);
/// `on_logits` gets the logits row of every scored token, in order.
pub fn score(
    model: &Gpt,
    batches: &mut dyn Batches,
    ws: &mut Workspace,
    on_batch: &mut dyn FnMut(usize),
    on_logits: Option<OnLogits>,
) -> io::Result<(f64, usize)> {
    let s = score_batches(model, batches, ws, on_batch, on_logits)?;
    Ok((s.sum, s.count))
}

/// What scoring found.
#[derive(Clone, Copy, Debug, Default)]
struct Scored {
    sum: f64,
    count: usize,
    /// Targets whose logit is the largest (a classifier's right answers).
    correct: usize,
}

fn score_batches(
    model: &Gpt,
    batches: &mut dyn Batches,
    ws: &mut Workspace,
    on_batch: &mut dyn FnMut(usize),
    mut on_logits: Option<OnLogits>,
) -> io::Result<Scored> {
    let v = model.config.n_logits();
    let mut s = Scored::default();
    while let Some(b) = batches.next_batch() {
        let mut g = Graph::inference(&model.params, std::mem::take(ws));
        let (logits, targets) = if model.config.is_classifier() {
            // Each text's last token, and its label.
            let scored = b.targets.iter().enumerate().filter(|(_, &t)| t != IGNORE);
            let (rows, labels): (Vec<usize>, Vec<u32>) = scored.map(|(i, &t)| (i, t)).unzip();
            (model.classify(&mut g, &b.tokens, &b.pos, b.b, &rows), labels) // [n, labels]
        } else {
            (model.forward(&mut g, &b.tokens, &b.pos, b.b, None), b.targets.clone())
            // [B·T, vocab]
        };
        let rows = g.value(logits).chunks_exact(v).zip(&targets);
        for (row, &t) in rows.filter(|(_, &t)| t != IGNORE) {
            if model.config.is_classifier() {
                let best = row
                    .iter()
                    .enumerate()
                    .fold(0, |k, (i, &x)| if x > row[k] { i } else { k });
                s.correct += usize::from(best == t as usize);
            }
            if let Some(f) = on_logits.as_mut() {
                if let Err(e) = f(row) {
                    *ws = g.finish();
                    return Err(e);
                }
            }
        }
        let loss = g.cross_entropy(logits, &targets);
        let n = Batch::count_targets(&targets);
        if n > 0 {
            s.sum += g.value(loss)[0] as f64 * n as f64;
        }
        s.count += n;
        *ws = g.finish();
        on_batch(n);
    }
    Ok(s)
}

/// Mean per-token loss (nats) of `model` over `data` in rows of `n_ctx`
/// tokens (for documents, BOS targets included).
pub fn evaluate(model: &Gpt, data: &Dataset, n_ctx: usize, ws: &mut Workspace) -> Option<f32> {
    evaluate_with_accuracy(model, data, n_ctx, ws).map(|(loss, _)| loss)
}

/// [`evaluate`] and the share of targets whose logit is the largest (a
/// classifier's accuracy).
pub fn evaluate_with_accuracy(model: &Gpt, data: &Dataset, n_ctx: usize, ws: &mut Workspace) -> Option<(f32, f32)> {
    let mut batches = data.eval_batches(n_ctx, model.config.n_logits());
    let s = score_batches(model, &mut *batches, ws, &mut |_| {}, None).ok()?;
    (s.count > 0).then(|| {
        (
            (s.sum / s.count as f64) as f32,
            (s.correct as f64 / s.count as f64) as f32,
        )
    })
}

/// A classifier's logits `[labels]` for each text (its ids, at most
/// `n_ctx` each), in order: texts packed into rows of `n_ctx` tokens, each
/// read at its last token.
pub fn classify_texts(model: &Gpt, texts: &[Vec<u32>], ws: &mut Workspace) -> Vec<Vec<f32>> {
    // Each text with a placeholder label: the batcher marks its last token.
    let docs = texts.iter().map(|t| t.iter().copied().chain([0]).collect()).collect();
    let data = Dataset::Labelled(docs);
    let mut batches = data.eval_batches(model.config.n_ctx, model.config.n_logits());
    let mut out = Vec::with_capacity(texts.len());
    while let Some(b) = batches.next_batch() {
        let mut g = Graph::inference(&model.params, std::mem::take(ws));
        let rows: Vec<usize> = (0..b.targets.len()).filter(|&i| b.targets[i] != IGNORE).collect();
        let logits = model.classify(&mut g, &b.tokens, &b.pos, b.b, &rows); // [n, labels]
        out.extend(
            g.value(logits)
                .chunks_exact(model.config.n_logits())
                .map(<[f32]>::to_vec),
        );
        *ws = g.finish();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::windows::SlidingWindows;
    use crate::model::{GptConfig, Init};
    use crate::tensor::rng;

    fn sliding_window_loss(model: &Gpt, ids: &[u32], stride: usize) -> (f64, usize) {
        let mut windows = SlidingWindows::new(ids, model.config.n_ctx, stride);
        score(model, &mut windows, &mut Workspace::default(), &mut |_| {}, None).unwrap()
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
    fn documents_score_as_one_forward_per_document() {
        let model = Gpt::new(GptConfig::gpt2(6, 4, 8, 2, 1), Init::Normal(0.3), &mut rng(3));
        let docs = vec![vec![5, 0, 1, 5], vec![5, 2, 3, 4, 0, 1, 5], vec![5, 5]];
        // Packed batches, the last document cut to n_ctx + 1 = 5 tokens.
        let got = evaluate(&model, &Dataset::Docs(docs.clone()), 4, &mut Workspace::default()).unwrap();
        let (mut sum, mut count) = (0.0, 0);
        for d in &docs {
            let d = &d[..d.len().min(5)];
            let t = d.len() - 1;
            let mut g = Graph::inference(&model.params, Workspace::default());
            let pos: Vec<u32> = (0..t as u32).collect();
            let logits = model.forward(&mut g, &d[..t], &pos, 1, None);
            let loss = g.cross_entropy(logits, &d[1..]);
            sum += g.value(loss)[0] as f64 * t as f64;
            count += t;
        }
        assert_eq!(count, 3 + 4 + 1);
        assert!(
            (got - (sum / count as f64) as f32).abs() < 1e-6,
            "{got} vs {}",
            sum / count as f64
        );
    }
}
