//! Instruction records as `transformers` renders, tokenizes and scores them
//! (tests/golden/sft/, made by scripts/gen_sft_golden.py): a tiny GPT-2 with
//! no chat template (the Alpaca format, `<|endoftext|>` after each response)
//! and the tiny Llama with a ChatML template (chat records, several replies
//! each). Our ids and our response mask must be the reference's, and
//! `gpt eval --task sft` its response-only loss.

use gpt::data::sft::{read_records, Format, Template};
use gpt::model::{load, LoadOptions};
use serde::Deserialize;
use std::path::{Path, PathBuf};

mod common;
use common::{gpt, s, succeeds};

#[derive(Deserialize)]
struct Golden {
    records: String,
    examples: Vec<Example>,
    loss: f64,
    tokens: usize,
}

#[derive(Deserialize)]
struct Example {
    ids: Vec<u32>,
    scored: Vec<bool>,
}

fn golden_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

fn golden(name: &str) -> Golden {
    let text = std::fs::read_to_string(golden_dir().join("sft/golden.json")).unwrap();
    let mut all: serde_json::Value = serde_json::from_str(&text).unwrap();
    serde_json::from_value(all[name].take()).unwrap()
}

/// The tiny Llama's weights with the tiny ChatML tokenizer and config, in a fresh directory.
fn tiny_chat_model() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let copy = |from: &Path, name: &str| std::fs::copy(from.join(name), dir.path().join(name)).unwrap();
    copy(&golden_dir().join("llama/llama"), "model.safetensors");
    for name in ["config.json", "tokenizer.json", "tokenizer_config.json"] {
        copy(&golden_dir().join("chat/tiny"), name);
    }
    dir
}

/// Our ids and mask of every record against the reference's, then `gpt eval --task sft`'s loss.
fn check(model: &Path, name: &str, templated: bool) {
    let g = golden(name);
    let loaded = load(s(model), &LoadOptions::default()).unwrap();
    let chat = &loaded.chat;
    assert_eq!(chat.template.is_some(), templated);
    let format = Format {
        template: chat.template.as_ref().map(|_| Template {
            template: chat.compile().unwrap(),
            bos_token: chat.bos_token.clone(),
            eos_token: chat.eos_token.clone(),
        }),
        stop_ids: chat.stop_ids.clone(),
    };
    let path = golden_dir().join("sft").join(&g.records);
    let records = read_records(&path).unwrap();
    assert_eq!(records.len(), g.examples.len());
    for (r, want) in records.iter().zip(&g.examples) {
        let e = format.encode(&loaded.tokenizer, &path, r).unwrap();
        assert_eq!(e.ids, want.ids, "{name}: ids of the record on line {}", r.line);
        assert_eq!(e.scored, want.scored, "{name}: mask of the record on line {}", r.line);
    }
    let out = succeeds(gpt(&[
        "eval",
        "--task",
        "sft",
        "--model",
        s(model),
        "--data",
        s(&path),
        "--json",
    ]));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let loss = v["loss"].as_f64().unwrap();
    assert_eq!(
        v["tokens"].as_u64().unwrap() as usize,
        g.tokens,
        "{name}: response tokens"
    );
    assert!(
        ((loss - g.loss) / g.loss).abs() <= 1e-4,
        "{name}: loss {loss}, transformers {}",
        g.loss
    );
    assert!((v["perplexity"].as_f64().unwrap() - loss.exp()).abs() < 1e-9 * loss.exp());
}

#[test]
fn gpt2_alpaca_records_match_transformers() {
    check(&golden_dir().join("sft/gpt2"), "gpt2", false);
}

#[test]
fn llama_chat_records_match_transformers() {
    let dir = tiny_chat_model();
    check(dir.path(), "llama", true);
}
