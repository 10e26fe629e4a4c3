//! Multiple-choice scoring, as llm.c scores HellaSwag: each ending's
//! log-likelihood given its context, over the ending's tokens only, summed
//! (`accuracy`) and per token (`accuracy_norm`); the model picks the ending
//! it finds likeliest.
//!
//! Every (context, ending) sequence is packed with others into forward
//! passes of about [`PASS_TOKENS`] tokens, each with its own positions from
//! 0 (which also keeps its attention inside it), and logits are computed for
//! the ending's tokens only.

use crate::autograd::{Graph, Workspace};
use crate::data::choice::Choice;
use crate::model::Gpt;
use crate::tensor::cross_entropy::cross_entropy_forward;
use anyhow::{ensure, Result};

/// Tokens per forward pass (more when one sequence alone is longer).
pub const PASS_TOKENS: usize = 512;

/// What the model made of one record.
#[derive(Clone, Debug, PartialEq)]
pub struct Scored {
    /// Each ending's summed log-likelihood (nats).
    pub logprobs: Vec<f64>,
    /// Each ending's number of tokens.
    pub tokens: Vec<usize>,
    /// The ending with the largest summed log-likelihood (the first of ties).
    pub pred: usize,
    /// The ending with the largest mean log-likelihood per token.
    pub pred_norm: usize,
}

impl Scored {
    fn new(logprobs: Vec<f64>, tokens: Vec<usize>) -> Self {
        let mut s = Scored {
            pred: argmax(logprobs.iter().copied()),
            logprobs,
            tokens,
            pred_norm: 0,
        };
        s.pred_norm = argmax(s.logprobs_norm().into_iter());
        s
    }

    /// Each ending's mean log-likelihood per token.
    pub fn logprobs_norm(&self) -> Vec<f64> {
        self.logprobs
            .iter()
            .zip(&self.tokens)
            .map(|(&l, &n)| l / n as f64)
            .collect()
    }
}

/// The index of the largest of `x`, the first of ties.
fn argmax(x: impl Iterator<Item = f64>) -> usize {
    x.enumerate()
        .fold(
            (0, f64::NEG_INFINITY),
            |best, (i, v)| if v > best.1 { (i, v) } else { best },
        )
        .0
}

/// Every record scored, in order.
#[derive(Clone, Debug)]
pub struct ChoiceReport {
    pub records: Vec<Scored>,
    /// Sequences whose context was cut to its last tokens to fit the model's context.
    pub cut: usize,
}

/// The model's input for `ending` after `context`: the ending and as many of
/// the context's last tokens as fit in `n_ctx` inputs (the last token is only
/// a target), and whether the context was cut. `1 <= ending.len() <= n_ctx`.
fn sequence(context: &[u32], ending: &[u32], n_ctx: usize) -> (Vec<u32>, bool) {
    let keep = (n_ctx + 1 - ending.len()).min(context.len());
    let seq = [&context[context.len() - keep..], ending].concat();
    (seq, keep < context.len())
}

/// One forward pass being filled: sequences packed one after another.
#[derive(Default)]
struct Pass {
    tokens: Vec<u32>, // [T]
    pos: Vec<u32>,    // [T]
    /// Inputs whose next token is an ending's, their targets, and the (record, ending) each scores.
    rows: Vec<usize>,
    targets: Vec<u32>,
    owner: Vec<(usize, usize)>,
}

impl Pass {
    /// Adds `seq` (context then `ending_len` ending tokens) scored for `owner`.
    fn push(&mut self, seq: &[u32], ending_len: usize, owner: (usize, usize)) {
        let (start, inputs) = (self.tokens.len(), seq.len() - 1);
        self.tokens.extend_from_slice(&seq[..inputs]);
        self.pos.extend(0..inputs as u32);
        // Input i predicts seq[i + 1]: the ending's tokens from the context's last one on.
        let first = seq.len() - ending_len - 1;
        self.rows.extend(start + first..start + inputs);
        self.targets.extend_from_slice(&seq[first + 1..]);
        self.owner.extend(std::iter::repeat_n(owner, ending_len));
    }

    /// Runs the pass, adding each scored token's log-probability to its ending's sum.
    fn run(&mut self, model: &Gpt, ws: &mut Workspace, sums: &mut [Vec<f64>]) -> Result<()> {
        model.check_input(&self.tokens, &self.pos)?;
        let v = model.config.n_logits();
        let mut g = Graph::inference(&model.params, std::mem::take(ws));
        let h = model.hidden(&mut g, &self.tokens, &self.pos, 1, None); // [T, C]
        let h = g.rows(h, &self.rows); // [T, C] -> [n, C]
        let logits = model.logits(&mut g, h); // [n, C] -> [n, vocab]
        let mut lse = vec![0.0; self.rows.len()];
        cross_entropy_forward(&mut lse, g.value(logits), &self.targets, v);
        let values = g.value(logits);
        for (i, (&t, &(r, e))) in self.targets.iter().zip(&self.owner).enumerate() {
            sums[r][e] += (values[i * v + t as usize] - lse[i]) as f64;
        }
        *ws = g.finish();
        *self = Pass::default();
        Ok(())
    }
}

