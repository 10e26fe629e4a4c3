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

/// Runs `gpt args` with `stdin` as its standard input.
fn gpt_stdin(args: &[&str], stdin: &str) -> Output {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let mut child = Command::new(env!("CARGO_BIN_EXE_gpt"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn prompts_come_from_arguments_stdin_or_files_alike() {
    let dir = tiny_gpt2();
    let m = dir.path().to_str().unwrap();
    let file = dir.path().join("prompt.txt");
    std::fs::write(&file, "Once upon\na time").unwrap();
    let greedy = ["generate", "--model", m, "--temperature", "0", "-n", "4", "--json"];
    // Everything but the timings.
    let result = |out: Output| {
        let mut v: serde_json::Value = serde_json::from_str(ok(&out).trim()).unwrap();
        v.as_object_mut().unwrap().remove("timings");
        v
    };
    let from_arg = result(gpt(&[&greedy[..], &["Once upon\na time"]].concat()));
    let from_stdin = result(gpt_stdin(&[&greedy[..], &["-"]].concat(), "Once upon\na time"));
    let from_file = result(gpt(&[&greedy[..], &["--prompt-file", file.to_str().unwrap()]].concat()));
    assert_eq!(from_stdin, from_arg);
    assert_eq!(from_file, from_arg);
    let twice = gpt_stdin(&[&greedy[..], &["-", "-"]].concat(), "x");
    common::fails_with(&twice, "more than once");
    let missing = gpt(&[&greedy[..], &["--prompt-file", "/no/such/prompt.txt"]].concat());
    common::fails_with(&missing, "--prompt-file");
}

#[test]
fn one_output_format_for_any_number_of_samples() {
    let dir = tiny_gpt2();
    let m = dir.path().to_str().unwrap();
    let greedy = ["generate", "--model", m, "--temperature", "0", "-n", "4"];
    let one = ok(&gpt(&[&greedy[..], &["Hi"]].concat()));
    assert!(one.ends_with('\n') && !one.contains("---"), "{one:?}");
    let two = ok(&gpt(&[&greedy[..], &["--num-samples", "2", "Hi"]].concat()));
    assert_eq!(two, format!("{one}---\n{one}"));
    let prompts = ok(&gpt(&[&greedy[..], &["Hi", "Hi"]].concat()));
    assert_eq!(prompts, two);
    // --echo puts the prompt before its completion, streamed or not.
    let echo = ok(&gpt(&[&greedy[..], &["--echo", "Hi"]].concat()));
    assert_eq!(echo, format!("Hi{one}"));
    let echo_two = ok(&gpt(&[&greedy[..], &["--echo", "Hi", "Hi"]].concat()));
    assert_eq!(echo_two, format!("Hi{one}---\nHi{one}"));
}

#[test]
fn a_seeded_sample_does_not_depend_on_its_batch() {
    let dir = tiny_gpt2();
    let m = dir.path().to_str().unwrap();
    let sampled = ["generate", "--model", m, "--seed", "7", "-n", "6", "--json"];
    let tokens = |out: &str| -> Vec<serde_json::Value> {
        out.lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["tokens"].clone())
            .collect()
    };
    let alone = tokens(&ok(&gpt(&[&sampled[..], &["x"]].concat())));
    let batched = tokens(&ok(&gpt(&[&sampled[..], &["a b c d e", "x"]].concat())));
    assert_eq!(batched[1], alone[0]);
    let samples = tokens(&ok(&gpt(&[&sampled[..], &["--num-samples", "3", "x"]].concat())));
    assert_eq!(samples[0], alone[0]);
    assert_ne!(samples[1], samples[0], "samples of one prompt should differ");
}

#[test]
fn stop_escapes_and_json_tokens_match_the_completion() {
    let dir = tiny_gpt2();
    let m = dir.path().to_str().unwrap();
    let greedy = [
        "generate",
        "--model",
        m,
        "--temperature",
        "0",
        "-n",
        "12",
        "--json",
        "The",
    ];
    let json = |out: &Output| serde_json::from_str::<serde_json::Value>(ok(out).trim()).unwrap();
    let free = json(&gpt(&greedy));
    let text = free["completion"].as_str().unwrap().to_string();
    // Stop at an ASCII character past the start, written as an escape (\xNN).
    let (at, c) = text
        .char_indices()
        .skip(1)
        .find(|(_, c)| c.is_ascii_graphic())
        .expect("the completion has an ASCII character");
    let stop = format!("\\x{:02x}", c as u32);
    let cut = json(&gpt(&[&greedy[..], &["--stop", &stop]].concat()));
    assert_eq!(cut["completion"], text[..text.find(c).unwrap()]);
    assert!(at > 0 && cut["finish_reason"] == "stop");
    let ids: Vec<u32> = serde_json::from_value(cut["tokens"].clone()).unwrap();
    let gpt2 = gpt::tokenizer::Tokenizer::gpt2();
    let decoded = gpt2.decode(&ids).unwrap();
    let completion = cut["completion"].as_str().unwrap();
    // The tokens make the completion: all of it, and no token more.
    assert!(decoded.starts_with(completion), "{decoded:?} vs {completion:?}");
    assert!(ids.is_empty() || gpt2.decode(&ids[..ids.len() - 1]).unwrap().len() < completion.len().max(1));
    common::fails_with(&gpt(&[&greedy[..], &["--stop", ""]].concat()), "--stop");
}
