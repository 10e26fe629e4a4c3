//! `gpt train --save-every / --stop-at / --resume / --init` end to end, and
//! the errors a resumed or fine-tuned run gives on input that does not fit.

use std::path::Path;
use std::process::Output;

mod common;
use common::{fails_with, gpt, s, succeeds};

/// A small run on the built-in names with dropout and gradient accumulation,
/// so that the data position, the dropout masks and AdamW's moments all matter.
fn names_run(out: &Path, extra: &[&str]) -> Output {
    let steps = if extra.contains(&"--steps") {
        &[][..]
    } else {
        &["--steps", "16"][..]
    };
    let mut args = vec!["train", "--out", s(out), "--n-layer", "2", "--n-embd", "16"];
    args.extend(steps);
    args.extend([
        "--batch-size",
        "8",
        "--grad-accum",
        "2",
        "--dropout",
        "0.1",
        "--num-samples",
        "1",
    ]);
    args.extend(["--eval-every", "0", "--warmup", "4"]);
    args.extend(extra);
    gpt(&args)
}

fn log_lines(dir: &Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(dir.join("log.jsonl")).unwrap();
    text.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

#[test]
fn stopped_and_resumed_run_equals_the_straight_run_bit_for_bit() {
    let tmp = tempfile::tempdir().unwrap();
    let (straight, halves) = (tmp.path().join("straight"), tmp.path().join("halves"));
    succeeds(names_run(&straight, &["--save-every", "4"]));
    succeeds(names_run(&halves, &["--stop-at", "8"]));
    assert!(halves.join("train_state-8.safetensors").is_file());
    let out = succeeds(gpt(&["train", "--resume", s(&halves), "--num-samples", "1"]));
    assert!(String::from_utf8_lossy(&out.stderr).contains("resuming"));

    // Every weight bit for bit (the files' headers may order their metadata differently).
    let weights = |d: &Path| gpt::model::Gpt::load(d).unwrap().params.tensors;
    let (w_straight, w_halves) = (weights(&straight), weights(&halves));
    let bits = |w: &[gpt::tensor::Tensor]| {
        w.iter()
            .flat_map(|t| t.data.iter().map(|x| x.to_bits()))
            .collect::<Vec<_>>()
    };
    assert!(bits(&w_straight) == bits(&w_halves), "final weights differ");
    let (a, b) = (log_lines(&straight), log_lines(&halves));
    assert_eq!(a.len(), 16);
    assert_eq!(b.len(), 16, "the resumed log continues the first half's");
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(
            (&x["step"], &x["train_loss"], &x["lr"]),
            (&y["step"], &y["train_loss"], &y["lr"])
        );
    }
    assert_eq!(a[15]["val_loss"], b[15]["val_loss"]);
    // Only the newest optimizer state is kept.
    let states: Vec<_> = std::fs::read_dir(&straight)
        .unwrap()
        .filter_map(|e| e.unwrap().file_name().into_string().ok())
        .filter(|n| n.starts_with("train_state-"))
        .collect();
    assert_eq!(states, ["train_state-16.safetensors"]);
}

#[test]
fn resume_refuses_what_does_not_belong_to_the_run() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("run");
    succeeds(names_run(&run, &["--stop-at", "4"]));
    let resume = |extra: &[&str]| {
        let mut args = vec!["train", "--resume", s(&run)];
        args.extend(extra);
        gpt(&args)
    };
    fails_with(
        &resume(&["--n-embd", "32", "--lr", "0.1"]),
        "--n-embd 32 (the run has 16)",
    );
    fails_with(&resume(&["--lr", "0.1"]), "--lr 0.1 (the run has 0.008)");
    let other = tmp.path().join("other.txt");
    std::fs::write(&other, "anna\nbob\ncarl\ndora\nemil\nfrida\n").unwrap();
    fails_with(&resume(&["--data", s(&other)]), "training data is not the run's");
    fails_with(&resume(&["--steps", "4"]), "give --steps above 4");
    fails_with(&resume(&["--out", s(&tmp.path().join("elsewhere"))]), "own directory");
    let empty = tmp.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    fails_with(&gpt(&["train", "--resume", s(&empty)]), "is not a resumable checkpoint");
    // A finished model without its optimizer state cannot resume, but can be fine-tuned.
    std::fs::remove_file(run.join("train_state-4.safetensors")).unwrap();
    fails_with(&resume(&[]), "train_state-4.safetensors is missing");
}

