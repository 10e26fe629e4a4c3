//! Parameter-efficient fine-tuning end to end: `gpt train --init M
//! --train-layers N` and `--lora-rank R`: what trains, what stays as it was,
//! resuming, and the errors on flags that do not fit.

use std::path::Path;
use std::process::Output;

mod common;
use common::{fails_with, gpt, succeeds};

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A small base model trained on the built-in names (3 blocks, 16 wide).
fn base(dir: &Path) {
    succeeds(gpt(&[
        "train",
        "--out",
        s(dir),
        "--n-layer",
        "3",
        "--n-embd",
        "16",
        "--steps",
        "10",
        "--num-samples",
        "0",
        "-q",
    ]));
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
