//! Golden tests of GGUF models against `transformers`: tiny Llamas (untied;
//! tied with grouped-query attention, also with Llama 3's rope scaling as
//! `rope_freqs.weight`) and a tiny GPT-2, written by llama.cpp's
//! `gguf` package as its converter lays them out, in F32 and Q8_0
//! (tests/golden/gguf_models/, made by scripts/gen_gguf_model_golden.py).
//! Loaded (dequantized to f32) they must give the reference logits within
//! 1e-4 and its greedy continuations, with KV-cache decoding equal to the
//! full forward; `model::load` must bring the file's tokenizer and chat
//! template; and files that lie are errors naming the file and the problem.

use gpt::io::gguf::{GgmlType, Gguf, GgufWriter, Value};
use gpt::model::{self, Gpt, LoadOptions};
use gpt::tensor::rope::inv_freq;
use serde::Deserialize;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

mod common;
use common::golden::{assert_same_weights, check_greedy, check_logits, reference_logits, Greedy};

#[derive(Deserialize)]
struct Golden {
    prompts: HashMap<String, Vec<Vec<u32>>>,
    logits_tolerance: f32,
    chat_template: String,
    models: HashMap<String, Entry>,
}

#[derive(Deserialize)]
struct Entry {
    file: String,
    logits: String,
    prompts: String,
    greedy: Vec<Greedy>,
    bos: u32,
    eos: u32,
}

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/gguf_models")
}

fn golden() -> Golden {
    serde_json::from_str(&std::fs::read_to_string(dir().join("golden.json")).unwrap()).unwrap()
}

fn check(names: &[&str]) {
    let g = golden();
    for name in names {
        let entry = &g.models[*name];
        let model = common::golden::load(&dir().join(&entry.file));
        let prompts = &g.prompts[&entry.prompts];
        let want = reference_logits(&dir().join(&entry.logits), prompts);
        let worst = check_logits(&model, prompts, &want, g.logits_tolerance, name);
        check_greedy(&model, prompts, &entry.greedy, name);
        println!("{name}: max abs diff from transformers over all logits: {worst:e}");
    }
}

#[test]
fn llama_gguf_matches_transformers_in_f32_and_q8_0() {
    check(&["llama", "llama_q8_0", "gqa_tied", "gqa_tied_q8_0", "gqa_llama3_tied"]);
}

#[test]
fn gpt2_gguf_matches_transformers_in_f32_and_q8_0() {
    check(&["gpt2", "gpt2_q8_0"]);
}

#[test]
fn q8_0_gguf_kept_in_blocks_stays_close_to_its_dequantized_weights() {
    // `model::load` keeps a file's quantized matrices quantized: the only
    // difference from the dequantized model is the activations' 8-bit
    // rounding in the integer block products (R's bound: well under 2%).
    let g = golden();
    for name in ["llama_q8_0", "gqa_tied_q8_0", "gpt2_q8_0"] {
        let file = dir().join(&g.models[name].file);
        let kept = model::load(file.to_str().unwrap(), &LoadOptions::default())
            .unwrap()
            .model;
        let quantized = kept.params.quant.iter().filter(|q| q.is_some()).count();
        assert!(quantized >= 4, "{name}: only {quantized} matrices kept quantized");
        let f32_opts = LoadOptions {
            dtype: model::Dtype::F32,
            ..Default::default()
        };
        let exact = model::load(file.to_str().unwrap(), &f32_opts).unwrap().model;
        assert!(
            exact.params.quant.iter().all(Option::is_none),
            "{name}: --dtype f32 dequantizes all"
        );
        let prompt = &g.prompts[&g.models[name].prompts][0];
        let (a, b) = (
            common::golden::full_logits(&kept, prompt),
            common::golden::full_logits(&exact, prompt),
        );
        let scale = b.iter().fold(0.0f32, |m, x| m.max(x.abs()));
        let diff = a.iter().zip(&b).fold(0.0f32, |m, (x, y)| m.max((x - y).abs()));
        assert!(
            diff > 0.0 && diff <= 0.02 * scale,
            "{name}: {diff} of max |logit| {scale}"
        );
        println!(
            "{name}: kept quantized vs dequantized: max abs diff {diff:e} ({:.2}% of max |logit|)",
            100.0 * diff / scale
        );
    }
}

