//! Parameter-efficient fine-tuning end to end: `gpt train --init M
//! --train-layers N`, `--lora-rank R` and `--adapter-size H`: what trains,
//! what stays as it was, resuming, and the errors on flags and adapters that
//! do not fit.

use std::path::Path;
use std::process::Output;

mod common;
use common::{fails_with, gpt, names_base, read_npy, s, succeeds};

/// A small base model trained on the built-in names (3 blocks, 16 wide).
fn base(dir: &Path) {
    names_base(dir, 3, 10);
}

/// Fine-tunes `base` into `out` with `extra` flags.
fn tune(base: &Path, out: &Path, extra: &[&str]) -> Output {
    let mut args = vec![
        "train",
        "--init",
        s(base),
        "--out",
        s(out),
        "--steps",
        "8",
        "--batch-size",
        "8",
    ];
    args.extend(["--num-samples", "0", "--eval-every", "0", "--lr", "1e-2"]);
    args.extend(extra);
    gpt(&args)
}

fn weights(dir: &Path) -> Vec<(String, Vec<u32>)> {
    let p = gpt::model::Gpt::load(dir).unwrap().params;
    let bits = p.tensors.iter().map(|t| t.data.iter().map(|x| x.to_bits()).collect());
    p.names.into_iter().zip(bits).collect()
}

#[test]
fn train_layers_trains_the_last_blocks_and_head_and_resumes_exactly() {
    let tmp = tempfile::tempdir().unwrap();
    let (b, straight, halves) = (tmp.path().join("base"), tmp.path().join("a"), tmp.path().join("b"));
    base(&b);
    let out = succeeds(tune(&b, &straight, &["--train-layers", "1", "--save-every", "4"]));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("trainable ") && stderr.contains("%)"), "{stderr}");
    succeeds(tune(&b, &halves, &["--train-layers", "1", "--stop-at", "4"]));
    succeeds(gpt(&["train", "--resume", s(&halves), "--num-samples", "0"]));
    assert!(weights(&straight) == weights(&halves), "the resumed run differs");
    // The last block, the final norm and the head (tied: wte) moved; nothing else did.
    for ((name, before), (_, after)) in weights(&b).iter().zip(&weights(&straight)) {
        let trains = name.starts_with("h.2.") || name.starts_with("ln_f.") || name == "wte.weight";
        assert_eq!(before != after, trains, "{name}");
    }
    // The moments are those of the trainable tensors alone.
    let state = std::fs::read(straight.join("train_state-8.safetensors")).unwrap();
    let names: Vec<String> = safetensors::SafeTensors::deserialize(&state)
        .unwrap()
        .names()
        .into_iter()
        .map(String::from)
        .collect();
    assert!(
        !names.is_empty()
            && names
                .iter()
                .all(|n| n.starts_with("h.2.") || n.starts_with("ln_f.") || n.starts_with("wte.")),
        "{names:?}"
    );
    // A resume may not change what trains.
    fails_with(
        &gpt(&["train", "--resume", s(&halves), "--train-layers", "2", "--steps", "12"]),
        "--train-layers",
    );
}

#[test]
fn train_layers_beyond_the_model_or_without_init_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let b = tmp.path().join("base");
    base(&b);
    fails_with(
        &tune(&b, &tmp.path().join("x"), &["--train-layers", "4"]),
        "the model has 3 blocks",
    );
    fails_with(
        &gpt(&["train", "--train-layers", "1", "--out", s(&tmp.path().join("y"))]),
        "--init",
    );
}

