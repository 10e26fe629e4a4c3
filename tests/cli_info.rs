//! What users reach for: `gpt info`, `gpt models`, `gpt tokenize --decode`,
//! `--quiet`, and counts that read right (no noise for zero samples, plurals).

use gpt::model::{Gpt, GptConfig, Init};
use gpt::tokenizer::CharTokenizer;
use std::collections::HashMap;
use std::path::Path;
use std::process::{Command, Output, Stdio};

mod common;
use common::{fails_with, succeeds};

const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";

fn gpt_env(cache: &Path, args: &[&str], stdin: &str) -> Output {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_gpt"))
        .env("HF_HUB_CACHE", cache)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

fn stdout(out: Output) -> String {
    String::from_utf8(succeeds(out).stdout).unwrap()
}

fn gguf(name: &str) -> String {
    format!("{}/tests/golden/gguf_models/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// A tiny random GPT-2 saved as `org/tiny` in the cache `dir/hub`; returns the cache.
fn cached_tiny_gpt2(dir: &Path) -> std::path::PathBuf {
    let cache = dir.join("hub");
    let repo = cache.join("models--org--tiny");
    Gpt::new(
        GptConfig::gpt2(50257, 16, 8, 2, 1),
        Init::Normal(0.5),
        &mut gpt::tensor::rng(1),
    )
    .save(&repo.join("snapshots").join(COMMIT))
    .unwrap();
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::write(repo.join("refs/main"), COMMIT).unwrap();
    cache
}

#[test]
fn info_describes_runs_hub_models_and_gguf_files() {
    let dir = tempfile::tempdir().unwrap();
    let cache = cached_tiny_gpt2(dir.path());
    // A run directory: a character model saved at step 3.
    let run = dir.path().join("run");
    let chars = CharTokenizer::from_docs(&["anna", "bob"]);
    chars.save(&run).unwrap();
    let model = Gpt::new(
        GptConfig::gpt2(chars.vocab_size(), 8, 16, 2, 1),
        Init::Normal(0.3),
        &mut gpt::tensor::rng(2),
    );
    model
        .save_with(&run, HashMap::from([("step".to_string(), "3".to_string())]))
        .unwrap();
    let info = stdout(gpt_env(&cache, &["info", run.to_str().unwrap()], ""));
    for want in [
        "architecture:  gpt2".to_string(),
        format!("parameters:    {} ", model.params.count()),
        "layers:        1".to_string(),
        "context:       8 tokens".to_string(),
        "dtype:         F32".to_string(),
        format!("tokenizer:     char ({} ids)", chars.vocab_size()),
        "trained steps: 3".to_string(),
        "size on disk:".to_string(),
    ] {
        assert!(info.contains(&want), "{want:?} not in\n{info}");
    }
    let json: serde_json::Value =
        serde_json::from_str(&stdout(gpt_env(&cache, &["info", "--json", "org/tiny"], ""))).unwrap();
    assert_eq!(json["architecture"], "gpt2");
    assert_eq!(json["n_ctx"], 16);
    assert_eq!(json["step"], serde_json::Value::Null);
    assert!(json["path"].as_str().unwrap().ends_with(COMMIT));
    let info = stdout(gpt_env(&cache, &["info", &gguf("gqa_tied_q8_0.gguf")], ""));
    for want in [
        "architecture:  llama",
        "heads:         4 (2 key/value)",
        "Q8_0 (",
        "chat template",
    ] {
        assert!(info.contains(want), "{want:?} not in\n{info}");
    }
    fails_with(&gpt_env(&cache, &["info", "no/such/dir/x"], ""), "does not exist");
}

#[test]
fn a_gguf_file_is_a_model_to_every_command() {
    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().join("t.txt");
    std::fs::write(&text, "hello world hello world").unwrap();
    let (m, t) = (gguf("gpt2.gguf"), text.to_str().unwrap());
    let cache = dir.path().join("hub");
    for args in [
        vec!["tokenize", "--model", &m, "--count", t],
        vec!["generate", "--model", &m, "-n", "2", "hi"],
        vec!["eval", "--model", &m, "--data", t],
        vec!["sample", "--model", &m, "--num-samples", "1"],
        vec!["info", &m],
    ] {
        succeeds(gpt_env(&cache, &args, ""));
    }
}

#[test]
fn models_lists_the_cache() {
    let dir = tempfile::tempdir().unwrap();
    let empty = gpt_env(&dir.path().join("none"), &["models"], "");
    assert!(empty.status.success() && empty.stdout.is_empty());
    assert!(String::from_utf8_lossy(&empty.stderr).contains("gpt download"));
    let cache = cached_tiny_gpt2(dir.path());
    let list = stdout(gpt_env(&cache, &["models"], ""));
    assert!(
        list.starts_with("org/tiny ") && list.contains("main@01234567") && list.contains(" MB"),
        "{list}"
    );
    let json: serde_json::Value = serde_json::from_str(&stdout(gpt_env(&cache, &["models", "--json"], ""))).unwrap();
    assert_eq!(json["name"], "org/tiny");
    assert_eq!(json["refs"]["main"], COMMIT);
    assert!(json["bytes"].as_u64().unwrap() > 0);
}

#[test]
fn tokenize_decode_gives_back_the_text() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("hub");
    let text = "Héllo, wörld!\n\tTabs and emoji 🦀 too.\n";
    let ids = stdout(gpt_env(&cache, &["tokenize", "-"], text));
    assert_eq!(stdout(gpt_env(&cache, &["tokenize", "--decode"], &ids)), text);
    assert_eq!(
        stdout(gpt_env(&cache, &["tokenize", "--decode", "-"], "15496 995")),
        "Hello world"
    );
    let run = dir.path().join("chars");
    CharTokenizer::from_docs(&["anna", "bob"]).save(&run).unwrap();
    let m = run.to_str().unwrap();
    let ids = stdout(gpt_env(&cache, &["tokenize", "--model", m, "-"], "banana"));
    assert_eq!(
        stdout(gpt_env(&cache, &["tokenize", "--model", m, "--decode"], &ids)),
        "banana"
    );
    fails_with(&gpt_env(&cache, &["tokenize", "--decode"], "[1, x]"), "--decode");
    fails_with(
        &gpt_env(&cache, &["tokenize", "--decode"], "[99999999]"),
        "outside the vocabulary",
    );
}

#[test]
fn quiet_leaves_results_only_and_counts_read_right() {
    let dir = tempfile::tempdir().unwrap();
    let cache = cached_tiny_gpt2(dir.path());
    let text = dir.path().join("t.txt");
    std::fs::write(&text, "Hello world").unwrap();
    let t = text.to_str().unwrap();
    let data = dir.path().join("data");
    let d = data.to_str().unwrap();
    for args in [
        vec!["generate", "--model", "org/tiny", "-n", "40", "--quiet", "Hi"],
        vec!["eval", "--model", "org/tiny", "--data", t, "-q"],
        vec!["prepare", "--input", t, "--out", d, "--quiet"],
    ] {
        let out = succeeds(gpt_env(&cache, &args, ""));
        assert!(
            out.stderr.is_empty(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // "Hello world" is two tokens: one is scored.
    let eval = stdout(gpt_env(&cache, &["eval", "--model", "org/tiny", "--data", t], ""));
    assert!(eval.trim_end().ends_with("| 1 token"), "{eval}");
    let out = succeeds(gpt_env(
        &cache,
        &["generate", "--model", "org/tiny", "-n", "2", "Hi"],
        "",
    ));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("prefill 1 token in") && err.contains("decode 1 token in"),
        "{err}"
    );
}

#[test]
fn training_with_zero_samples_prints_no_sample_block() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("names.txt");
    std::fs::write(&data, "anna\nbob\ncarla\ndave\nemma\nfrank\ngina\nhugo\n").unwrap();
    let run = |samples: &str, out: &str| {
        let out = dir.path().join(out);
        let args = [
            "train",
            "--data",
            data.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--steps",
            "2",
            "--n-layer",
            "1",
            "--n-embd",
            "8",
            "--n-head",
            "2",
            "--batch-size",
            "2",
            "--num-samples",
            samples,
        ];
        stdout(gpt_env(dir.path(), &args, ""))
    };
    let none = run("0", "a");
    assert!(!none.contains("sample"), "{none}");
    let one = run("1", "b");
    assert!(
        one.contains("\n1 sample (temperature") && one.contains("of 1 "),
        "{one}"
    );
}
