//! Instruction tuning end to end with the real binary: `gpt train --task sft`
//! on the tiny Llama with a ChatML template (tests/golden/chat/tiny/) and on
//! the tiny GPT-2 without one (tests/golden/sft/gpt2, the Alpaca format)
//! lowers the response loss `gpt eval --task sft` measures, and the tuned
//! model answers a training prompt with its response and stops; full,
//! `--train-layers` and LoRA runs resume exactly; bad records are errors
//! naming the file and line.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Output;

mod common;
use common::{fails_with, gpt, s, succeeds};

fn golden() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

/// The tiny Llama's weights with the tiny ChatML tokenizer and config, in `dir`.
fn tiny_chat_model(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    let copy = |from: &Path, name: &str| std::fs::copy(from.join(name), dir.join(name)).unwrap();
    copy(&golden().join("llama/llama"), "model.safetensors");
    for name in ["config.json", "tokenizer.json", "tokenizer_config.json"] {
        copy(&golden().join("chat/tiny"), name);
    }
}

/// Chat and Alpaca records the tiny ChatML tokenizer can spell.
const CHAT_RECORDS: &str = r#"{"instruction": "hi", "output": "hello!"}
{"instruction": "add", "input": "2 and 3", "output": "5."}
{"instruction": "name a colour", "input": "", "output": "red."}
{"messages": [{"role": "user", "content": "who are you?"}, {"role": "assistant", "content": "a bot."}]}
"#;

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn train(model: &Path, data: &Path, out: &Path, extra: &[&str]) -> Output {
    let mut args = vec!["train", "--task", "sft", "--init", s(model), "--data", s(data)];
    args.extend([
        "--val-data",
        s(data),
        "--out",
        s(out),
        "--batch-size",
        "4",
        "--lr",
        "1e-2",
    ]);
    args.extend(extra);
    gpt(&args)
}

/// `gpt eval --task sft`'s `(loss, tokens)`.
fn eval(model: &Path, data: &Path, extra: &[&str]) -> (f64, u64) {
    let mut args = vec![
        "eval",
        "--task",
        "sft",
        "--model",
        s(model),
        "--data",
        s(data),
        "--json",
    ];
    args.extend(extra);
    let v: Value = serde_json::from_slice(&succeeds(gpt(&args)).stdout).unwrap();
    (v["loss"].as_f64().unwrap(), v["tokens"].as_u64().unwrap())
}

/// Greedy `gpt generate --json`: the completion and why it ended.
fn answer(args: &[&str]) -> (String, String) {
    let mut all = vec!["generate", "--temperature", "0", "-n", "40", "--json"];
    all.extend(args);
    let v: Value = serde_json::from_slice(&succeeds(gpt(&all)).stdout).unwrap();
    (
        v["completion"].as_str().unwrap().to_string(),
        v["finish_reason"].as_str().unwrap().to_string(),
    )
}

#[test]
fn a_chat_model_learns_its_replies_and_stops_after_them() {
    let tmp = tempfile::tempdir().unwrap();
    let (base, out) = (tmp.path().join("base"), tmp.path().join("out"));
    tiny_chat_model(&base);
    let data = write(tmp.path(), "d.jsonl", CHAT_RECORDS);
    let (before, tokens) = eval(&base, &data, &[]);
    // Scored: each reply and its <|im_end|>: "hello!" 6 + "5." 2 + "red." 4 + "a bot." 6, plus 4 ends.
    assert_eq!(tokens, 22);
    let o = succeeds(train(&base, &data, &out, &["--steps", "40"]));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("chat template"), "the start says which format: {err}");
    let (after, _) = eval(&out, &data, &[]);
    assert!(
        after < 0.1 && after < before / 10.0,
        "response loss {before} -> {after}"
    );
    // The run's val loss is the response loss.
    let log = std::fs::read_to_string(out.join("log.jsonl")).unwrap();
    let last: Value = serde_json::from_str(log.lines().last().unwrap()).unwrap();
    assert!((last["val_loss"].as_f64().unwrap() - after).abs() < 1e-4 * after.max(1e-3));
    assert!(
        out.join("chat_template.jinja").is_file(),
        "the run keeps the template it learnt"
    );
    let (reply, why) = answer(&["--chat", "--model", s(&out), "hi"]);
    assert_eq!((reply.as_str(), why.as_str()), ("hello!", "stop"));
    let (reply, why) = answer(&["--chat", "--model", s(&out), "who are you?"]);
    assert_eq!((reply.as_str(), why.as_str()), ("a bot.", "stop"));
}

