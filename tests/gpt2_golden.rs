//! Golden tests against Hugging Face `transformers`: a tiny random GPT-2
//! saved in every format `Gpt::load` reads (tests/golden/gpt2/, made by
//! scripts/gen_gpt2_golden.py) must give `transformers`' logits and greedy
//! continuations, and every import must give the same weights.

use gpt::autograd::{Graph, Workspace};
use gpt::model::{Gpt, KvCache};
use serde::Deserialize;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

#[derive(Deserialize)]
struct Golden {
    prompts: Vec<Vec<u32>>,
    /// dtype -> logits file: every prompt position, prompts concatenated, f32 LE.
    logits: HashMap<String, String>,
    logits_tolerance: f32,
    /// dtype -> greedy continuation of each prompt that leaves room for one.
    greedy: HashMap<String, Vec<Greedy>>,
}

#[derive(Deserialize)]
struct Greedy {
    prompt: usize,
    tokens: Vec<u32>,
}

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/gpt2")
}

fn golden() -> Golden {
    serde_json::from_str(&std::fs::read_to_string(dir().join("golden.json")).unwrap()).unwrap()
}

fn load(sub: &str) -> Gpt {
    Gpt::load(&dir().join(sub)).unwrap_or_else(|e| panic!("loading {sub}: {e:#}"))
}

/// `transformers`' logits for `dtype`, one `Vec` per prompt.
fn reference_logits(g: &Golden, dtype: &str) -> Vec<Vec<f32>> {
    let bytes = std::fs::read(dir().join(&g.logits[dtype])).unwrap();
    let all: Vec<f32> = bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect();
    let v = all.len() / g.prompts.iter().map(Vec::len).sum::<usize>();
    let mut rest = all.as_slice();
    g.prompts
        .iter()
        .map(|p| {
            let (head, tail) = rest.split_at(p.len() * v);
            rest = tail;
            head.to_vec()
        })
        .collect()
}

/// Logits of every position of `tokens` (one sequence), full forward.
fn full_logits(model: &Gpt, tokens: &[u32]) -> Vec<f32> {
    let pos: Vec<u32> = (0..tokens.len() as u32).collect();
    let mut g = Graph::inference(&model.params, Workspace::default());
    let logits = model.forward(&mut g, tokens, &pos, 1, None);
    g.value(logits).to_vec()
}

/// Same config and bit-identical tensors, or a message naming the first tensor that differs.
fn assert_same_weights(a: &Gpt, b: &Gpt, what: &str) {
    assert_eq!(a.config, b.config, "{what}");
    assert_eq!(a.params.names, b.params.names, "{what}");
    for ((name, x), y) in a.params.names.iter().zip(&a.params.tensors).zip(&b.params.tensors) {
        assert_eq!(x.shape, y.shape, "{what}: {name}");
        assert!(
            x.data == y.data,
            "{what}: {name} differs by up to {}",
            max_abs_diff(&x.data, &y.data)
        );
    }
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

fn argmax(xs: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &x) in xs.iter().enumerate() {
        if x > xs[best] {
            best = i;
        }
    }
    best as u32
}

/// Greedy decoding with a KV cache: the prompt in one forward, then one
/// token per step. Returns the new tokens and each step's logits.
fn greedy(model: &Gpt, prompt: &[u32], n: usize) -> (Vec<u32>, Vec<Vec<f32>>) {
    let v = model.config.vocab_size;
    let mut cache = KvCache::new(&model.config, 1, prompt.len() + n);
    let mut ws = Workspace::default();
    let (mut input, mut seq) = (prompt.to_vec(), prompt.to_vec());
    let mut steps = Vec::new();
    for _ in 0..n {
        let pos: Vec<u32> = (seq.len() - input.len()..seq.len()).map(|p| p as u32).collect();
        let mut g = Graph::inference(&model.params, ws);
        let logits = model.forward(&mut g, &input, &pos, 1, Some(&mut cache));
        let last = g.value(logits)[(input.len() - 1) * v..].to_vec();
        ws = g.finish();
        let next = argmax(&last);
        steps.push(last);
        seq.push(next);
        input = vec![next];
    }
    (seq[prompt.len()..].to_vec(), steps)
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
        let model = load(sub);
        let want = reference_logits(&g, dtype);
        let mut worst = 0.0f32;
        for (prompt, want) in g.prompts.iter().zip(&want) {
            let diff = max_abs_diff(&full_logits(&model, prompt), want);
            assert!(
                diff <= g.logits_tolerance,
                "{sub}: prompt of {} tokens: max abs diff {diff}",
                prompt.len()
            );
            worst = worst.max(diff);
        }
        println!("{sub}: max abs diff from transformers over all logits: {worst:e}");
    }
}

#[test]
fn greedy_continuations_are_token_identical_and_cached_logits_match_full_forward() {
    let g = golden();
    for (sub, dtype) in SAFETENSORS {
        let model = load(sub);
        let cases = &g.greedy[dtype];
        assert!(cases.len() >= 3, "the golden file should have several continuations");
        for case in cases {
            let prompt = &g.prompts[case.prompt];
            let (tokens, steps) = greedy(&model, prompt, case.tokens.len());
            assert_eq!(tokens, case.tokens, "{sub}: prompt of {} tokens", prompt.len());
            // Decoding with the cache gives the logits of a full forward over the sequence.
            let seq = [prompt.as_slice(), &tokens].concat();
            let full = full_logits(&model, &seq);
            let v = model.config.vocab_size;
            for (i, step) in steps.iter().enumerate() {
                let row = &full[(prompt.len() - 1 + i) * v..][..v];
                assert!(max_abs_diff(step, row) <= 1e-5, "{sub}: cached step {i}");
            }
        }
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
