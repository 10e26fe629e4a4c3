//! Files that do not belong together or are corrupt — token files, tokenizers,
//! logs — and prompts a model cannot take: each is a clear error, never a panic.

use std::path::Path;

mod common;
use common::{fails_with, gpt, succeeds};

/// A resumable character model trained for one step on 60 names, in `dir/run`.
fn char_run(dir: &Path, extra: &[&str]) -> String {
    let names: Vec<&str> = gpt::data::docs::NAMES.lines().take(60).collect();
    let data = dir.join("names.txt");
    std::fs::write(&data, names.join("\n")).unwrap();
    let run = dir.join("run").to_str().unwrap().to_string();
    let args = ["train", "--data", data.to_str().unwrap(), "--out", &run, "--steps", "1"];
    let small = [
        "--n-layer",
        "1",
        "--n-embd",
        "8",
        "--batch-size",
        "2",
        "--num-samples",
        "1",
    ];
    succeeds(gpt(&[&args[..], &small, extra].concat()));
    run
}

#[test]
fn token_ids_outside_the_vocabulary_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let text = tmp.path().join("story.txt");
    std::fs::write(&text, "The quick brown fox jumps over the lazy dog. ".repeat(40)).unwrap();
    let prepared = tmp.path().join("prepared");
    let (text, prepared) = (text.to_str().unwrap(), prepared.to_str().unwrap());
    succeeds(gpt(&["prepare", "--input", text, "--out", prepared]));
    // GPT-2's ids fit in u16: the 6th id becomes 65535, past its 50257.
    let train_bin = Path::new(prepared).join("train.bin");
    let mut bytes = std::fs::read(&train_bin).unwrap();
    bytes[64 + 2 * 5..64 + 2 * 6].copy_from_slice(&u16::MAX.to_le_bytes());
    std::fs::write(&train_bin, bytes).unwrap();
    let out = tmp.path().join("run");
    let args = [
        "train",
        "--tokenizer",
        "gpt2",
        "--data",
        prepared,
        "--out",
        out.to_str().unwrap(),
        "--steps",
        "1",
    ];
    let small = ["--n-ctx", "8", "--n-layer", "1", "--n-embd", "8", "--batch-size", "2"];
    let run = gpt(&[&args[..], &small].concat());
    fails_with(&run, "token 5 is id 65535");
    fails_with(&run, "train.bin");
}

#[test]
fn a_character_tokenizer_of_another_model_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let run = char_run(tmp.path(), &[]);
    let tokenizer = Path::new(&run).join("char_tokenizer.json");
    let chars: serde_json::Value = serde_json::from_slice(&std::fs::read(&tokenizer).unwrap()).unwrap();
    let chars: Vec<String> = serde_json::from_value(chars["chars"].clone()).unwrap();
    // Fewer characters: the model's BOS would be read as one of them.
    let fewer = serde_json::json!({ "chars": chars[..chars.len() - 1] });
    std::fs::write(&tokenizer, fewer.to_string()).unwrap();
    for cmd in [&["sample", "--model", &run][..], &["generate", "--model", &run, "a"]] {
        fails_with(&gpt(cmd), "char_tokenizer.json");
    }
    // More characters: resuming would feed the model ids past its vocabulary.
    let mut more = chars.clone();
    more.push("~".into());
    std::fs::write(&tokenizer, serde_json::json!({ "chars": more }).to_string()).unwrap();
    fails_with(
        &gpt(&["train", "--resume", &run, "--steps", "2"]),
        "char_tokenizer.json",
    );
    fails_with(&gpt(&["sample", "--model", &run]), "char_tokenizer.json");
}

#[test]
fn fine_tuning_with_no_context_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let run = char_run(tmp.path(), &[]);
    let data = tmp.path().join("names.txt");
    let out = tmp.path().join("tuned");
    let args = [
        "train",
        "--init",
        &run,
        "--data",
        data.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ];
    fails_with(
        &gpt(&[&args[..], &["--n-ctx", "0", "--steps", "1"]].concat()),
        "--n-ctx",
    );
}

#[test]
fn a_log_that_is_not_text_stops_a_resume_instead_of_being_dropped() {
    let tmp = tempfile::tempdir().unwrap();
    let run = char_run(tmp.path(), &[]);
    let log = Path::new(&run).join("log.jsonl");
    std::fs::write(&log, b"{\"step\": 1, \"train_loss\": 3.1}\n\xff\xfe\n").unwrap();
    fails_with(&gpt(&["train", "--resume", &run, "--steps", "2"]), "log.jsonl");
    assert!(
        std::fs::read(&log).unwrap().ends_with(b"\xff\xfe\n"),
        "the log is left as it was"
    );
}

#[test]
fn a_saved_row_count_that_does_not_match_the_steps_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let run = char_run(tmp.path(), &[]);
    // One step of two rows; the header says nine (same length, so the file stays whole).
    let state = Path::new(&run).join("train_state-1.safetensors");
    let bytes = std::fs::read(&state).unwrap();
    let (from, to) = (b"\"rows_drawn\":\"2\"", b"\"rows_drawn\":\"9\"");
    let at = bytes
        .windows(from.len())
        .position(|w| w == from)
        .expect("the count is in the header");
    let mut bytes = bytes;
    bytes[at..at + to.len()].copy_from_slice(to);
    std::fs::write(&state, bytes).unwrap();
    fails_with(&gpt(&["train", "--resume", &run, "--steps", "2"]), "corrupt");
}

#[test]
fn prompts_a_model_cannot_take_are_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let run = char_run(tmp.path(), &[]);
    // A character the vocabulary lacks; a prompt past the context, with and without --truncate.
    fails_with(&gpt(&["generate", "--model", &run, "a~"]), "'~'");
    let long = "a".repeat(100);
    fails_with(&gpt(&["generate", "--model", &run, &long]), "--truncate");
    let args = [
        "generate",
        "--model",
        &run,
        "--truncate",
        "--max-new-tokens",
        "1000",
        "--json",
        &long,
    ];
    let v: serde_json::Value = serde_json::from_slice(&succeeds(gpt(&args)).stdout).unwrap();
    assert!(v["prompt_tokens"].as_u64().unwrap() >= 1, "{v}");
    // An empty prompt starts from BOS.
    succeeds(gpt(&["generate", "--model", &run, "-n", "3", ""]));
    // A context of one position holds a prompt but no new token: cutting cannot help.
    let tiny = tempfile::tempdir().unwrap();
    let run = char_run(tiny.path(), &["--n-ctx", "1"]);
    fails_with(
        &gpt(&["generate", "--model", &run, "--truncate", "abc"]),
        "context is 1",
    );
    fails_with(&gpt(&["generate", "--model", &run, ""]), "context is 1");
}
