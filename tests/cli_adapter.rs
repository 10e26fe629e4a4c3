//! `--adapter DIR`: generate and eval run a peft LoRA adapter beside the
//! model, unmerged, on f32 and quantized weights, and `gpt merge` folds it
//! in; an adapter whose B is zero changes nothing, one trained for another
//! model is refused.

use gpt::model::{Gpt, GptConfig, Init};
use gpt::tensor::{rng, Tensor};
use std::path::Path;

mod common;
use common::{fails_with, gpt, succeeds};

/// A tiny random GPT-2 (full vocabulary, 32 wide so that it quantizes); GPT-2's BPE applies.
fn tiny_gpt2(dir: &Path) {
    let model = Gpt::new(GptConfig::gpt2(50257, 32, 32, 2, 1), Init::Normal(0.5), &mut rng(1));
    model.save(dir).unwrap();
}

/// A rank-2 adapter of `c_attn` and `c_fc` for a model `width` wide, as peft
/// saves it; `b_std` 0 gives the zero B peft starts from.
fn adapter(dir: &Path, width: usize, b_std: f32) {
    let r = 2;
    let mut tensors = Vec::new();
    for (module, out) in [("attn.c_attn", 3 * width), ("mlp.c_fc", 4 * width)] {
        let name = format!("base_model.model.transformer.h.0.{module}");
        let a = Tensor::randn(&[r, width], 0.5, &mut rng(2));
        let b = Tensor::randn(&[out, r], b_std, &mut rng(3));
        tensors.push((format!("{name}.lora_A.weight"), a));
        tensors.push((format!("{name}.lora_B.weight"), b));
    }
    let bytes: Vec<(String, Vec<u8>, Vec<usize>)> = tensors
        .into_iter()
        .map(|(n, t)| (n, t.data.iter().flat_map(|x| x.to_le_bytes()).collect(), t.shape))
        .collect();
    let views: Vec<(String, safetensors::tensor::TensorView)> = bytes
        .iter()
        .map(|(n, b, s)| {
            (
                n.clone(),
                safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), b).unwrap(),
            )
        })
        .collect();
    std::fs::create_dir_all(dir).unwrap();
    safetensors::serialize_to_file(views, None, &dir.join("adapter_model.safetensors")).unwrap();
    let config = serde_json::json!({
        "peft_type": "LORA", "r": r, "lora_alpha": 4, "target_modules": ["c_attn", "c_fc"],
        "fan_in_fan_out": true, "bias": "none", "base_model_name_or_path": "tiny",
    });
    std::fs::write(dir.join("adapter_config.json"), config.to_string()).unwrap();
}

fn eval_loss(args: &[&str]) -> f64 {
    let out = succeeds(gpt(args));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v["loss"].as_f64().unwrap()
}

#[test]
fn adapters_change_eval_and_generate_and_a_zero_b_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let (model, zero, trained) = (tmp.path().join("m"), tmp.path().join("zero"), tmp.path().join("lora"));
    tiny_gpt2(&model);
    adapter(&zero, 32, 0.0);
    adapter(&trained, 32, 1.0);
    let data = tmp.path().join("text.txt");
    std::fs::write(&data, "The quick brown fox jumps over the lazy dog. ".repeat(4)).unwrap();
    let (m, d) = (model.to_str().unwrap(), data.to_str().unwrap());
    let eval = |extra: &[&str]| eval_loss(&[&["eval", "--model", m, "--data", d, "--json"], extra].concat());
    let base = eval(&[]);
    assert_eq!(eval(&["--adapter", zero.to_str().unwrap()]), base);
    let adapted = eval(&["--adapter", trained.to_str().unwrap()]);
    assert!(
        (adapted - base).abs() > 1e-3,
        "the adapter changed the loss by {}",
        adapted - base
    );
    // On Q8_0 weights the adapter stays f32 beside them: close to the f32 figure.
    let q8 = eval(&["--adapter", trained.to_str().unwrap(), "--dtype", "q8_0"]);
    assert!(
        (q8 - adapted).abs() < 0.05 * adapted.abs(),
        "q8_0 {q8} vs f32 {adapted}"
    );

    let generate = |extra: &[&str]| {
        let args = [
            &[
                "generate",
                "--model",
                m,
                "--temperature",
                "0",
                "-n",
                "12",
                "--json",
                "Hello",
            ],
            extra,
        ]
        .concat();
        let v: serde_json::Value = serde_json::from_slice(&succeeds(gpt(&args)).stdout).unwrap();
        v["tokens"].clone()
    };
    assert_eq!(generate(&["--adapter", zero.to_str().unwrap()]), generate(&[]));

    // `gpt merge` folds it in: the merged model alone scores as the base with the adapter.
    let merged = tmp.path().join("merged");
    let merge = |extra: &[&str]| {
        let args = [
            &[
                "merge",
                "--model",
                m,
                "--adapter",
                trained.to_str().unwrap(),
                "--out",
                merged.to_str().unwrap(),
            ],
            extra,
        ]
        .concat();
        gpt(&args)
    };
    succeeds(merge(&[]));
    let loss = eval_loss(&["eval", "--model", merged.to_str().unwrap(), "--data", d, "--json"]);
    assert!(
        (loss - adapted).abs() < 1e-5 * adapted.abs(),
        "merged {loss} vs adapter {adapted}"
    );
    fails_with(&merge(&[]), "--overwrite");
    succeeds(merge(&["--overwrite"]));
}

#[test]
fn an_adapter_for_another_model_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let (model, other) = (tmp.path().join("m"), tmp.path().join("other"));
    tiny_gpt2(&model);
    adapter(&other, 64, 1.0);
    let out = gpt(&[
        "generate",
        "--model",
        model.to_str().unwrap(),
        "--adapter",
        other.to_str().unwrap(),
        "Hi",
    ]);
    fails_with(&out, "another base model (tiny, says its adapter_config.json)");
    let missing = tmp.path().join("none");
    let out = gpt(&[
        "generate",
        "--model",
        model.to_str().unwrap(),
        "--adapter",
        missing.to_str().unwrap(),
        "Hi",
    ]);
    fails_with(&out, "adapter_config.json");
}