#[test]
fn a_model_without_a_template_learns_alpaca_responses_and_stops_at_endoftext() {
    let tmp = tempfile::tempdir().unwrap();
    let (base, out) = (golden().join("sft/gpt2"), tmp.path().join("out"));
    let data = write(
        tmp.path(),
        "d.json",
        r#"[{"instruction": "Say hi.", "input": "", "output": "Hello there."},
            {"instruction": "Add.", "input": "2 and 3", "output": "The sum is 5."}]"#,
    );
    let (before, _) = eval(&base, &data, &[]);
    let o = succeeds(train(&base, &data, &out, &["--steps", "30"]));
    assert!(String::from_utf8_lossy(&o.stderr).contains("Alpaca format"));
    let (after, _) = eval(&out, &data, &[]);
    assert!(
        after < 0.1 && after < before / 10.0,
        "response loss {before} -> {after}"
    );
    let prompt = "Below is an instruction that describes a task. Write a response that appropriately completes \
                  the request.\n\n### Instruction:\nAdd.\n\n### Input:\n2 and 3\n\n### Response:\n";
    let (reply, why) = answer(&["--model", s(&out), prompt]);
    assert_eq!((reply.as_str(), why.as_str()), ("The sum is 5.", "stop"));
}

/// Every line of a run's log, without its timings.
fn log(dir: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(dir.join("log.jsonl")).unwrap();
    let mut lines: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    for l in &mut lines {
        let l = l.as_object_mut().unwrap();
        l.remove("ms");
        l.remove("tokens_per_s");
    }
    lines
}

/// A model directory's weights, bit for bit (file headers may order their metadata differently).
fn weights(dir: &Path) -> Vec<u32> {
    let model = gpt::model::Gpt::load(dir).unwrap();
    model
        .params
        .tensors
        .iter()
        .flat_map(|t| t.data.iter().map(|x| x.to_bits()))
        .collect()
}

#[test]
fn full_layer_and_lora_runs_resume_exactly() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path().join("base");
    tiny_chat_model(&base);
    let data = write(tmp.path(), "d.jsonl", CHAT_RECORDS);
    for (name, extra) in [
        ("full", vec![]),
        ("layers", vec!["--train-layers", "1"]),
        ("lora", vec!["--lora-rank", "4"]),
    ] {
        let (straight, split) = (tmp.path().join(name), tmp.path().join(format!("{name}-split")));
        let mut args = extra.clone();
        args.extend(["--steps", "8", "--eval-every", "4"]);
        succeeds(train(&base, &data, &straight, &args));
        args.extend(["--stop-at", "4"]);
        succeeds(train(&base, &data, &split, &args));
        succeeds(gpt(&["train", "--resume", s(&split)]));
        let lora = name == "lora";
        assert_eq!(log(&straight), log(&split), "{name}: the resumed run's losses differ");
        if !lora {
            assert!(
                weights(&straight) == weights(&split),
                "{name}: the resumed run's weights differ"
            );
        }
        let base_loss = eval(&base, &data, &[]).0;
        let tuned = match lora {
            true => eval(&base, &data, &["--adapter", s(&straight)]).0,
            false => eval(&straight, &data, &[]).0,
        };
        assert!(tuned < base_loss, "{name}: {base_loss} -> {tuned}");
    }
}

