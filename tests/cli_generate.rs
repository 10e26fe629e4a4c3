//! `gpt generate` and `gpt eval` end to end on a tiny model with GPT-2's vocabulary.

use gpt::model::{Gpt, GptConfig, Init};
use std::process::Output;

mod common;
use common::gpt;

fn ok(out: &Output) -> String {
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout.clone()).unwrap()
}

/// A tiny random GPT-2 (full vocabulary, 32 positions); no tokenizer files, so GPT-2's BPE applies.
fn tiny_gpt2() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let model = Gpt::new(
        GptConfig::gpt2(50257, 32, 8, 2, 1),
        Init::Normal(0.5),
        &mut gpt::tensor::rng(1),
    );
    model.save(dir.path()).unwrap();
    dir
}

#[test]
fn greedy_json_is_deterministic_and_complete() {
    let dir = tiny_gpt2();
    let m = dir.path().to_str().unwrap();
    let args = [
        "generate",
        "--model",
        m,
        "--temperature",
        "0",
        "-n",
        "5",
        "--json",
        "Hello world",
    ];
    let out = ok(&gpt(&args));
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["prompt_tokens"], 2); // "Hello", " world"
    assert!(v["tokens"].as_array().unwrap().len() <= 5);
    assert!(v["completion"].is_string() && v["timings"]["decode_ms"].is_number());
    let output = |args: &[&str]| {
        let v: serde_json::Value = serde_json::from_str(ok(&gpt(args)).trim()).unwrap();
        (v["tokens"].clone(), v["completion"].clone())
    };
    assert_eq!(
        output(&args),
        (v["tokens"].clone(), v["completion"].clone()),
        "greedy output changes between runs"
    );
    // Same seed, same samples; bf16 weights run too.
    let sampled = ["generate", "--model", m, "--seed", "7", "-n", "6", "--json", "Hi"];
    assert_eq!(output(&sampled), output(&sampled));
    ok(&gpt(&["generate", "--model", m, "--dtype", "bf16", "-n", "3", "Hi"]));
    // Quantizing needs rows of whole 32-value blocks: an 8-wide model says so.
    let out = gpt(&["generate", "--model", m, "--dtype", "q8_0", "-n", "3", "Hi"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("whole blocks of 32"), "{err}");
}

#[test]
fn quantized_on_load_runs_and_stays_close_to_f32() {
    let dir = tempfile::tempdir().unwrap();
    let model = Gpt::new(
        GptConfig::gpt2(50257, 32, 32, 2, 1),
        Init::Normal(0.02),
        &mut gpt::tensor::rng(2),
    );
    model.save(dir.path()).unwrap();
    let m = dir.path().to_str().unwrap();
    let greedy = |dtype: &str| {
        let args = [
            "generate",
            "--model",
            m,
            "--dtype",
            dtype,
            "--temperature",
            "0",
            "-n",
            "4",
            "--json",
            "Hi",
        ];
        let v: serde_json::Value = serde_json::from_str(ok(&gpt(&args)).trim()).unwrap();
        v["tokens"].clone()
    };
    // Small weights: Q8_0's rounding does not change the greedy tokens.
    assert_eq!(greedy("q8_0"), greedy("f32"));
    for dtype in ["q4_0", "q4_1", "auto"] {
        assert_eq!(greedy(dtype).as_array().map(Vec::len), Some(4), "{dtype}");
    }
}

#[test]
fn prompts_and_samples_are_batched() {
    let dir = tiny_gpt2();
    let m = dir.path().to_str().unwrap();
    let out = ok(&gpt(&[
        "generate",
        "--model",
        m,
        "-n",
        "4",
        "--num-samples",
        "2",
        "--json",
        "a b c d e",
        "x",
    ]));
    let lines: Vec<serde_json::Value> = out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 4);
    assert_eq!(lines[0]["prompt"], "a b c d e");
    assert_eq!(lines[3]["prompt"], "x");
    // Greedy in a batch equals greedy alone, whatever the other prompts' lengths.
    let alone = ok(&gpt(&[
        "generate",
        "--model",
        m,
        "--temperature",
        "0",
        "-n",
        "4",
        "--json",
        "x",
    ]));
    let batched = ok(&gpt(&[
        "generate",
        "--model",
        m,
        "--temperature",
        "0",
        "-n",
        "4",
        "--json",
        "a b c d e",
        "x",
    ]));
    let tokens = |s: &str| serde_json::from_str::<serde_json::Value>(s).unwrap()["tokens"].clone();
    assert_eq!(tokens(alone.trim()), tokens(batched.lines().nth(1).unwrap()));
}