/// The tensors of `dir/adapter_model.safetensors` by name, as bits.
fn adapter(dir: &Path) -> Vec<(String, Vec<usize>, Vec<u32>)> {
    let bytes = std::fs::read(dir.join("adapter_model.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut out: Vec<_> = st
        .tensors()
        .into_iter()
        .map(|(name, v)| {
            let bits = v
                .data()
                .chunks_exact(4)
                .map(|b| u32::from_le_bytes(b.try_into().unwrap()));
            (name, v.shape().to_vec(), bits.collect())
        })
        .collect();
    out.sort();
    out
}

#[test]
fn lora_trains_an_adapter_in_peft_format_that_resumes_exactly_and_generates() {
    let tmp = tempfile::tempdir().unwrap();
    let (b, straight, halves) = (tmp.path().join("base"), tmp.path().join("a"), tmp.path().join("b"));
    base(&b);
    let lora = [
        "--lora-rank",
        "2",
        "--lora-alpha",
        "4",
        "--lora-targets",
        "c_attn,mlp.c_proj",
    ];
    let out = succeeds(tune(&b, &straight, &[&lora[..], &["--save-every", "4"]].concat()));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("--adapter"), "{stdout}");
    succeeds(tune(&b, &halves, &[&lora[..], &["--stop-at", "4"]].concat()));
    succeeds(gpt(&["train", "--resume", s(&halves), "--num-samples", "0"]));
    let (a1, a2) = (adapter(&straight), adapter(&halves));
    assert!(a1 == a2, "the resumed adapter differs");
    // peft's names and shapes: A [r, in], B [out, r], on the targeted layers of every block.
    let names: Vec<(&str, &[usize])> = a1.iter().map(|(n, s, _)| (n.as_str(), &s[..])).collect();
    assert_eq!(
        names,
        [
            (
                "base_model.model.transformer.h.0.attn.c_attn.lora_A.weight",
                &[2, 16][..]
            ),
            (
                "base_model.model.transformer.h.0.attn.c_attn.lora_B.weight",
                &[48, 2][..]
            ),
            (
                "base_model.model.transformer.h.0.mlp.c_proj.lora_A.weight",
                &[2, 64][..]
            ),
            (
                "base_model.model.transformer.h.0.mlp.c_proj.lora_B.weight",
                &[16, 2][..]
            ),
            (
                "base_model.model.transformer.h.1.attn.c_attn.lora_A.weight",
                &[2, 16][..]
            ),
            (
                "base_model.model.transformer.h.1.attn.c_attn.lora_B.weight",
                &[48, 2][..]
            ),
            (
                "base_model.model.transformer.h.1.mlp.c_proj.lora_A.weight",
                &[2, 64][..]
            ),
            (
                "base_model.model.transformer.h.1.mlp.c_proj.lora_B.weight",
                &[16, 2][..]
            ),
            (
                "base_model.model.transformer.h.2.attn.c_attn.lora_A.weight",
                &[2, 16][..]
            ),
            (
                "base_model.model.transformer.h.2.attn.c_attn.lora_B.weight",
                &[48, 2][..]
            ),
            (
                "base_model.model.transformer.h.2.mlp.c_proj.lora_A.weight",
                &[2, 64][..]
            ),
            (
                "base_model.model.transformer.h.2.mlp.c_proj.lora_B.weight",
                &[16, 2][..]
            ),
        ]
    );
    // B started at zero and trained.
    assert!(a1
        .iter()
        .filter(|(n, _, _)| n.contains("lora_B"))
        .all(|(_, _, bits)| bits.iter().any(|&x| x != 0)));
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(straight.join("adapter_config.json")).unwrap()).unwrap();
    assert_eq!(config["r"], 2);
    assert_eq!(config["lora_alpha"], 4.0);
    assert_eq!(config["fan_in_fan_out"], true);
    assert_eq!(config["target_modules"], serde_json::json!(["c_attn", "mlp.c_proj"]));
    assert!(
        !straight.join("model.safetensors").exists(),
        "a LoRA run saves the adapter, not the model"
    );
    // The base is untouched, and runs with the adapter (which changes its scores).
    let eval = |extra: &[&str]| {
        let mut args = vec!["eval", "--model", s(&b), "--json", "--data", "data/names.txt"];
        args.extend(extra);
        let out = succeeds(gpt(&args));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        v["loss"].as_f64().unwrap()
    };
    assert_ne!(eval(&[]), eval(&["--adapter", s(&straight)]));
}

#[test]
fn lora_flags_that_do_not_fit_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let b = tmp.path().join("base");
    base(&b);
    let x = tmp.path().join("x");
    fails_with(&tune(&b, &x, &["--lora-rank", "0"]), "--lora-rank 0");
    fails_with(
        &tune(&b, &x, &["--lora-rank", "2", "--lora-targets", "q_proj"]),
        "no layer of this model",
    );
    fails_with(&tune(&b, &x, &["--lora-rank", "2", "--lora-alpha=-1"]), "--lora-alpha");
    fails_with(
        &tune(&b, &x, &["--lora-rank", "2", "--train-layers", "1"]),
        "--train-layers",
    );
    fails_with(&gpt(&["train", "--lora-rank", "2", "--out", s(&x)]), "--init");
}

