//! LoRA adapters saved by `peft` (tests/golden/lora/, made by
//! scripts/gen_lora_golden.py) on the tiny GPT-2 and Llama golden models:
//! loaded beside the base, unmerged, they must give `peft`'s logits (within
//! 1e-4), and merged into the weights as well; an adapter for another base model and
//! damaged adapters are clear errors.

use gpt::model::{self, Adapter, Gpt};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

mod common;
use common::golden::{check_logits, reference_logits};

#[derive(Deserialize)]
struct Golden {
    tolerance: f32,
    cases: BTreeMap<String, Case>,
}

#[derive(Deserialize)]
struct Case {
    base: String,
    adapter: String,
    logits: String,
    prompts: Vec<Vec<u32>>,
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf()
}

fn golden() -> Golden {
    let text = std::fs::read_to_string(root().join("tests/golden/lora/golden.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// The base model, with the adapter in `adapter` added.
fn load(base: &str, adapter: Option<PathBuf>) -> anyhow::Result<Gpt> {
    let mut model = Gpt::load(&root().join(base))?;
    if let Some(dir) = adapter {
        model.add_adapter(&Adapter::load(&dir)?)?;
    }
    Ok(model)
}

#[test]
fn peft_adapters_give_peft_logits() {
    let g = golden();
    assert_eq!(g.cases.len(), 3);
    for (name, case) in &g.cases {
        let dir = root().join("tests/golden/lora").join(&case.adapter);
        let loaded = load(&case.base, Some(dir)).unwrap();
        let want = reference_logits(&root().join("tests/golden/lora").join(&case.logits), &case.prompts);
        let worst = check_logits(&loaded, &case.prompts, &want, g.tolerance, name);
        // Merged into the weights (peft's merge_and_unload), the same logits from a plain model.
        let mut merged = loaded;
        let n_base = Gpt::load(&root().join(&case.base)).unwrap().params.count();
        merged.merge_adapters().unwrap();
        assert_eq!(
            merged.params.count(),
            n_base,
            "{name}: the adapter's matrices are dropped"
        );
        check_logits(&merged, &case.prompts, &want, g.tolerance, &format!("{name} merged"));
        // Without the adapter the logits are far off: the test sees the adapter.
        let plain = load(&case.base, None).unwrap();
        let off = common::golden::full_logits(&plain, &case.prompts[1]);
        let diff = off
            .iter()
            .zip(&want[1])
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(diff > 0.1, "{name}: the adapter changes the logits by only {diff}");
        println!("{name}: max abs diff from peft {worst:e} (base alone: {diff})");
    }
}

#[test]
fn an_adapter_for_another_base_model_is_refused() {
    let g = golden();
    let gpt2_adapter = root().join("tests/golden/lora").join(&g.cases["gpt2"].adapter);
    let err = load(&g.cases["llama_gqa"].base, Some(gpt2_adapter)).err().unwrap();
    let msg = format!("{err:#}");
    assert!(msg.contains("another base model") && msg.contains("c_attn"), "{msg}");
    // Same module names, other shapes: the GQA adapter on the 4-KV-head Llama.
    let gqa_adapter = root().join("tests/golden/lora").join(&g.cases["llama_gqa"].adapter);
    let err = load("tests/golden/llama/llama", Some(gqa_adapter)).err().unwrap();
    let msg = format!("{err:#}");
    assert!(msg.contains("another base model") && msg.contains("features"), "{msg}");
}

#[test]
fn damaged_adapters_are_clear_errors() {
    let src = root().join("tests/golden/lora/gpt2");
    let config = std::fs::read_to_string(src.join(model::ADAPTER_CONFIG_FILE)).unwrap();
    type Damage<'a> = Box<dyn Fn(&Path) + 'a>;
    let cases: [(&str, Damage); 5] = [
        (
            "No such file",
            Box::new(|d: &Path| std::fs::remove_file(d.join(model::ADAPTER_CONFIG_FILE)).unwrap()),
        ),
        (
            "r is 0",
            Box::new(|d: &Path| {
                std::fs::write(
                    d.join(model::ADAPTER_CONFIG_FILE),
                    config.replace("\"r\": 4", "\"r\": 0"),
                )
                .unwrap()
            }),
        ),
        (
            "rank r is 3",
            Box::new(|d: &Path| {
                std::fs::write(
                    d.join(model::ADAPTER_CONFIG_FILE),
                    config.replace("\"r\": 4", "\"r\": 3"),
                )
                .unwrap()
            }),
        ),
        (
            "DoRA",
            Box::new(|d: &Path| {
                std::fs::write(
                    d.join(model::ADAPTER_CONFIG_FILE),
                    config.replace("\"use_dora\": false", "\"use_dora\": true"),
                )
                .unwrap()
            }),
        ),
        (
            "not a safetensors file",
            Box::new(|d: &Path| std::fs::write(d.join(model::ADAPTER_WEIGHTS_FILE), b"junk").unwrap()),
        ),
    ];
    for (want, damage) in cases {
        let dir = tempfile::tempdir().unwrap();
        for f in [model::ADAPTER_CONFIG_FILE, model::ADAPTER_WEIGHTS_FILE] {
            std::fs::copy(src.join(f), dir.path().join(f)).unwrap();
        }
        damage(dir.path());
        let msg = match Adapter::load(dir.path()) {
            Ok(_) => panic!("{want}: loaded"),
            Err(e) => format!("{e:#}"),
        };
        assert!(msg.contains(want), "{want}: {msg}");
    }
}
