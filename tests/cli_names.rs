//! One way to name things: every subcommand that takes a model takes the
//! same forms (a path, a name in the Hugging Face cache), tokenizers are
//! named as models are, errors list the choices, and `-n` is the count of
//! new tokens (llama.cpp's) wherever a command has one.

use gpt::model::{Gpt, GptConfig, Init};
use std::path::Path;
use std::process::{Command, Output};

mod common;
use common::{fails_with, succeeds};

const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";

/// Runs `gpt args` with `cache` as the Hugging Face cache.
fn gpt_with_cache(cache: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_gpt"))
        .env("HF_HUB_CACHE", cache)
        .args(args)
        .output()
        .unwrap()
}

fn stdout(out: Output) -> String {
    String::from_utf8(succeeds(out).stdout).unwrap()
}

/// A tiny random GPT-2 (GPT-2's vocabulary, no tokenizer files) saved as `org/tiny` in a cache under `dir`.
fn cached_tiny_gpt2(dir: &Path) -> std::path::PathBuf {
    let cache = dir.join("hub");
    let repo = cache.join("models--org--tiny");
    let snapshot = repo.join("snapshots").join(COMMIT);
    Gpt::new(
        GptConfig::gpt2(50257, 16, 8, 2, 1),
        Init::Normal(0.5),
        &mut gpt::tensor::rng(1),
    )
    .save(&snapshot)
    .unwrap();
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::write(repo.join("refs/main"), COMMIT).unwrap();
    cache
}

#[test]
fn every_command_takes_a_model_by_path_or_cached_name() {
    let dir = tempfile::tempdir().unwrap();
    let cache = cached_tiny_gpt2(dir.path());
    let snapshot = cache.join("models--org--tiny/snapshots").join(COMMIT);
    let text = dir.path().join("t.txt");
    std::fs::write(&text, "Hello world, hello world.").unwrap();
    let text = text.to_str().unwrap();
    for model in ["org/tiny", snapshot.to_str().unwrap()] {
        let run = |args: &[&str]| stdout(gpt_with_cache(&cache, args));
        let count = run(&["tokenize", "--model", model, "--count", text]);
        assert_eq!(count.trim(), "6", "{model}");
        run(&["generate", "--model", model, "-n", "2", "Hi"]);
        run(&["eval", "--model", model, "--data", text]);
        let docs = run(&["sample", "--model", model, "--num-samples", "2", "--seed", "1"]);
        assert_eq!(docs.lines().filter(|l| *l == "---").count(), 1, "{model}: {docs}");
    }
}

#[test]
fn tokenize_takes_gpt2_by_name_without_a_download() {
    let dir = tempfile::tempdir().unwrap();
    let empty_cache = dir.path().join("hub");
    let text = dir.path().join("t.txt");
    std::fs::write(&text, "Not all heroes wear capes.").unwrap();
    let plain = stdout(gpt_with_cache(&empty_cache, &["tokenize", text.to_str().unwrap()]));
    let named = gpt_with_cache(&empty_cache, &["tokenize", "--model", "gpt2", text.to_str().unwrap()]);
    assert_eq!(stdout(named), plain);
    assert_eq!(plain, "[3673,477,10281,5806,1451,274,13]\n");
}

#[test]
fn unknown_tokenizers_are_errors_listing_the_choices() {
    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().join("t.txt");
    std::fs::write(&text, "some text to tokenize").unwrap();
    let text = text.to_str().unwrap();
    let out = dir.path().join("out");
    let out = out.to_str().unwrap();
    let gpt = |args: &[&str]| gpt_with_cache(&dir.path().join("hub"), args);
    for (args, flag) in [
        (
            vec!["prepare", "--tokenizer", "bpe", "--input", text, "--out", out],
            "--tokenizer bpe",
        ),
        (
            vec!["train", "--tokenizer", "bpe", "--data", text, "--out", out],
            "--tokenizer bpe",
        ),
        (vec!["tokenize", "--model", "bpe", text], "--model bpe"),
    ] {
        let got = gpt(&args);
        fails_with(&got, flag);
        for choice in ["gpt2", "vocab.json + merges.txt", "`gpt download`"] {
            fails_with(&got, choice);
        }
    }
    fails_with(
        &gpt(&["train", "--tokenizer", "bpe", "--data", text, "--out", out]),
        "char",
    );
    // A directory with neither a model nor a tokenizer is not GPT-2's tokenizer by default.
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    fails_with(
        &gpt(&["tokenize", "--model", empty.to_str().unwrap(), text]),
        "holds neither a model",
    );
}

#[test]
fn dash_n_is_the_new_token_count_and_samples_are_num_samples() {
    let dir = tempfile::tempdir().unwrap();
    let help = |cmd: &str| stdout(gpt_with_cache(dir.path(), &[cmd, "--help"]));
    for cmd in ["generate", "chat"] {
        assert!(help(cmd).contains("-n, --max-new-tokens"), "{cmd}");
    }
    let sample = help("sample");
    assert!(sample.contains("--num-samples") && !sample.contains("-n,"), "{sample}");
    // The old spelling still counts documents.
    let cache = cached_tiny_gpt2(dir.path());
    let docs = stdout(gpt_with_cache(&cache, &["sample", "--model", "org/tiny", "-n", "3"]));
    assert_eq!(docs.lines().filter(|l| *l == "---").count(), 2, "{docs}");
}
