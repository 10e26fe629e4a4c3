//! `gpt eval --task choice`: multiple-choice accuracy (HellaSwag style),
//! each ending scored by its summed and its mean log-likelihood given the
//! context, as llm.c scores HellaSwag.

use super::eval::EvalArgs;
use super::out::{count, note};
use crate::autograd::Workspace;
use crate::data::choice::{encode, read_records};
use crate::train::choice::score_choices;
use anyhow::{bail, Result};
use serde_json::json;
use std::io::Write;

pub fn run(a: EvalArgs) -> Result<()> {
    for (given, flag) in [(a.stride.is_some(), "--stride"), (a.logits.is_some(), "--logits")] {
        if given {
            bail!("{flag} is for --task lm (scoring a text): --task choice scores records; leave {flag} out");
        }
    }
    let records = read_records(&a.data)?;
    let crate::model::Loaded { model, tokenizer, .. } = crate::model::load(&a.model, &a.load.options())?;
    let n_ctx = model.config.n_ctx;
    let choices = encode(&a.data, &records, &tokenizer, n_ctx)?;
    let endings: usize = choices.iter().map(|c| c.endings.len()).sum();
    let bar = match a.json {
        true => indicatif::ProgressBar::hidden(),
        false => super::out::bar(endings as u64),
    };
    let report = score_choices(&model, &choices, &mut Workspace::default(), &mut |n| bar.inc(n as u64))?;
    bar.finish_and_clear();
    if report.cut > 0 {
        note!(
            "note: {} too long for the model's context of {n_ctx}: scored after the context's last tokens",
            count(report.cut, "context and ending are", "contexts and endings are")
        );
    }
    let n = report.records.len();
    let right = report
        .records
        .iter()
        .zip(&choices)
        .filter(|(s, c)| s.pred == c.label)
        .count();
    let right_norm = report
        .records
        .iter()
        .zip(&choices)
        .filter(|(s, c)| s.pred_norm == c.label)
        .count();
    let (accuracy, accuracy_norm) = (right as f64 / n as f64, right_norm as f64 / n as f64);
    let mut out = super::out::stdout();
    if a.json {
        let predictions: Vec<_> = report
            .records
            .iter()
            .zip(&choices)
            .map(|(s, c)| {
                json!({"label": c.label, "pred": s.pred, "pred_norm": s.pred_norm, "logprobs": s.logprobs,
                       "logprobs_norm": s.logprobs_norm(), "tokens": s.tokens})
            })
            .collect();
        let line = json!({"accuracy": accuracy, "accuracy_norm": accuracy_norm, "n": n, "predictions": predictions});
        writeln!(out, "{line}")?;
    } else {
        writeln!(
            out,
            "accuracy {accuracy:.4} ({right}/{n}) by summed log-likelihood | accuracy_norm {accuracy_norm:.4} \
             ({right_norm}/{n}) by mean per token | {}",
            count(n, "record", "records")
        )?;
    }
    Ok(())
}
