//! `gpt classify`: the label and the probability of each label of texts, by a
//! classifier (`gpt train --task classify`, or a Hugging Face
//! `…ForSequenceClassification` directory); with labelled data, accuracy,
//! per-class precision and recall, and the confusion matrix.

use super::out::note;
use crate::autograd::Workspace;
use crate::data::labelled::{check_labels, read_examples, Example};
use crate::train::eval::classify_texts;
use anyhow::{ensure, Context, Result};
use clap::Args;
use serde_json::{json, Map, Value};
use std::io::Write;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct ClassifyArgs {
    /// The classifier: a run directory of `gpt train --task classify`, or a Hugging Face
    /// sequence-classification directory
    #[arg(long)]
    pub model: String,
    /// Texts to classify
    pub texts: Vec<String>,
    /// Texts from a file: TSV with a header line (`label<TAB>text`, or only `text`) or JSONL
    /// (`{"text":…, "label":…}`); with labels, accuracy, per-class precision and recall and the
    /// confusion matrix are printed too
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Print {"predictions":[{"label", "probabilities"}…]} (and, with labels, "accuracy", "n",
    /// "classes", "confusion") as JSON
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub load: super::generate::LoadArgs,
    #[command(flatten)]
    pub quiet: super::out::Quiet,
}

pub fn run(a: ClassifyArgs) -> Result<()> {
    a.quiet.apply();
    let mut examples: Vec<Example> = Vec::new();
    for (i, text) in a.texts.iter().enumerate() {
        ensure!(!text.trim().is_empty(), "text {} on the command line is empty", i + 1);
        examples.push(Example {
            label: None,
            text: text.clone(),
            line: 0,
        });
    }
    let data = match &a.data {
        Some(path) => read_examples(path, false)?,
        None => Vec::new(),
    };
    ensure!(
        !examples.is_empty() || !data.is_empty(),
        "nothing to classify: give texts, or --data FILE"
    );
    let crate::model::Loaded { model, tokenizer, .. } = load_adapted(&a.model, &a.load.options())?;
    let labels = model.config.labels.clone();
    ensure!(
        model.config.is_classifier(),
        "{} is a language model, not a classifier: train one with gpt train --task classify --init {}",
        a.model,
        a.model
    );
    if let Some(path) = &a.data {
        check_labels(path, &data, &labels)?;
    }
    let n_ctx = model.config.n_ctx;
    let mut cut = 0;
    let mut ids = Vec::new();
    for e in examples.iter().chain(&data) {
        let where_ = match &a.data {
            Some(p) if e.line > 0 => format!("{}:{}", p.display(), e.line),
            _ => "a text on the command line".to_string(),
        };
        let mut t = tokenizer
            .encode(&e.text)
            .with_context(|| format!("{where_}: the text cannot be encoded"))?;
        ensure!(!t.is_empty(), "{where_}: the text encodes to no tokens");
        if t.len() > n_ctx {
            t.truncate(n_ctx);
            cut += 1;
        }
        ids.push(t);
    }
    if cut > 0 {
        note!("warning: {cut} texts are longer than the model's context ({n_ctx} tokens) and are cut to their first {n_ctx}");
    }
    examples.extend(data);
    let logits = classify_texts(&model, &ids, &mut Workspace::default());
    let probs: Vec<Vec<f64>> = logits.iter().map(|l| softmax(l)).collect();
    let predicted: Vec<usize> = probs.iter().map(|p| argmax(p)).collect();
    // Scores against the examples that have labels.
    let truth: Vec<(usize, usize)> = examples
        .iter()
        .zip(&predicted)
        .filter_map(|(e, &p)| Some((labels.iter().position(|l| Some(l) == e.label.as_ref())?, p)))
        .collect();
    let metrics = (!truth.is_empty()).then(|| Metrics::new(&truth, labels.len()));
    let mut out = super::out::stdout();
    if a.json {
        let predictions: Vec<Value> = probs
            .iter()
            .zip(&predicted)
            .map(|(p, &k)| {
                let probabilities: Map<String, Value> =
                    labels.iter().cloned().zip(p.iter().map(|&x| json!(x))).collect();
                json!({"label": labels[k], "probabilities": probabilities})
            })
            .collect();
        let mut v = json!({ "predictions": predictions });
        if let Some(m) = &metrics {
            m.to_json(&labels, &mut v);
        }
        writeln!(out, "{v}")?;
        return Ok(());
    }
    for ((e, p), &k) in examples.iter().zip(&probs).zip(&predicted) {
        let shown: Vec<String> = labels.iter().zip(p).map(|(l, x)| format!("{l} {x:.4}")).collect();
        let text: String = e.text.chars().take(60).collect();
        let more = if text.len() < e.text.len() { "…" } else { "" };
        writeln!(out, "{}\t{}\t{text}{more}", labels[k], shown.join(" "))?;
    }
    if let Some(m) = &metrics {
        m.print(&labels, &mut out)?;
    }
    Ok(())
}

/// The model `spec` names with the adapter of `opts` (a classifier allowed):
/// a LoRA classifier's adapter goes on after a language-model base is made a
/// classifier, its head from the adapter and its labels from the run that
/// trained it (`run.json`).
pub(crate) fn load_adapted(spec: &str, opts: &crate::model::LoadOptions) -> Result<crate::model::Loaded> {
    let plain = crate::model::LoadOptions {
        classifier: true,
        adapter: None,
        ..opts.clone()
    };
    let mut loaded = crate::model::load(spec, &plain)?;
    if let Some(dir) = &opts.adapter {
        let adapter = crate::model::Adapter::load(dir)?;
        if adapter.score.is_some() && !loaded.model.config.is_classifier() {
            let labels = super::train::run_labels(dir)?;
            let pad = super::train::pad_token_id(&loaded.model.config, &loaded.tokenizer);
            loaded.model = loaded.model.into_classifier(labels, pad, &mut crate::tensor::rng(0))?;
        }
        loaded
            .model
            .add_adapter(&adapter)
            .with_context(|| format!("adding the adapter in {} to {spec}", dir.display()))?;
    }
    Ok(loaded)
}

fn softmax(logits: &[f32]) -> Vec<f64> {
    let max = logits.iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x)) as f64;
    let e: Vec<f64> = logits.iter().map(|&x| (x as f64 - max).exp()).collect();
    let sum: f64 = e.iter().sum();
    e.iter().map(|x| x / sum).collect()
}