#[test]
fn fine_tuning_starts_from_the_checkpoint_and_lowers_the_loss_on_new_text() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path().join("base");
    succeeds(names_run(&base, &["--steps", "30"]));
    let new_text = tmp.path().join("new.txt");
    let words: Vec<String> = (0..200)
        .map(|i| format!("mar{}a", ["i", "y", "ie", "ia"][i % 4]))
        .collect();
    std::fs::write(&new_text, words.join("\n")).unwrap();
    let tuned = tmp.path().join("tuned");
    let eval = |model: &Path| -> f64 {
        let out = succeeds(gpt(&["eval", "--model", s(model), "--data", s(&new_text), "--json"]));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        v["loss"].as_f64().unwrap()
    };
    let before = eval(&base);
    let args = ["train", "--init", s(&base), "--data", s(&new_text), "--out", s(&tuned)];
    succeeds(gpt(&[
        &args[..],
        &["--steps", "40", "--lr", "0.01", "--num-samples", "1"],
    ]
    .concat()));
    // The first step scores the checkpoint's own weights (not a fresh model's).
    let first = log_lines(&tuned)[0]["train_loss"].as_f64().unwrap();
    assert!(
        (first - before).abs() < 0.3,
        "first step {first} vs the checkpoint's {before}"
    );
    let after = eval(&tuned);
    assert!(
        after < before - 0.5,
        "fine-tuning should fit the new names: {before} -> {after}"
    );
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(tuned.join("config.json")).unwrap()).unwrap();
    assert_eq!(
        (config["n_layer"].as_u64(), config["n_embd"].as_u64()),
        (Some(2), Some(16))
    );

    // --overwrite: `tuned` holds the run above (which a failed start leaves alone).
    fails_with(
        &gpt(&[&args[..], &["--n-ctx", "500", "--overwrite"]].concat()),
        "larger than the checkpoint's n_ctx",
    );
    fails_with(
        &gpt(&[&args[..], &["--n-layer", "3", "--overwrite"]].concat()),
        "brings its own size",
    );
    fails_with(&gpt(&["train", "--init", s(&tmp.path().join("nope"))]), "nope");
}

#[test]
fn validation_splits_that_are_empty_or_too_short_are_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let text = tmp.path().join("t.txt");
    std::fs::write(&text, "The quick brown fox jumps over the lazy dog. ".repeat(20)).unwrap();
    let out = tmp.path().join("run");
    let train = |data: &Path, extra: &[&str]| {
        let args = [
            "train",
            "--tokenizer",
            "gpt2",
            "--data",
            s(data),
            "--out",
            s(&out),
            "--steps",
            "2",
            "--overwrite",
        ];
        gpt(&[
            &args[..],
            &["--n-layer", "1", "--n-embd", "8", "--num-samples", "0"],
            extra,
        ]
        .concat())
    };
    // ~200 tokens: 10 % is too short for windows of 64.
    fails_with(&train(&text, &["--n-ctx", "64"]), "fewer than one window");
    succeeds(train(&text, &["--n-ctx", "64", "--val-fraction", "0"]));
    succeeds(train(&text, &["--n-ctx", "8"]));
    let prepared = tmp.path().join("prepared");
    let args = [
        "prepare",
        "--input",
        s(&text),
        "--out",
        s(&prepared),
        "--val-fraction",
        "0.01",
    ];
    succeeds(gpt(&args));
    fails_with(&train(&prepared, &["--n-ctx", "8"]), "validation split has");
}

#[test]
fn a_llama_fine_tunes_stops_and_resumes_bit_for_bit() {
    // A tiny Llama (grouped-query attention, tied embeddings) saved in Hugging Face's layout,
    // with a character tokenizer of the new text: one id per character and BOS.
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path().join("llama");
    let words: Vec<String> = (0..200)
        .map(|i| format!("mar{}a", ["i", "y", "ie", "ia"][i % 4]))
        .collect();
    let tok = gpt::tokenizer::CharTokenizer::from_docs(&words);
    let config = gpt::model::GptConfig {
        n_kv_head: 2,
        tie_word_embeddings: true,
        ..gpt::model::GptConfig::llama(tok.vocab_size(), 32, 32, 4, 2, 96)
    };
    let model = gpt::model::Gpt::new(config, gpt::model::Init::Gpt2, &mut gpt::tensor::rng(0));
    std::fs::create_dir(&base).unwrap();
    model.save(&base).unwrap();
    tok.save(&base).unwrap();
    let text = tmp.path().join("new.txt");
    std::fs::write(&text, words.join("\n")).unwrap();
    let eval = |model: &Path| -> f64 {
        let out = succeeds(gpt(&["eval", "--model", s(model), "--data", s(&text), "--json"]));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        v["loss"].as_f64().unwrap()
    };
    let tune = |out: &Path, extra: &[&str]| {
        let args = ["train", "--init", s(&base), "--data", s(&text), "--out", s(out)];
        let settings = ["--steps", "30", "--lr", "0.02", "--batch-size", "4", "--dropout", "0.1"];
        gpt(&[
            &args[..],
            &settings,
            &["--num-samples", "1", "--eval-every", "0"],
            extra,
        ]
        .concat())
    };
    let (straight, halves) = (tmp.path().join("straight"), tmp.path().join("halves"));
    succeeds(tune(&straight, &["--save-every", "10"]));
    succeeds(tune(&halves, &["--stop-at", "14"]));
    succeeds(gpt(&["train", "--resume", s(&halves), "--num-samples", "1"]));

    let bits = |d: &Path| {
        let model = gpt::model::Gpt::load(d).unwrap();
        assert_eq!(model.config.arch, gpt::model::Arch::Llama);
        model
            .params
            .tensors
            .iter()
            .flat_map(|t| t.data.clone())
            .map(f32::to_bits)
            .collect::<Vec<_>>()
    };
    assert!(bits(&straight) == bits(&halves), "final weights differ");
    // The first step scores the checkpoint's own weights, and training fits the new text.
    let (before, after) = (eval(&base), eval(&straight));
    let first = log_lines(&straight)[0]["train_loss"].as_f64().unwrap();
    assert!(
        (first - before).abs() < 0.3,
        "first step {first} vs the checkpoint's {before}"
    );
    assert!(
        after < before - 0.5,
        "fine-tuning should fit the new text: {before} -> {after}"
    );
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(straight.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["model_type"], "llama");
    assert_eq!(config["num_key_value_heads"], 2);
}