#[test]
fn lora_dropout_draws_seeded_masks_that_a_resume_repeats() {
    let tmp = tempfile::tempdir().unwrap();
    let b = tmp.path().join("base");
    base(&b);
    let run = |name: &str, extra: &[&str]| {
        let out = tmp.path().join(name);
        succeeds(tune(&b, &out, &[&["--lora-rank", "2"][..], extra].concat()));
        out
    };
    let straight = run("a", &["--lora-dropout", "0.3"]);
    let halves = run("b", &["--lora-dropout", "0.3", "--stop-at", "4"]);
    succeeds(gpt(&["train", "--resume", s(&halves), "--num-samples", "0"]));
    assert!(
        adapter(&straight) == adapter(&halves),
        "the resumed run drew other masks"
    );
    assert!(adapter(&straight) != adapter(&run("c", &[])), "dropout changed nothing");
    let config = std::fs::read_to_string(straight.join("adapter_config.json")).unwrap();
    assert!(config.contains("\"lora_dropout\": 0.3"), "{config}");
}

/// QLoRA: a LoRA run on a quantized GGUF base (the tiny Llama in Q8_0) keeps
/// its frozen matrices quantized and trains as on their dequantized values
/// (the same losses within f32 summation error), resumes exactly, and a run
/// that trains the matrices themselves dequantizes them into a directory
/// that stands alone.
#[test]
fn qlora_trains_on_quantized_weights_as_on_their_dequantized_values() {
    let tmp = tempfile::tempdir().unwrap();
    let quantized = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/gguf_models/llama_q8_0.gguf");
    let dequantized = tmp.path().join("f32.gguf");
    succeeds(gpt(&["quantize", s(&quantized), s(&dequantized), "--to", "f32"]));
    let data = tmp.path().join("text.txt");
    std::fs::write(&data, "The quick brown fox jumps over the lazy dog. ".repeat(200)).unwrap();
    let run = |base: &Path, out: &Path, extra: &[&str]| {
        let mut args = vec![
            "train",
            "--init",
            s(base),
            "--data",
            s(&data),
            "--out",
            s(out),
            "--steps",
            "6",
        ];
        args.extend([
            "--batch-size",
            "4",
            "--n-ctx",
            "32",
            "--lr",
            "1e-2",
            "--num-samples",
            "0",
            "-q",
        ]);
        args.extend(extra);
        succeeds(gpt(&args));
    };
    let losses = |out: &Path| -> Vec<f64> {
        let log = std::fs::read_to_string(out.join("log.jsonl")).unwrap();
        let lines = log
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap());
        lines.filter_map(|v| v["train_loss"].as_f64()).collect()
    };
    let (q, f, halves) = (tmp.path().join("q"), tmp.path().join("f"), tmp.path().join("h"));
    run(&quantized, &q, &["--lora-rank", "4"]);
    run(&dequantized, &f, &["--lora-rank", "4"]);
    let (lq, lf) = (losses(&q), losses(&f));
    assert_eq!(lq.len(), 6);
    for (a, b) in lq.iter().zip(&lf) {
        assert!(
            (a - b).abs() <= 1e-4 * b.abs(),
            "quantized {lq:?} vs dequantized {lf:?}"
        );
    }
    assert!(lq[5] < lq[0], "it learns: {lq:?}");
    // The frozen matrices are quantized while LoRA's train, and only LoRA's get gradients.
    let mut m = gpt::model::load(s(&quantized), &Default::default()).unwrap().model;
    let spec = gpt::model::LoraSpec {
        r: 4,
        alpha: 8.0,
        dropout: 0.0,
        targets: vec!["q_proj".into(), "v_proj".into()],
        base: String::new(),
    };
    m.add_lora(&spec, &mut gpt::tensor::rng(0)).unwrap();
    assert!(m.params.quant.iter().filter(|q| q.is_some()).count() >= 7);
    let mut g = gpt::autograd::Graph::new(&m.params, Default::default());
    let logits = m.forward(&mut g, &[1, 2, 3, 4], &[0, 1, 2, 3], 1, None);
    let loss = g.cross_entropy(logits, &[2, 3, 4, 5]);
    let mut grads = m.params.zero_grads();
    g.backward(loss, &mut grads);
    for ((name, grad), q) in m.params.names.iter().zip(&grads.0).zip(&m.params.quant) {
        assert_eq!(name.contains("lora"), !grad.is_empty(), "{name}");
        assert!(!name.contains("lora") || q.is_none(), "{name}");
    }
    assert!(grads.0.iter().flatten().any(|&x| x != 0.0));
    run(&quantized, &halves, &["--lora-rank", "4", "--stop-at", "3"]);
    succeeds(gpt(&["train", "--resume", s(&halves), "--num-samples", "0", "-q"]));
    assert!(adapter(&q) == adapter(&halves), "the resumed adapter differs");
    // Training the last block itself: its directory holds f32 weights of its own.
    let layers = tmp.path().join("layers");
    run(&quantized, &layers, &["--train-layers", "1", "--stop-at", "2"]);
    let model = gpt::model::Gpt::load(&layers).unwrap();
    assert!(model.params.quant.iter().all(Option::is_none));
    assert!(model.params.tensors.iter().all(|t| t.data.len() == t.numel()));
}