#[test]
fn long_prompts_fail_clearly_or_are_truncated() {
    let dir = tiny_gpt2();
    let m = dir.path().to_str().unwrap();
    let long = "word ".repeat(40);
    let out = gpt(&["generate", "--model", m, "-n", "4", &long]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("context is 32") && err.contains("--truncate"),
        "{err}"
    );
    let out = gpt(&["generate", "--model", m, "-n", "4", "--truncate", "--json", &long]);
    let v: serde_json::Value = serde_json::from_str(ok(&out).trim()).unwrap();
    assert_eq!(v["prompt_tokens"], 28);
    assert!(String::from_utf8_lossy(&out.stderr).contains("cut"));
}

#[test]
fn stop_strings_end_the_completion() {
    let dir = tiny_gpt2();
    let m = dir.path().to_str().unwrap();
    let free = ok(&gpt(&[
        "generate",
        "--model",
        m,
        "--temperature",
        "0",
        "-n",
        "12",
        "--json",
        "The",
    ]));
    let text = serde_json::from_str::<serde_json::Value>(free.trim()).unwrap()["completion"]
        .as_str()
        .unwrap()
        .to_string();
    // Stop at the third character of the free-running completion.
    let stop: String = text.chars().skip(2).take(1).collect();
    if stop.trim().is_empty() {
        return; // a whitespace stop string would be ambiguous to assert on
    }
    let out = ok(&gpt(&[
        "generate",
        "--model",
        m,
        "--temperature",
        "0",
        "-n",
        "12",
        "--stop",
        &stop,
        "--json",
        "The",
    ]));
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    let want = &text[..text.find(&stop).unwrap()];
    assert_eq!(v["completion"], want);
    assert_eq!(v["finish_reason"], "stop");
}

#[test]
fn eval_reports_loss_and_perplexity() {
    let dir = tiny_gpt2();
    let m = dir.path().to_str().unwrap();
    let text = dir.path().join("t.txt");
    std::fs::write(&text, "the quick brown fox jumps over the lazy dog. ".repeat(20)).unwrap();
    let out = ok(&gpt(&[
        "eval",
        "--model",
        m,
        "--data",
        text.to_str().unwrap(),
        "--json",
    ]));
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    let (loss, ppl) = (v["loss"].as_f64().unwrap(), v["perplexity"].as_f64().unwrap());
    assert!((ppl - loss.exp()).abs() < 1e-6 * ppl && loss > 0.0);
    // Every token is scored once, except the first (nothing predicts it).
    let count = ok(&gpt(&["tokenize", "--count", text.to_str().unwrap()]));
    assert_eq!(v["tokens"].as_u64().unwrap() + 1, count.trim().parse::<u64>().unwrap());
    let missing = gpt(&["eval", "--model", m, "--data", "/nonexistent.txt"]);
    assert!(!missing.status.success() && String::from_utf8_lossy(&missing.stderr).contains("nonexistent"));
}

#[test]
fn asking_for_more_tokens_than_the_context_holds_is_said() {
    let dir = tiny_gpt2();
    let m = dir.path().to_str().unwrap();
    // "Hello world" is 2 tokens: 31 new ones fill the 32 positions.
    let out = gpt(&[
        "generate",
        "--model",
        m,
        "--temperature",
        "0",
        "-n",
        "40",
        "--json",
        "Hello world",
    ]);
    let v: serde_json::Value = serde_json::from_str(ok(&out).trim()).unwrap();
    assert_eq!(v["tokens"].as_array().unwrap().len(), 31);
    assert_eq!(v["finish_reason"], "length");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("-n 40") && err.contains("at most 31 new tokens after a 2-token prompt"),
        "{err}"
    );
    let out = gpt(&["generate", "--model", m, "-n", "31", "Hello world"]);
    assert!(!String::from_utf8_lossy(&out.stderr).contains("note"));
}