#[test]
fn ctrl_c_saves_a_checkpoint_that_resumes_bit_for_bit() {
    use std::process::{Command, Stdio};
    let tmp = tempfile::tempdir().unwrap();
    let (straight, stopped) = (tmp.path().join("straight"), tmp.path().join("stopped"));
    // Long enough that the signal comes mid-run.
    let steps = ["--steps", "400"];
    let mut args = vec!["train", "--out", s(&stopped), "--n-layer", "2", "--n-embd", "16"];
    args.extend(["--batch-size", "8", "--grad-accum", "2", "--dropout", "0.1"]);
    args.extend(["--num-samples", "1", "--eval-every", "0", "--warmup", "4"]);
    args.extend(steps);
    let child = Command::new(env!("CARGO_BIN_EXE_gpt"))
        .args(&args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let log = stopped.join("log.jsonl");
    let started = std::time::Instant::now();
    while std::fs::read_to_string(&log).map_or(0, |t| t.lines().count()) < 3 {
        assert!(started.elapsed().as_secs() < 60, "no steps logged");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    // SAFETY: kill only sends a signal to our own child.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGINT) }, 0);
    let out = child.wait_with_output().unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    let resume = format!("continue with: gpt train --resume {}", s(&stopped));
    assert!(stdout.contains(&resume), "{stdout}\n{stderr}");
    let lines = log_lines(&stopped);
    let step = lines.last().unwrap()["step"].as_u64().unwrap();
    assert!(step < 400, "the run ended before the signal");
    assert_eq!(lines.len() as u64, step, "one whole line per step");
    assert!(stopped.join(format!("train_state-{step}.safetensors")).is_file());

    // As if killed later (kill -9): steps past the checkpoint and half a line, which a resume drops.
    let mut text = std::fs::read_to_string(&log).unwrap();
    text.push_str(&format!("{{\"step\":{},\"train_loss\":1.0}}\n{{\"st", step + 1));
    std::fs::write(&log, text).unwrap();
    succeeds(gpt(&["train", "--resume", s(&stopped), "--num-samples", "1"]));
    succeeds(names_run(&straight, &steps));
    let bits = |d: &Path| {
        let model = gpt::model::Gpt::load(d).unwrap();
        model
            .params
            .tensors
            .iter()
            .flat_map(|t| t.data.clone())
            .map(f32::to_bits)
            .collect::<Vec<_>>()
    };
    assert!(bits(&straight) == bits(&stopped), "final weights differ");
    assert_eq!(log_lines(&stopped).len(), 400);
}

#[test]
fn fine_tuning_defaults_are_a_small_constant_rate_and_every_setting_is_shown_and_kept() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path().join("base");
    succeeds(names_run(&base, &["--steps", "30"]));
    let new_text = tmp.path().join("new.txt");
    let words: Vec<String> = (0..200)
        .map(|i| format!("mar{}a", ["i", "y", "ie", "ia"][i % 4]))
        .collect();
    std::fs::write(&new_text, words.join("\n")).unwrap();
    let tuned = tmp.path().join("tuned");
    let args = ["train", "--init", s(&base), "--data", s(&new_text), "--out", s(&tuned)];
    let out = succeeds(gpt(&[&args[..], &["--num-samples", "0"]].concat()));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("step 0/500 | val "), "the starting loss is shown: {err}");
    for want in ["lr 0.0003", "warmup 0", "decay constant", "steps 500", "batch_size 64"] {
        assert!(err.contains(want), "{want:?} missing: {err}");
    }
    let lrs: Vec<f64> = log_lines(&tuned).iter().map(|l| l["lr"].as_f64().unwrap()).collect();
    assert_eq!(lrs.len(), 500);
    assert!(
        lrs.iter().all(|&lr| (lr - 3e-4).abs() < 1e-9),
        "constant from the first step"
    );
    let run: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(tuned.join("run.json")).unwrap()).unwrap();
    assert_eq!(run["settings"]["steps"], 500);
    assert_eq!(run["settings"]["decay"], "constant");
    assert_eq!(run["settings"]["init"], s(&base));

    // A warmup as long as the run (names_run's is 4 steps) is named.
    let out = succeeds(names_run(&tmp.path().join("warm"), &["--steps", "4"]));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("warning: --warmup 4 is not below --steps 4"), "{err}");
}