/// The first index of the largest value.
fn argmax(p: &[f64]) -> usize {
    (0..p.len()).fold(0, |k, i| if p[i] > p[k] { i } else { k })
}

/// Accuracy, per-class precision and recall, and the confusion matrix of
/// `(true, predicted)` label pairs.
struct Metrics {
    /// `confusion[t][p]`: texts of label `t` predicted `p`.
    confusion: Vec<Vec<usize>>,
    n: usize,
    correct: usize,
}

impl Metrics {
    fn new(pairs: &[(usize, usize)], labels: usize) -> Self {
        let mut confusion = vec![vec![0; labels]; labels];
        for &(t, p) in pairs {
            confusion[t][p] += 1;
        }
        Metrics {
            n: pairs.len(),
            correct: (0..labels).map(|k| confusion[k][k]).sum(),
            confusion,
        }
    }

    fn accuracy(&self) -> f64 {
        self.correct as f64 / self.n as f64
    }

    /// `(precision, recall, support)` of label `k` (a share of 0 texts is 0).
    fn class(&self, k: usize) -> (f64, f64, usize) {
        let predicted: usize = self.confusion.iter().map(|row| row[k]).sum();
        let support: usize = self.confusion[k].iter().sum();
        let share = |a: usize, b: usize| if b == 0 { 0.0 } else { a as f64 / b as f64 };
        let hit = self.confusion[k][k];
        (share(hit, predicted), share(hit, support), support)
    }

    fn to_json(&self, labels: &[String], v: &mut Value) {
        v["accuracy"] = json!(self.accuracy());
        v["n"] = json!(self.n);
        let classes: Map<String, Value> = labels
            .iter()
            .enumerate()
            .map(|(k, l)| {
                let (precision, recall, support) = self.class(k);
                (
                    l.clone(),
                    json!({"precision": precision, "recall": recall, "support": support}),
                )
            })
            .collect();
        v["classes"] = Value::Object(classes);
        v["confusion"] = json!({"labels": labels, "matrix": self.confusion});
    }

    fn print(&self, labels: &[String], out: &mut impl Write) -> std::io::Result<()> {
        writeln!(
            out,
            "\naccuracy {:.2}% ({} of {} texts)",
            100.0 * self.accuracy(),
            self.correct,
            self.n
        )?;
        let width = labels.iter().map(|l| l.chars().count()).max().unwrap_or(0).max(5);
        writeln!(out, "{:width$}  precision  recall  support", "label")?;
        for (k, l) in labels.iter().enumerate() {
            let (p, r, s) = self.class(k);
            writeln!(out, "{l:width$}  {:>9.4}  {r:>6.4}  {s:>7}", p)?;
        }
        writeln!(out, "confusion (rows: true label, columns: predicted)")?;
        let cell = self.n.to_string().len().max(width);
        let header: Vec<String> = labels.iter().map(|l| format!("{l:>cell$}")).collect();
        writeln!(out, "{:width$}  {}", "", header.join(" "))?;
        for (l, row) in labels.iter().zip(&self.confusion) {
            let cells: Vec<String> = row.iter().map(|c| format!("{c:>cell$}")).collect();
            writeln!(out, "{l:width$}  {}", cells.join(" "))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn precision_recall_and_confusion_count_pairs() {
        // (true, predicted): two of label 0 (one right), one of label 1 (right).
        let m = Metrics::new(&[(0, 0), (0, 1), (1, 1)], 2);
        assert_eq!(m.confusion, [[1, 1], [0, 1]]);
        assert!((m.accuracy() - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!(m.class(0), (1.0, 0.5, 2));
        assert_eq!(m.class(1), (0.5, 1.0, 1));
        assert_eq!(argmax(&softmax(&[0.5, 2.0, 2.0])), 1);
    }
}
