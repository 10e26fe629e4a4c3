//! Golden tests against Hugging Face `transformers`: a tiny random GPT-2
//! saved in every format `Gpt::load` reads (tests/golden/gpt2/, made by
//! scripts/gen_gpt2_golden.py) must give `transformers`' logits and greedy
//! continuations, and every import must give the same weights.

use gpt::model::Gpt;
use serde::Deserialize;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

mod common;
use common::golden::{assert_same_weights, check_greedy, check_logits, full_logits, reference_logits, Greedy};

#[derive(Deserialize)]
struct Golden {
    prompts: Vec<Vec<u32>>,
    /// dtype -> logits file: every prompt position, prompts concatenated, f32 LE.
    logits: HashMap<String, String>,
    logits_tolerance: f32,
    /// dtype -> greedy continuation of each prompt that leaves room for one.
    greedy: HashMap<String, Vec<Greedy>>,
}

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/gpt2")
}

fn golden() -> Golden {
    serde_json::from_str(&std::fs::read_to_string(dir().join("golden.json")).unwrap()).unwrap()
}

fn load(sub: &str) -> Gpt {
    common::golden::load(&dir().join(sub))
}

/// (directory, dtype of its reference): each safetensors layout and dtype.
const SAFETENSORS: [(&str, &str); 4] = [
    ("hub", "f32"),
    ("transformers", "f32"),
    ("f16", "f16"),
    ("bf16", "bf16"),
];

#[test]
fn logits_match_transformers_in_every_layout_and_dtype() {
    let g = golden();
    for (sub, dtype) in SAFETENSORS {
        let want = reference_logits(&dir().join(&g.logits[dtype]), &g.prompts);
        let worst = check_logits(&load(sub), &g.prompts, &want, g.logits_tolerance, sub);
        println!("{sub}: max abs diff from transformers over all logits: {worst:e}");
    }
}

#[test]
fn greedy_continuations_are_token_identical_and_cached_logits_match_full_forward() {
    let g = golden();
    for (sub, dtype) in SAFETENSORS {
        check_greedy(&load(sub), &g.prompts, &g.greedy[dtype], sub);
    }
}

#[test]
fn llmc_and_tensorflow_imports_give_the_safetensors_weights_exactly() {
    let hub = load("hub");
    for other in ["transformers", "llmc/model.bin", "tf"] {
        assert_same_weights(&load(other), &hub, other);
    }
    // bfloat16 from llm.c (version 5) and from safetensors round the same weights the same way.
    assert_same_weights(&load("llmc/model_bf16.bin"), &load("bf16"), "llmc/model_bf16.bin");
    // And so the logits are identical, hence equally close to transformers'.
    let g = golden();
    let prompt = g.prompts.last().unwrap();
    let want = full_logits(&hub, prompt);
    for other in ["llmc/model.bin", "tf"] {
        assert_eq!(full_logits(&load(other), prompt), want, "{other}");
    }
}
