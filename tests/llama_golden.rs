//! Golden tests of the Llama family against Hugging Face `transformers`: tiny
//! random Llama / Qwen2 models saved by `transformers` (tests/golden/llama/,
//! made by scripts/gen_llama_golden.py) in f32, bf16 and shards must give
//! `transformers`' logits (within 1e-4) and greedy continuations, with
//! KV-cache decoding equal to the full forward; what we save must be what
//! `transformers` saves, and damaged shard indexes are clear errors.

use gpt::model::{Gpt, GptConfig};
use gpt::tensor::{Bf16, WeightElem};
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

mod common;
use common::golden::{assert_same_weights, check_greedy, check_logits, reference_logits, Greedy};

#[derive(Deserialize)]
struct Golden {
    prompts: Vec<Vec<u32>>,
    logits_tolerance: f32,
    models: HashMap<String, Entry>,
}

#[derive(Deserialize)]
struct Entry {
    dir: String,
    /// Every prompt position's logits, prompts concatenated, f32 LE.
    logits: String,
    /// The greedy continuation of each prompt that leaves room for one.
    greedy: Vec<Greedy>,
}

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/llama")
}

fn golden() -> Golden {
    serde_json::from_str(&std::fs::read_to_string(dir().join("golden.json")).unwrap()).unwrap()
}

fn load(sub: &str) -> Gpt {
    common::golden::load(&dir().join(sub))
}

/// Multi-head models: untied, in bf16 and in shards; tied with Llama 3's
/// rope scaling; Qwen2 with q/k/v biases.
const MHA: [&str; 5] = ["llama", "llama_bf16", "llama_sharded", "llama3_tied", "qwen2"];

/// Grouped-query models (2 KV heads for 4 query heads).
const GQA: [&str; 2] = ["gqa", "gqa_llama3_tied"];

fn check_models(names: &[&str]) {
    let g = golden();
    for name in names {
        let entry = &g.models[*name];
        let model = load(&entry.dir);
        let want = reference_logits(&dir().join(&entry.logits), &g.prompts);
        let worst = check_logits(&model, &g.prompts, &want, g.logits_tolerance, name);
        check_greedy(&model, &g.prompts, &entry.greedy, name);
        println!("{name}: max abs diff from transformers over all logits: {worst:e}");
    }
}

#[test]
fn logits_and_greedy_continuations_match_transformers() {
    check_models(&MHA);
}

#[test]
fn grouped_query_models_match_transformers() {
    check_models(&GQA);
}

#[test]
fn shards_and_bf16_hold_the_f32_weights() {
    let llama = load("llama");
    assert_same_weights(&load("llama_sharded"), &llama, "llama_sharded");
    // bf16 loads exactly as the f32 weights rounded to nearest even.
    let bf16 = load("llama_bf16");
    for ((name, got), want) in bf16
        .params
        .names
        .iter()
        .zip(&bf16.params.tensors)
        .zip(&llama.params.tensors)
    {
        let rounded: Vec<f32> = want.data.iter().map(|&x| Bf16::from_f32(x).to_f32()).collect();
        assert!(got.data == rounded, "{name}");
    }
}

/// Tensor names and shapes of a safetensors file.
fn tensors_of(path: &Path) -> BTreeMap<String, Vec<usize>> {
    let bytes = std::fs::read(path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    st.tensors().into_iter().map(|(n, v)| (n, v.shape().to_vec())).collect()
}

#[test]
fn what_we_save_is_what_transformers_saves_and_loads_back() {
    for (name, model_type) in [("llama", "llama"), ("llama3_tied", "llama"), ("qwen2", "qwen2")] {
        let model = load(name);
        let tmp = tempfile::tempdir().unwrap();
        model.save(tmp.path()).unwrap();
        assert_same_weights(&Gpt::load(tmp.path()).unwrap(), &model, name);
        // The same tensors, names and shapes as transformers' own save_pretrained.
        let theirs = tensors_of(&dir().join(name).join("model.safetensors"));
        assert_eq!(tensors_of(&tmp.path().join("model.safetensors")), theirs, "{name}");
        let config: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(tmp.path().join("config.json")).unwrap()).unwrap();
        assert_eq!(config["model_type"], model_type, "{name}");
        let original: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir().join(name).join("config.json")).unwrap()).unwrap();
        for field in [
            "vocab_size",
            "hidden_size",
            "intermediate_size",
            "num_hidden_layers",
            "num_attention_heads",
            "num_key_value_heads",
            "max_position_embeddings",
            "tie_word_embeddings",
            "bos_token_id",
            "eos_token_id",
            "hidden_act",
        ] {
            assert_eq!(config[field], original[field], "{name}: {field}");
        }
        let theta = original["rope_parameters"]["rope_theta"].as_f64().unwrap();
        assert_eq!(config["rope_theta"].as_f64(), Some(theta), "{name}");
    }
}