/// The logits of `tokens` (one sequence) through `model`, full forward.
fn full_logits(model: &gpt::model::Gpt, tokens: &[u32]) -> Vec<f32> {
    let pos: Vec<u32> = (0..tokens.len() as u32).collect();
    let mut g = gpt::autograd::Graph::inference(&model.params, gpt::autograd::Workspace::default());
    let logits = model.forward(&mut g, tokens, &pos, 1, None);
    g.value(logits).to_vec()
}

#[test]
fn bottleneck_adapters_train_alone_resume_exactly_and_run_with_the_trained_logits() {
    let tmp = tempfile::tempdir().unwrap();
    let (b, straight, halves) = (tmp.path().join("base"), tmp.path().join("a"), tmp.path().join("b"));
    base(&b);
    let out = succeeds(tune(&b, &straight, &["--adapter-size", "4", "--save-every", "4"]));
    // 3 blocks x 2 adapters x (down 4x16 + 4, up 16x4 + 16).
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("trainable 888 of "), "{stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("bottleneck adapters: gpt generate --model") && stdout.contains("--adapter"),
        "{stdout}"
    );
    succeeds(tune(&b, &halves, &["--adapter-size", "4", "--stop-at", "4"]));
    succeeds(gpt(&["train", "--resume", s(&halves), "--num-samples", "0"]));
    let trained = adapter(&straight);
    assert!(trained == adapter(&halves), "the resumed adapters differ");
    // A resume may not change the adapters' width.
    fails_with(
        &gpt(&["train", "--resume", s(&halves), "--adapter-size", "8", "--steps", "12"]),
        "--adapter-size",
    );
    // Only the adapters are saved, named after the module whose output each adapts.
    let mut want = Vec::new();
    for i in 0..3 {
        for module in ["attn", "mlp"] {
            for (part, shape) in [("down.bias", vec![4]), ("down.weight", vec![4, 16])] {
                want.push((format!("transformer.h.{i}.{module}.adapter.{part}"), shape));
            }
            for (part, shape) in [("up.bias", vec![16]), ("up.weight", vec![16, 4])] {
                want.push((format!("transformer.h.{i}.{module}.adapter.{part}"), shape));
            }
        }
    }
    want.sort();
    let names: Vec<(String, Vec<usize>)> = trained.iter().map(|(n, s, _)| (n.clone(), s.clone())).collect();
    assert_eq!(names, want);
    // up started at zero and trained.
    assert!(trained
        .iter()
        .filter(|(n, _, _)| n.ends_with("up.weight"))
        .all(|(_, _, bits)| bits.iter().any(|&x| x != 0)));
    assert!(
        !straight.join("model.safetensors").exists(),
        "the run saves the adapters, not the model"
    );
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(straight.join("adapter_config.json")).unwrap()).unwrap();
    assert_eq!(config["adapter_type"], "bottleneck");
    assert_eq!(config["adapter_size"], 4);
    assert_eq!(config["non_linearity"], "relu");
    assert_eq!(config["base_model_name_or_path"], s(&b.canonicalize().unwrap()));

    // The trained run's model: the base with the trained tensors put in place by name.
    let mut model = gpt::model::Gpt::load(&b).unwrap();
    let spec = gpt::model::BottleneckSpec {
        size: 4,
        base: String::new(),
    };
    model.add_bottleneck_adapters(&spec, &mut gpt::tensor::rng(0)).unwrap();
    for (name, _, bits) in &trained {
        let id = model.params.find(name.strip_prefix("transformer.").unwrap()).unwrap();
        model.params.tensors[id.0].data = bits.iter().map(|&x| f32::from_bits(x)).collect();
    }
    // `gpt eval --adapter` scores "emma" (BOS e m m a, predicting e m m a and the end) with its logits.
    let data = tmp.path().join("one.txt");
    std::fs::write(&data, "emma\n").unwrap();
    let npy = tmp.path().join("logits.npy");
    let eval = |extra: &[&str]| {
        let args = [
            "eval",
            "--model",
            s(&b),
            "--data",
            s(&data),
            "--json",
            "--logits",
            s(&npy),
        ];
        succeeds(gpt(&[&args[..], extra].concat()));
        read_npy(&npy)
    };
    let tok = gpt::model::load_tokenizer(s(&b)).unwrap();
    let gpt::tokenizer::Tokenizer::Char(chars) = &tok else {
        panic!("a character model")
    };
    let tokens = [vec![chars.bos()], tok.encode("emma").unwrap()].concat();
    let want = full_logits(&model, &tokens);
    let got = eval(&["--adapter", s(&straight)]);
    assert_eq!(got.data.len(), want.len());
    let diff = got
        .data
        .iter()
        .zip(&want)
        .fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
    assert!(
        diff <= 1e-5,
        "eval --adapter's logits differ from the trained model's by {diff}"
    );
    assert!(eval(&[]).data != got.data, "the adapters changed nothing");
    // generate --adapter decodes (KV cache) greedily as the trained model does (full forward).
    let args = [
        "generate",
        "--model",
        s(&b),
        "--adapter",
        s(&straight),
        "--temperature",
        "0",
    ];
    let out = succeeds(gpt(&[&args[..], &["-n", "4", "--json", "emma"]].concat()));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut seq = tokens.clone();
    for _ in 0..4 {
        let logits = full_logits(&model, &seq);
        let last = &logits[logits.len() - model.config.vocab_size..];
        let next = (0..last.len()).max_by(|&i, &j| last[i].total_cmp(&last[j])).unwrap();
        seq.push(next as u32);
    }
    assert_eq!(v["tokens"], serde_json::json!(seq[tokens.len()..]), "{v}");

    // They cannot be folded in; a base of another shape, or another kind of adapter, is refused.
    let merged = tmp.path().join("merged");
    fails_with(
        &gpt(&[
            "merge",
            "--model",
            s(&b),
            "--adapter",
            s(&straight),
            "--out",
            s(&merged),
        ]),
        "not linear",
    );
    let other = tmp.path().join("other");
    names_base(&other, 2, 2);
    let err = gpt(&[
        "eval",
        "--model",
        s(&other),
        "--adapter",
        s(&straight),
        "--data",
        s(&data),
    ]);
    fails_with(&err, "trained for another base model");
    fails_with(&err, s(&b.canonicalize().unwrap()));
    let text = std::fs::read_to_string(straight.join("adapter_config.json")).unwrap();
    std::fs::write(straight.join("adapter_config.json"), text.replace("relu", "swish")).unwrap();
    let err = gpt(&["eval", "--model", s(&b), "--adapter", s(&straight), "--data", s(&data)]);
    fails_with(&err, "non_linearity \"swish\"");
}

#[test]
fn bottleneck_flags_that_do_not_fit_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let b = tmp.path().join("base");
    names_base(&b, 1, 2);
    let x = tmp.path().join("x");
    fails_with(&tune(&b, &x, &["--adapter-size", "0"]), "--adapter-size 0");
    fails_with(&tune(&b, &x, &["--adapter-size", "17"]), "the model's width 16");
    for other in [["--lora-rank", "2"], ["--train-layers", "1"]] {
        let out = tune(&b, &x, &[&["--adapter-size", "2"][..], &other].concat());
        fails_with(&out, "cannot be used with");
        fails_with(&out, other[0]);
    }
    fails_with(&gpt(&["train", "--adapter-size", "2", "--out", s(&x)]), "--init");
    assert!(!x.exists(), "a refused run wrote nothing");
}