#[test]
fn f32_gguf_holds_the_safetensors_weights() {
    // gen_llama_golden's `llama` and `gqa_llama3_tied`: the permutation undone, every weight is the same.
    for name in ["llama", "gqa_llama3_tied"] {
        let safetensors = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/golden/llama")
            .join(name);
        let want = common::golden::load(&safetensors);
        let mut from_gguf = common::golden::load(&dir().join(format!("{name}.gguf")));
        // The GGUF names its own special tokens; everything else is the checkpoint's.
        from_gguf.config.bos_token_id = want.config.bos_token_id;
        from_gguf.config.eos_token_id = want.config.eos_token_id.clone();
        // Llama 3's scaling comes back from rope_freqs.weight as the same frequencies, not
        // necessarily the same parameters (only their ratios matter).
        let (ours, theirs) = (from_gguf.config.rope.unwrap(), want.config.rope.unwrap());
        let hs = want.config.head_size();
        let (a, b) = (inv_freq(hs, ours), inv_freq(hs, theirs));
        assert!(
            a.iter().zip(&b).all(|(x, y)| (x - y).abs() <= 1e-6 * y),
            "{name}: {a:?} vs {b:?}"
        );
        from_gguf.config.rope = want.config.rope;
        assert_same_weights(&from_gguf, &want, name);
    }
}

#[test]
fn model_load_brings_the_tokenizer_and_chat_template() {
    let g = golden();
    for (name, entry) in &g.models {
        let file = dir().join(&entry.file);
        let loaded = model::load(file.to_str().unwrap(), &LoadOptions::default()).unwrap();
        assert_eq!(
            loaded.chat.template.as_deref(),
            Some(g.chat_template.as_str()),
            "{name}"
        );
        assert!(
            loaded.chat.stop_ids.contains(&entry.eos),
            "{name}: generation stops at EOS"
        );
        assert_eq!(loaded.model.config.bos_token_id, Some(entry.bos), "{name}");
        assert_eq!(loaded.model.config.eos_token_id, vec![entry.eos], "{name}");
        let tok = &loaded.tokenizer;
        assert_eq!(tok.vocab_size(), loaded.model.config.vocab_size, "{name}");
        let s = tok.special_tokens();
        assert_eq!((s.bos, s.eos), (Some(entry.bos), Some(entry.eos)), "{name}");
        let ids = tok.encode("!\"#$%&").unwrap();
        assert_eq!(tok.decode(&ids).unwrap(), "!\"#$%&", "{name}");
        assert_eq!(
            model::load_tokenizer(file.to_str().unwrap()).unwrap().fingerprint(),
            tok.fingerprint()
        );
    }
    // A directory holding one .gguf loads it; two are an error naming both.
    let tmp = tempfile::tempdir().unwrap();
    std::fs::copy(dir().join("gpt2.gguf"), tmp.path().join("a.gguf")).unwrap();
    let loaded = model::load(tmp.path().to_str().unwrap(), &LoadOptions::default()).unwrap();
    assert_eq!(loaded.model.config.vocab_size, 300);
    std::fs::copy(dir().join("llama.gguf"), tmp.path().join("b.gguf")).unwrap();
    let err = format!("{:#}", Gpt::load(tmp.path()).err().unwrap());
    assert!(err.contains("holds 2 GGUF files") && err.contains("b.gguf"), "{err}");
}

/// A GGUF file rebuilt from `source` with `edit` applied to its metadata and tensor table.
struct Edit<'a> {
    meta: Vec<(String, Value)>,
    tensors: Vec<(String, Vec<usize>, GgmlType, &'a [u8])>,
}

fn rewrite<'a>(source: &'a Gguf<Vec<u8>>, edit: impl FnOnce(&mut Edit<'a>)) -> Vec<u8> {
    let mut e = Edit {
        meta: source
            .metadata()
            .filter(|(k, _)| *k != "general.alignment")
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect(),
        tensors: source
            .tensors()
            .map(|(t, b)| (t.name.clone(), t.dims.clone(), t.ty, b))
            .collect(),
    };
    edit(&mut e);
    let mut w = GgufWriter::new();
    for (k, v) in e.meta {
        w.set(&k, v).unwrap();
    }
    for (name, dims, ty, bytes) in &e.tensors {
        w.add_tensor(name, dims, *ty, bytes).unwrap();
    }
    let mut out = Vec::new();
    w.write_to(&mut out).unwrap();
    out
}

