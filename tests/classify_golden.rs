//! Sequence classifiers against `transformers` (tests/golden/classify/, made
//! by scripts/gen_classify_golden.py): a GPT2ForSequenceClassification and a
//! LlamaForSequenceClassification directory load as classifiers with the
//! same logits on right-padded texts (each read at its last real token), and
//! ten AdamW steps of `train_step` on batches of labelled texts match
//! PyTorch's losses and trained weights.

mod common;
use common::golden::Optimizer;
use gpt::autograd::{Graph, Workspace};
use gpt::data::batch::Batch;
use gpt::model::Gpt;
use gpt::tensor::cross_entropy::IGNORE;
use gpt::train::dist::Single;
use gpt::train::optim::AdamW;
use gpt::train::{train_step, StepBuffers};
use serde::Deserialize;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

const LOGIT_TOL: f32 = 1e-4;
const LOSS_TOL: f64 = 1e-4;
const PARAM_TOL: f32 = 1e-5;

#[derive(Deserialize)]
struct Golden {
    labels: Vec<String>,
    pad_token_id: u32,
    optimizer: Optimizer,
    batches: Vec<Vec<Text>>,
    runs: HashMap<String, Run>,
}

#[derive(Deserialize)]
struct Text {
    ids: Vec<u32>,
    label: u32,
}

#[derive(Deserialize)]
struct Run {
    /// The start's logits on the first batch, by `transformers` in float32.
    logits: Vec<Vec<f32>>,
    losses: Vec<f64>,
}

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/classify")
}

fn golden() -> Golden {
    serde_json::from_str(&std::fs::read_to_string(dir().join("golden.json")).unwrap()).unwrap()
}

/// Texts right-padded to the longest as `transformers` got them: a batch
/// whose only targets are the labels, at each text's last token.
fn batch(texts: &[Text], pad: u32) -> Batch {
    let t = texts.iter().map(|x| x.ids.len()).max().unwrap();
    let mut b = Batch {
        tokens: vec![pad; texts.len() * t],
        targets: vec![IGNORE; texts.len() * t],
        pos: (0..texts.len() * t).map(|i| (i % t) as u32).collect(),
        b: texts.len(),
        t,
        n_tokens: texts.iter().map(|x| x.ids.len()).sum(),
    };
    for (r, x) in texts.iter().enumerate() {
        b.tokens[r * t..r * t + x.ids.len()].copy_from_slice(&x.ids);
        b.targets[r * t + x.ids.len() - 1] = x.label;
    }
    b
}

fn check_logits(name: &str) -> f32 {
    let g = golden();
    let model = Gpt::load(&dir().join(name)).unwrap();
    assert_eq!(model.config.labels, g.labels);
    assert_eq!(model.config.pad_token_id, Some(g.pad_token_id));
    let b = batch(&g.batches[0], g.pad_token_id);
    let rows: Vec<usize> = (0..b.targets.len()).filter(|&i| b.targets[i] != IGNORE).collect();
    let mut graph = Graph::inference(&model.params, Workspace::default());
    let logits = model.classify(&mut graph, &b.tokens, &b.pos, b.b, &rows);
    let got = graph.value(logits);
    let want: Vec<f32> = g.runs[name].logits.concat();
    assert_eq!(got.len(), want.len());
    let worst = got.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
    eprintln!("{name}: max |logit - transformers'| = {worst:e}");
    assert!(worst <= LOGIT_TOL, "{name}: logits differ by {worst}");
    worst
}

/// The attention keys' bias of GPT-2's fused projection (elements
/// `n_embd..2 n_embd`): its gradient is zero in exact arithmetic, so after
/// Adam its value is float noise in PyTorch as in ours (see train_golden.rs).
fn is_key_bias(name: &str, i: usize, n_embd: usize) -> bool {
    name.ends_with("attn.c_attn.bias") && (n_embd..2 * n_embd).contains(&i)
}

fn check_training(name: &str) -> (f64, f32) {
    let g = golden();
    let run = &g.runs[name];
    let mut model = Gpt::load(&dir().join(name)).unwrap();
    let want = Gpt::load(&dir().join(format!("{name}_trained"))).unwrap();
    let steps: Vec<Batch> = g.batches.iter().map(|b| batch(b, g.pad_token_id)).collect();
    let opts = g.optimizer.options(steps.len(), steps[0].b, model.config.n_ctx, 1);
    let mut opt = AdamW::new(opts.adamw, &model.params);
    let mut grads = model.params.zero_grads();
    let mut bufs = StepBuffers::default();
    let mut loss_max_rel = 0.0f64;
    for (step, b) in steps.iter().enumerate() {
        let micro = std::slice::from_ref(b);
        let first = (step * b.b) as u64;
        let lr = opts.schedule.lr_at(step);
        let loss = train_step(
            &mut model, &mut opt, &mut grads, &mut bufs, micro, first, lr, &opts, &Single,
        )
        .expect("a finite step")
        .loss;
        let rel = (loss as f64 - run.losses[step]).abs() / run.losses[step];
        assert!(
            rel <= LOSS_TOL,
            "{name}: step {step}: loss {loss} vs PyTorch {}",
            run.losses[step]
        );
        loss_max_rel = loss_max_rel.max(rel);
    }
    let n_embd = model.config.n_embd;
    let mut params_max_abs = 0.0f32;
    for (pname, t) in model.params.names.iter().zip(&model.params.tensors) {
        let w = &want.params.tensors[want.params.find(pname).unwrap().0];
        for (i, (a, b)) in t.data.iter().zip(&w.data).enumerate() {
            let d = (a - b).abs();
            if is_key_bias(pname, i, n_embd) {
                assert!(
                    d <= 10.0 * g.optimizer.lr * steps.len() as f32,
                    "{name}: key bias {pname}[{i}] off by {d}"
                );
            } else {
                params_max_abs = params_max_abs.max(d);
                assert!(d <= PARAM_TOL, "{name}: {pname}[{i}] is {a}, PyTorch's {b}");
            }
        }
    }
    eprintln!("{name}: losses within {loss_max_rel:e} relative, trained tensors within {params_max_abs:e}");
    (loss_max_rel, params_max_abs)
}

#[test]
fn transformers_gpt2_and_llama_classifiers_load_with_their_logits_on_padded_texts() {
    check_logits("gpt2");
    check_logits("llama");
}

#[test]
fn ten_adamw_steps_of_a_gpt2_classifier_match_pytorch() {
    check_training("gpt2");
}

#[test]
fn ten_adamw_steps_of_a_llama_classifier_match_pytorch() {
    check_training("llama");
}

#[test]
fn a_classifier_saves_as_transformers_names_it_and_loads_back() {
    let model = Gpt::load(&dir().join("gpt2")).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    model.save(tmp.path()).unwrap();
    let bytes = std::fs::read(tmp.path().join("model.safetensors")).unwrap();
    let names = safetensors::SafeTensors::deserialize(&bytes).unwrap().names().len();
    let header =
        String::from_utf8_lossy(&bytes[8..8 + u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize]).to_string();
    assert_eq!(names, model.params.tensors.len());
    assert!(
        header.contains("\"transformer.h.0.attn.c_attn.weight\"") && header.contains("\"score.weight\""),
        "{header}"
    );
    let back = Gpt::load(tmp.path()).unwrap();
    assert_eq!(back.config, model.config);
    assert_eq!(back.params.tensors, model.params.tensors);
    let text = std::fs::read_to_string(tmp.path().join("config.json")).unwrap();
    assert!(text.contains("GPT2ForSequenceClassification"), "{text}");
}