/// A temporary copy of a golden directory.
fn copy_of(sub: &str) -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    for f in std::fs::read_dir(dir().join(sub)).unwrap() {
        let f = f.unwrap().path();
        std::fs::copy(&f, tmp.path().join(f.file_name().unwrap())).unwrap();
    }
    tmp
}

fn load_err(path: &Path) -> String {
    format!("{:#}", Gpt::load(path).err().expect("loading must fail"))
}

fn assert_contains(err: &str, want: &str) {
    assert!(err.contains(want), "error {err:?} should mention {want:?}");
}

#[test]
fn damaged_shard_indexes_are_clear_errors() {
    let tmp = copy_of("llama_sharded");
    let d = tmp.path();
    let index = d.join("model.safetensors.index.json");
    let original = std::fs::read_to_string(&index).unwrap();
    let with = |edit: &dyn Fn(&mut serde_json::Value)| {
        let mut v: serde_json::Value = serde_json::from_str(&original).unwrap();
        edit(&mut v["weight_map"]);
        std::fs::write(&index, v.to_string()).unwrap();
        load_err(d)
    };
    let head = "lm_head.weight";
    let shard_of_head = serde_json::from_str::<serde_json::Value>(&original).unwrap()["weight_map"][head]
        .as_str()
        .unwrap()
        .to_string();
    let other = if shard_of_head.starts_with("model-00001") {
        "model-00002-of-00004.safetensors"
    } else {
        "model-00001-of-00004.safetensors"
    };
    assert_contains(
        &with(&|m| m[head] = other.into()),
        &format!("tensor {head} is in {shard_of_head} but the index says {other}"),
    );
    assert_contains(
        &with(&|m| {
            m.as_object_mut().unwrap().remove(head);
        }),
        "but the index says nothing of it",
    );
    assert_contains(
        &with(&|m| m["model.layers.9.mlp.up_proj.weight"] = other.into()),
        "the index lists tensor model.layers.9.mlp.up_proj.weight",
    );
    assert_contains(
        &with(&|m| m[head] = "../model-00004-of-00004.safetensors".into()),
        "not a file name in the model directory",
    );
    assert_contains(
        &with(&|m| m[head] = "model-00009-of-00009.safetensors".into()),
        "lists the shard model-00009-of-00009.safetensors, which is missing",
    );
    std::fs::write(&index, "{\"weight_map\": 3}").unwrap();
    assert_contains(&load_err(d), "is not a shard index");
    // A tensor in two shards: one shard copied over another's name.
    std::fs::write(&index, &original).unwrap();
    let (a, b) = (
        d.join("model-00001-of-00004.safetensors"),
        d.join("model-00002-of-00004.safetensors"),
    );
    std::fs::copy(&b, &a).unwrap();
    let err = load_err(d);
    assert!(err.contains("is in both"), "{err}");
    std::fs::remove_file(&a).unwrap();
    assert_contains(&load_err(d), "model-00001-of-00004.safetensors, which is missing");
    std::fs::remove_file(&index).unwrap();
    assert_contains(
        &load_err(d),
        "neither model.safetensors nor model.safetensors.index.json",
    );
}

#[test]
fn llama_configs_that_contradict_the_weights_are_errors() {
    let tmp = copy_of("llama");
    let config_path = tmp.path().join("config.json");
    let original = std::fs::read_to_string(&config_path).unwrap();
    let edit = |from: &str, to: &str| {
        assert!(original.contains(from), "{from}");
        std::fs::write(&config_path, original.replacen(from, to, 1)).unwrap();
        load_err(tmp.path())
    };
    assert_contains(
        &edit("\"num_hidden_layers\": 2", "\"num_hidden_layers\": 3"),
        "tensor model.layers.2.input_layernorm.weight is missing",
    );
    assert_contains(
        &edit("\"num_hidden_layers\": 2", "\"num_hidden_layers\": 1"),
        "unexpected tensor model.layers.1.",
    );
    assert_contains(
        &edit("\"intermediate_size\": 96", "\"intermediate_size\": 64"),
        "model.layers.0.mlp.gate_proj.weight has shape [96, 32], config.json implies [64, 32]",
    );
    assert_contains(
        &edit("\"tie_word_embeddings\": false", "\"tie_word_embeddings\": true"),
        "lm_head.weight differs from model.embed_tokens.weight",
    );
    assert_contains(
        &edit("\"model_type\": \"llama\"", "\"model_type\": \"qwen2\""),
        "q_proj.bias is missing",
    );
    assert_contains(&edit("\"head_dim\": 8", "\"head_dim\": 16"), "head_dim = 16");
    assert_contains(
        &edit(
            "\"intermediate_size\": 96",
            "\"intermediate_size\": 4611686018427387904",
        ),
        "cannot fit",
    );
    // GPT-2's config next to Llama weights: every name differs.
    std::fs::write(&config_path, GptConfig::gpt2(64, 64, 32, 4, 2).to_json()).unwrap();
    assert_contains(&load_err(tmp.path()), "tensor wte.weight is missing");
}