/// Scores every ending of every record of `choices` (a language model's
/// job: a classifier is refused). `on_pass` hears how many endings each
/// forward pass finished.
pub fn score_choices(
    model: &Gpt,
    choices: &[Choice],
    ws: &mut Workspace,
    on_pass: &mut dyn FnMut(usize),
) -> Result<ChoiceReport> {
    let n_ctx = model.config.n_ctx;
    ensure!(
        !model.config.is_classifier(),
        "multiple-choice scoring needs a language model, not a classifier"
    );
    let mut sums: Vec<Vec<f64>> = choices.iter().map(|c| vec![0.0; c.endings.len()]).collect();
    let (mut pass, mut in_pass, mut cut) = (Pass::default(), 0, 0);
    for (r, c) in choices.iter().enumerate() {
        ensure!(!c.context.is_empty(), "record {r}: the context has no tokens");
        for (e, ending) in c.endings.iter().enumerate() {
            ensure!(
                (1..=n_ctx).contains(&ending.len()),
                "record {r}: ending {e} has {} tokens: one to the model's context ({n_ctx}) can be scored",
                ending.len()
            );
            let (seq, was_cut) = sequence(&c.context, ending, n_ctx);
            cut += usize::from(was_cut);
            if !pass.tokens.is_empty() && pass.tokens.len() + seq.len() - 1 > PASS_TOKENS {
                pass.run(model, ws, &mut sums)?;
                on_pass(std::mem::take(&mut in_pass));
            }
            pass.push(&seq, ending.len(), (r, e));
            in_pass += 1;
        }
    }
    if !pass.tokens.is_empty() {
        pass.run(model, ws, &mut sums)?;
        on_pass(in_pass);
    }
    let records = sums
        .into_iter()
        .zip(choices)
        .map(|(logprobs, c)| Scored::new(logprobs, c.endings.iter().map(Vec::len).collect()))
        .collect();
    Ok(ChoiceReport { records, cut })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{GptConfig, Init};
    use crate::tensor::rng;

    /// log p(ending | context) token by token, one sequence per forward pass, no packing.
    fn one_by_one(model: &Gpt, seq: &[u32], ending_len: usize) -> f64 {
        let t = seq.len() - 1;
        let mut g = Graph::inference(&model.params, Workspace::default());
        let pos: Vec<u32> = (0..t as u32).collect();
        let logits = model.forward(&mut g, &seq[..t], &pos, 1, None);
        let v = model.config.vocab_size;
        let mut sum = 0.0;
        for i in t - ending_len..t {
            let row = &g.value(logits)[i * v..][..v];
            let lse = row.iter().map(|&x| (x as f64).exp()).sum::<f64>().ln();
            sum += row[seq[i + 1] as usize] as f64 - lse;
        }
        sum
    }

    #[test]
    fn packed_passes_score_as_one_sequence_at_a_time_and_long_contexts_keep_their_end() {
        let model = Gpt::new(GptConfig::gpt2(20, 8, 8, 2, 1), Init::Normal(0.3), &mut rng(4));
        let ids = |n: usize, k: u32| -> Vec<u32> { (0..n as u32).map(|i| (i * 7 + k) % 20).collect() };
        // Enough sequences for several passes; record 1's context is cut (6 + 4 > 8 + 1).
        let choices: Vec<Choice> = (0..60)
            .map(|r| Choice {
                context: ids(if r == 1 { 6 } else { 1 + r % 4 }, r as u32),
                endings: vec![ids(4, 1), ids(2, 3), ids(1, r as u32)],
                label: 0,
            })
            .collect();
        let mut passes = Vec::new();
        let got = score_choices(&model, &choices, &mut Workspace::default(), &mut |n| passes.push(n)).unwrap();
        assert!(passes.len() > 1 && passes.iter().sum::<usize>() == 180, "{passes:?}");
        assert_eq!(got.cut, 1);
        for (c, s) in choices.iter().zip(&got.records) {
            assert_eq!(s.tokens, [4, 2, 1]);
            for (e, ending) in c.endings.iter().enumerate() {
                let context = &c.context[c.context.len().saturating_sub(9 - ending.len())..];
                let want = one_by_one(&model, &[context, ending].concat(), ending.len());
                assert!((s.logprobs[e] - want).abs() < 1e-4, "{} vs {want}", s.logprobs[e]);
            }
        }
    }

    #[test]
    fn predictions_take_the_largest_sum_and_mean_first_of_ties() {
        let s = Scored::new(vec![-3.0, -4.0, -3.0], vec![1, 4, 2]);
        assert_eq!((s.pred, s.pred_norm), (0, 1));
        assert_eq!(s.logprobs_norm(), [-3.0, -1.0, -1.5]);
        let model = Gpt::new(GptConfig::gpt2(20, 8, 8, 2, 1), Init::Normal(0.3), &mut rng(4));
        let bad = Choice {
            context: vec![1],
            endings: vec![vec![1; 9], vec![2]],
            label: 0,
        };
        let err = score_choices(&model, &[bad], &mut Workspace::default(), &mut |_| {}).unwrap_err();
        assert!(err.to_string().contains("ending 0 has 9 tokens"), "{err}");
    }
}