#[test]
fn bad_records_are_errors_naming_the_file_and_line() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path().join("base");
    tiny_chat_model(&base);
    let out = tmp.path().join("out");
    let ok = r#"{"instruction": "hi", "output": "yo"}"#;
    let cases = [
        (
            "a.jsonl",
            format!("{ok}\n{{\"instruction\": \"x\"}}\n"),
            "a.jsonl:2: no \"output\"",
        ),
        (
            "b.jsonl",
            format!("{ok}\n\n{{\"instruction\": \"x\", \"output\": \" \"}}\n"),
            "b.jsonl:3: the output is empty",
        ),
        (
            "c.jsonl",
            format!("{ok}\n{{\"instruction\": \"x\", \n"),
            "c.jsonl:2: not a JSON object",
        ),
        (
            "d.jsonl",
            r#"{"messages": [{"role": "user", "content": "a"}, {"role": "bot", "content": "b"}]}"#.to_string(),
            "d.jsonl:1: unknown role \"bot\"",
        ),
        (
            "e.jsonl",
            r#"{"messages": [{"role": "user", "content": "a"}]}"#.to_string(),
            "e.jsonl:1: no assistant message",
        ),
        (
            "f.json",
            format!("[{ok},\n {{\"instruction\": 3, \"output\": \"a\"}}]"),
            "f.json:2: \"instruction\" must be a text",
        ),
        ("g.json", format!("[{ok},\n {ok}"), "g.json:2: not a JSON array"),
        ("h.jsonl", String::new(), "holds no records"),
    ];
    for (name, text, want) in cases {
        let data = write(tmp.path(), name, &text);
        fails_with(&train(&base, &data, &out, &["--steps", "1"]), want);
        fails_with(
            &gpt(&["eval", "--task", "sft", "--model", s(&base), "--data", s(&data)]),
            want,
        );
    }
    // Chat records need a chat template.
    let data = write(
        tmp.path(),
        "chat.jsonl",
        r#"{"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]}"#,
    );
    let gpt2 = golden().join("sft/gpt2");
    fails_with(
        &train(&gpt2, &data, &out, &["--steps", "1"]),
        "chat.jsonl:1: a chat record",
    );
    // A reply past the context is cut, a prompt that fills it skipped: warnings naming the lines.
    let long = "a".repeat(80);
    let text = format!("{ok}\n{{\"instruction\": \"hi\", \"output\": \"{long}\"}}\n{{\"instruction\": \"{long}\", \"output\": \"b\"}}\n");
    let data = write(tmp.path(), "long.jsonl", &text);
    let o = succeeds(train(&base, &data, &out, &["--steps", "1", "--overwrite"]));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("cut to fit") && err.contains("long.jsonl:2"), "{err}");
    assert!(err.contains("(skipped): ") && err.contains("long.jsonl:3"), "{err}");
    assert!(
        err.contains("2 records (2 for validation"),
        "the skipped one is gone: {err}"
    );
    // --task sft needs a model to tune.
    fails_with(
        &gpt(&[
            "train",
            "--task",
            "sft",
            "--data",
            s(&data),
            "--out",
            s(&tmp.path().join("new")),
        ]),
        "--task sft fine-tunes a trained model",
    );
}

#[test]
fn a_quantized_gguf_base_trains_dequantized_and_resumes() {
    let tmp = tempfile::tempdir().unwrap();
    let base = golden().join("gguf_models/llama_q8_0.gguf");
    let data = write(tmp.path(), "d.jsonl", CHAT_RECORDS);
    for (name, extra) in [("full", vec![]), ("lora", vec!["--lora-rank", "2"])] {
        let out = tmp.path().join(name);
        let mut args = extra.clone();
        args.extend(["--steps", "3", "--stop-at", "2"]);
        succeeds(train(&base, &data, &out, &args));
        succeeds(gpt(&["train", "--resume", s(&out)]));
        assert_eq!(log(&out).len(), 3, "{name}");
    }
}
