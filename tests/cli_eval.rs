//! `gpt eval --logits FILE`: the .npy holds one row of logits per scored
//! token, in scoring order, and those rows give back the loss `gpt eval` reports.

use gpt::autograd::{Graph, Workspace};
use gpt::model::{Gpt, GptConfig, Init};
use gpt::tensor::rng;
use gpt::tokenizer::{CharTokenizer, Tokenizer};
use std::path::Path;
use std::process::Command;

mod common;
use common::{read_npy, Npy};

/// Runs `gpt eval --json --logits` and returns the reported loss and token count, and the array.
fn eval_with_logits(model: &Path, data: &Path, extra: &[&str]) -> (f64, usize, Npy) {
    let npy = model.join("logits.npy");
    let out = Command::new(env!("CARGO_BIN_EXE_gpt"))
        .args(["eval", "--json", "--model", model.to_str().unwrap(), "--data"])
        .args([data.to_str().unwrap(), "--logits", npy.to_str().unwrap()])
        .args(extra)
        .output()
        .expect("gpt runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let tokens = json["tokens"].as_u64().unwrap() as usize;
    (json["loss"].as_f64().unwrap(), tokens, read_npy(&npy))
}

/// Mean of `logsumexp(row) - row[target]` over the rows: the cross-entropy they imply.
fn mean_loss(npy: &Npy, targets: &[u32]) -> f64 {
    assert_eq!(npy.shape.0, targets.len());
    let rows = npy.data.chunks_exact(npy.shape.1);
    let sum: f64 = rows
        .zip(targets)
        .map(|(row, &t)| {
            let max = row.iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x)) as f64;
            let lse = max + row.iter().map(|&x| (x as f64 - max).exp()).sum::<f64>().ln();
            lse - row[t as usize] as f64
        })
        .sum();
    sum / targets.len() as f64
}

fn assert_close(a: f64, b: f64, what: &str) {
    assert!((a - b).abs() <= 1e-5 * b.abs(), "{what}: {a} vs {b}");
}

#[test]
fn bpe_logits_are_every_scored_token_across_windows() {
    let tmp = tempfile::tempdir().unwrap();
    let text = "the cat sat on the mat; the dog sat on the log. ".repeat(4);
    let data = tmp.path().join("text.txt");
    std::fs::write(&data, &text).unwrap();
    let bpe = gpt::tokenizer::bpe::train::train(&[&text], 270, |_, _| {}).unwrap();
    bpe.save(tmp.path()).unwrap();
    let n_ctx = 16;
    let model = Gpt::new(
        GptConfig::gpt2(bpe.vocab_size(), n_ctx, 16, 2, 1),
        Init::Normal(0.3),
        &mut rng(1),
    );
    model.save(tmp.path()).unwrap();
    let ids = Tokenizer::load(tmp.path()).unwrap().encode(&text).unwrap();
    assert!(ids.len() > 3 * n_ctx, "several windows: {} tokens", ids.len());

    let (loss, tokens, npy) = eval_with_logits(tmp.path(), &data, &["--stride", "5"]);
    assert_eq!(tokens, ids.len() - 1);
    assert_eq!(npy.shape, (ids.len() - 1, model.config.vocab_size));
    assert_close(mean_loss(&npy, &ids[1..]), loss, "loss from the logits");
    // The first window's rows are the model's logits of the first n_ctx tokens.
    let mut g = Graph::inference(&model.params, Workspace::default());
    let pos: Vec<u32> = (0..n_ctx as u32).collect();
    let logits = model.forward(&mut g, &ids[..n_ctx], &pos, 1, None);
    let first = &npy.data[..n_ctx * npy.shape.1];
    let diff = g
        .value(logits)
        .iter()
        .zip(first)
        .fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
    assert!(diff < 1e-5, "first window differs by {diff}");
}

#[test]
fn char_logits_follow_the_documents_in_order() {
    let tmp = tempfile::tempdir().unwrap();
    let docs = ["anna", "bob", "christopher", "di"];
    let data = tmp.path().join("names.txt");
    std::fs::write(&data, docs.join("\n")).unwrap();
    let chars = CharTokenizer::from_docs(&docs);
    chars.save(tmp.path()).unwrap();
    let n_ctx = 8; // "christopher" is cut to its first 8 inputs
    let model = Gpt::new(
        GptConfig::gpt2(chars.vocab_size(), n_ctx, 16, 2, 1),
        Init::Normal(0.3),
        &mut rng(2),
    );
    model.save(tmp.path()).unwrap();
    let targets: Vec<u32> = docs
        .iter()
        .flat_map(|d| {
            let ids = chars.encode_doc(d).unwrap();
            ids[1..ids.len().min(n_ctx + 1)].to_vec()
        })
        .collect();

    let (loss, tokens, npy) = eval_with_logits(tmp.path(), &data, &[]);
    assert_eq!(tokens, targets.len());
    assert_eq!(npy.shape, (targets.len(), chars.vocab_size()));
    assert_close(mean_loss(&npy, &targets), loss, "loss from the logits");
}

#[test]
fn char_models_refuse_stride_and_say_what_is_cut() {
    let tmp = tempfile::tempdir().unwrap();
    let docs = ["anna", "christopher", "maximiliana"];
    let data = tmp.path().join("names.txt");
    std::fs::write(&data, docs.join("\n")).unwrap();
    let chars = CharTokenizer::from_docs(&docs);
    chars.save(tmp.path()).unwrap();
    let model = Gpt::new(
        GptConfig::gpt2(chars.vocab_size(), 8, 16, 2, 1),
        Init::Normal(0.3),
        &mut rng(2),
    );
    model.save(tmp.path()).unwrap();
    let eval = |extra: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_gpt"))
            .args(["eval", "--model", tmp.path().to_str().unwrap(), "--data"])
            .arg(&data)
            .args(extra)
            .output()
            .unwrap()
    };
    let out = eval(&["--stride", "4"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("--stride 4") && err.contains("document"),
        "{err}"
    );
    let out = eval(&[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("2 documents are longer than the model's context of 8"),
        "{err}"
    );
}