fn load_err(bytes: Vec<u8>) -> String {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("lying.gguf");
    std::fs::write(&path, bytes).unwrap();
    let err = match model::load(path.to_str().unwrap(), &LoadOptions::default()) {
        Ok(_) => panic!("loading must fail"),
        Err(e) => format!("{e:#}"),
    };
    assert!(err.contains("lying.gguf"), "the error should name the file: {err}");
    err
}

fn assert_contains(err: &str, want: &str) {
    assert!(err.contains(want), "error {err:?} should mention {want:?}");
}

#[test]
fn lying_gguf_files_are_errors_naming_the_problem() {
    let bytes = std::fs::read(dir().join("llama_q8_0.gguf")).unwrap();
    let g = Gguf::parse(bytes.clone(), "llama_q8_0.gguf").unwrap();
    // Rebuilt unchanged, it loads (so each error below is the edit's).
    let same = rewrite(&g, |_| {});
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("same.gguf"), &same).unwrap();
    model::load(tmp.path().join("same.gguf").to_str().unwrap(), &LoadOptions::default()).unwrap();

    // Truncated, anywhere.
    for cut in [10, 100, 1000, bytes.len() / 2, bytes.len() - 1] {
        let err = load_err(bytes[..cut].to_vec());
        assert_contains(&err, "is not a valid GGUF file");
    }
    // A tensor's offset past the end, and two tensors overlapping.
    let table_entry = |name: &str| {
        let at = bytes.windows(name.len()).position(|w| w == name.as_bytes()).unwrap() + name.len();
        let n_dims = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        at + 4 + 8 * n_dims + 4 // the offset field
    };
    let mut past = bytes.clone();
    let off = table_entry("output_norm.weight");
    past[off..off + 8].copy_from_slice(&(1u64 << 30).to_le_bytes());
    assert_contains(&load_err(past), "runs past the end of the file");
    let mut overlap = bytes.clone();
    let first = table_entry("token_embd.weight");
    let second = table_entry("blk.0.attn_norm.weight");
    let o = overlap[first..first + 8].to_vec();
    overlap[second..second + 8].copy_from_slice(&o);
    assert_contains(&load_err(overlap), "overlap");
    // An unknown type id.
    let mut unknown = bytes.clone();
    let ty = table_entry("output_norm.weight") - 4;
    unknown[ty..ty + 4].copy_from_slice(&5u32.to_le_bytes());
    assert_contains(&load_err(unknown), "unknown ggml type id 5");
    // A known type we cannot dequantize.
    let i8s = [0u8; 32];
    let err = load_err(rewrite(&g, |e| {
        let t = e.tensors.iter_mut().find(|t| t.0 == "output_norm.weight").unwrap();
        (t.2, t.3) = (GgmlType::I8, &i8s[..]);
    }));
    assert_contains(&err, "tensor `output_norm.weight`: its type I8 is not supported");

    // Shapes that contradict the metadata.
    let set = |key: &str, v: Value| {
        let key = key.to_string();
        move |e: &mut Edit| {
            e.meta.retain(|(k, _)| *k != key);
            e.meta.push((key, v));
        }
    };
    assert_contains(
        &load_err(rewrite(&g, set("llama.embedding_length", Value::U32(64)))),
        "tensor `token_embd.weight` has dims [32, 64], but llama.embedding_length = 64 implies [64, vocabulary]",
    );
    assert_contains(
        &load_err(rewrite(&g, set("llama.attention.head_count_kv", Value::U32(2)))),
        "tensor `blk.0.attn_k.weight` has dims [32, 32] (ggml order), but the metadata implies [32, 16]",
    );
    assert_contains(
        &load_err(rewrite(&g, set("llama.feed_forward_length", Value::U32(64)))),
        "tensor `blk.0.ffn_gate.weight` has dims [32, 96] (ggml order), but the metadata implies [32, 64]",
    );
    assert_contains(
        &load_err(rewrite(&g, set("llama.block_count", Value::U32(3)))),
        "tensor `blk.2.attn_norm.weight` is missing",
    );
    assert_contains(
        &load_err(rewrite(&g, set("llama.block_count", Value::U32(1)))),
        "unexpected tensor `blk.1.",
    );
    assert_contains(
        &load_err(rewrite(&g, set("llama.block_count", Value::U64(u64::MAX)))),
        "claims",
    );
    assert_contains(
        &load_err(rewrite(&g, set("llama.context_length", Value::U64(1 << 40)))),
        "context length",
    );
    assert_contains(
        &load_err(rewrite(&g, set("llama.attention.head_count", Value::I32(-4)))),
        "expected a non-negative integer",
    );
    assert_contains(
        &load_err(rewrite(&g, set("llama.rope.dimension_count", Value::U32(4)))),
        "only rotating whole heads",
    );
    assert_contains(
        &load_err(rewrite(&g, set("llama.rope.freq_base", Value::String("x".into())))),
        "llama.rope.freq_base` is string, expected f32",
    );
    assert_contains(
        &load_err(rewrite(&g, set("general.architecture", Value::String("falcon".into())))),
        "architecture \"falcon\" is not supported",
    );
    // Rotary factors that are not Llama 3's scaling.
    let bad: Vec<u8> = [1.0f32, 3.0, 2.0, 8.0].iter().flat_map(|x| x.to_le_bytes()).collect();
    let err = load_err(rewrite(&g, |e| {
        e.tensors
            .push(("rope_freqs.weight".into(), vec![4], GgmlType::F32, &bad[..]))
    }));
    assert_contains(&err, "are not Llama 3's rope scaling");
    // Missing tensors.
    assert_contains(
        &load_err(rewrite(&g, |e| e.tensors.retain(|t| t.0 != "blk.1.ffn_down.weight"))),
        "tensor `blk.1.ffn_down.weight` is missing",
    );
    assert_contains(
        &load_err(rewrite(&g, |e| e.tensors.retain(|t| t.0 != "token_embd.weight"))),
        "tensor `token_embd.weight` (the token embedding) is missing",
    );
    // A vocabulary that does not match the embedding.
    let short: Vec<String> = g.get_str_array("tokenizer.ggml.tokens").unwrap()[..63]
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_contains(
        &load_err(rewrite(&g, set("tokenizer.ggml.tokens", short.into()))),
        "the vocabulary (tokenizer.ggml.tokens) has 63 tokens but the token embedding (token_embd.weight) has 64 rows",
    );
    assert_contains(
        &load_err(rewrite(&g, set("llama.vocab_size", Value::U32(65)))),
        "llama.vocab_size is 65 but the token embedding (token_embd.weight) has 64 rows",
    );
    // No tokenizer at all: the weights load, a model for generation does not.
    let bare = rewrite(&g, |e| e.meta.retain(|(k, _)| !k.starts_with("tokenizer.")));
    assert_contains(&load_err(bare.clone()), "has no tokenizer");
    let bare = Gguf::parse(bare, "bare.gguf").unwrap();
    gpt::model::gguf::model(&bare, false).unwrap();
}

#[test]
fn damaged_model_files_are_errors_or_models_never_panics() {
    // A cheap stand-in for the fuzz target: cuts and bit flips all over a real model file.
    let bytes = std::fs::read(dir().join("llama_q8_0.gguf")).unwrap();
    let try_read = |b: Vec<u8>| {
        if let Ok(mut g) = Gguf::parse(b, "damaged.gguf") {
            let _ = gpt::model::gguf::read(&mut g, false);
        }
    };
    for cut in (0..bytes.len()).step_by(389) {
        try_read(bytes[..cut].to_vec());
    }
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    for _ in 0..1500 {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        // Mostly the header, metadata and tensor table, where a flip changes meaning.
        let span = if state.is_multiple_of(4) {
            bytes.len()
        } else {
            6000.min(bytes.len())
        };
        let at = (state >> 8) as usize % span;
        let mut b = bytes.clone();
        b[at] ^= 1 << (state >> 3 & 7);
        try_read(b);
    }
}
