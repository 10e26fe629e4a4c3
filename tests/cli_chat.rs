//! `gpt chat` and `gpt generate --chat` on the tiny Llama of
//! tests/golden/llama/llama with a 64-id ChatML tokenizer
//! (tests/golden/chat/tiny/, made by scripts/gen_chat_golden.py): three
//! turns piped in give transformers' prompts (turns dropped where the context
//! runs out) and its greedy replies, each ending at `<|im_end|>`, which is
//! not printed.

use serde::Deserialize;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

mod common;
use common::{fails_with, gpt, succeeds};

#[derive(Deserialize)]
struct Session {
    max_new_tokens: usize,
    turns: Vec<Turn>,
}

#[derive(Deserialize)]
struct Turn {
    user: String,
    prompt_ids: Vec<u32>,
    dropped_turns: usize,
    reply_ids: Vec<u32>,
    reply: String,
    stopped: bool,
}

fn golden() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

fn session() -> Session {
    serde_json::from_str(&std::fs::read_to_string(golden().join("chat/tiny/chat.json")).unwrap()).unwrap()
}

/// The tiny Llama's weights with the tiny chat tokenizer and config, in a fresh directory.
fn tiny_model() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let copy = |from: &Path, name: &str| std::fs::copy(from.join(name), dir.path().join(name)).unwrap();
    copy(&golden().join("llama/llama"), "model.safetensors");
    for name in ["config.json", "tokenizer.json", "tokenizer_config.json"] {
        copy(&golden().join("chat/tiny"), name);
    }
    dir
}

/// Runs `gpt args` with `input` on its stdin.
fn gpt_with_input(args: &[&str], input: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_gpt"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("gpt starts");
    child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

fn chat(model: &Path, extra: &[&str], input: &str) -> Output {
    let n = session().max_new_tokens.to_string();
    let mut args = vec![
        "chat",
        "--model",
        model.to_str().unwrap(),
        "--temperature",
        "0",
        "-n",
        &n,
    ];
    args.extend(extra);
    gpt_with_input(&args, input)
}

fn prompts(stderr: &str) -> Vec<Vec<u32>> {
    stderr
        .lines()
        .filter_map(|l| l.strip_prefix("prompt ids: "))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn piped_turns_give_transformers_prompts_and_replies() {
    let s = session();
    let model = tiny_model();
    let input: String = s.turns.iter().map(|t| format!("{}\n", t.user)).collect();
    let out = succeeds(chat(model.path(), &["--show-prompt"], &input));
    let (stdout, stderr) = (
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    );
    let want: Vec<Vec<u32>> = s.turns.iter().map(|t| t.prompt_ids.clone()).collect();
    assert_eq!(prompts(&stderr), want, "{stderr}");
    let replies: Vec<&str> = stdout.lines().collect();
    let want: Vec<&str> = s.turns.iter().map(|t| t.reply.as_str()).collect();
    assert_eq!(replies, want);
    // Every reply ended at <|im_end|>, before the token limit, and it is not shown.
    for t in &s.turns {
        assert!(t.stopped && t.reply_ids.len() < s.max_new_tokens, "{}", t.reply);
    }
    assert!(!stdout.contains("<|im_end|>"));
    let dropped: usize = s.turns.iter().map(|t| t.dropped_turns).sum();
    assert!(dropped > 0, "the session should outgrow the context of 64");
    assert_eq!(
        stderr.matches("(dropped the oldest").count(),
        s.turns.iter().filter(|t| t.dropped_turns > 0).count()
    );
}

#[test]
fn reset_exit_and_blank_lines() {
    let s = session();
    let model = tiny_model();
    let first = &s.turns[0];
    let input = format!("\n{0}\n/reset\n{0}\r\n/exit\n{1}\n", first.user, s.turns[1].user);
    let out = succeeds(chat(model.path(), &["--show-prompt"], &input));
    let (stdout, stderr) = (
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    );
    assert_eq!(prompts(&stderr), [first.prompt_ids.clone(), first.prompt_ids.clone()]);
    assert_eq!(stdout, format!("{0}\n{0}\n", first.reply));
    assert!(stderr.contains("(conversation reset)"));
    // EOF at once ends cleanly.
    let out = succeeds(chat(model.path(), &[], ""));
    assert!(out.stdout.is_empty());
}

#[test]
fn generate_chat_answers_one_turn_through_the_template() {
    let s = session();
    let model = tiny_model();
    let n = s.max_new_tokens.to_string();
    let m = model.path().to_str().unwrap();
    let out = succeeds(gpt(&[
        "generate",
        "--chat",
        "--model",
        m,
        "--temperature",
        "0",
        "-n",
        &n,
        &s.turns[0].user,
    ]));
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        format!("{}\n", s.turns[0].reply)
    );
    // Several prompts, one batch: each reply alone (not appended to its message), as one prints.
    let hi = s.turns[0].user.as_str();
    let out = succeeds(gpt(&[
        "generate",
        "--chat",
        "--model",
        m,
        "--temperature",
        "0",
        "-n",
        &n,
        hi,
        hi,
    ]));
    let one = format!("{}\n", s.turns[0].reply);
    assert_eq!(String::from_utf8(out.stdout).unwrap(), format!("{one}---\n{one}"));
    // --system and --template need --chat.
    fails_with(&gpt(&["generate", "--model", m, "--system", "x", "hi"]), "--chat");
}

#[test]
fn a_model_without_a_template_needs_one_given() {
    let model = tiny_model();
    let config = model.path().join("tokenizer_config.json");
    std::fs::write(&config, r#"{"bos_token": "<|im_start|>", "eos_token": "<|im_end|>"}"#).unwrap();
    let out = chat(model.path(), &[], "hi\n");
    fails_with(&out, "--template FILE");
    fails_with(
        &gpt(&["generate", "--chat", "--model", model.path().to_str().unwrap(), "hi"]),
        "--template FILE",
    );
    // Given one: the first turn as before (this template is the tiny one).
    let template = model.path().join("t.jinja");
    std::fs::write(
        &template,
        "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}\
         {% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}",
    )
    .unwrap();
    let s = session();
    let out = succeeds(chat(model.path(), &["--template", template.to_str().unwrap()], "hi\n"));
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        format!("{}\n", s.turns[0].reply)
    );
    // Broken, missing or refusing templates are errors, not panics.
    std::fs::write(&template, "{% if %}").unwrap();
    fails_with(
        &chat(model.path(), &["--template", template.to_str().unwrap()], "hi\n"),
        "does not compile",
    );
    fails_with(
        &chat(model.path(), &["--template", "/nonexistent/t.jinja"], "hi\n"),
        "/nonexistent/t.jinja",
    );
    std::fs::write(&template, "{{ raise_exception('no way') }}").unwrap();
    fails_with(
        &chat(model.path(), &["--template", template.to_str().unwrap()], "hi\n"),
        "no way",
    );
}

#[test]
fn a_message_too_long_for_the_context_is_refused_and_the_chat_goes_on() {
    let s = session();
    let model = tiny_model();
    let input = format!("{}\n{}\n", "a".repeat(100), s.turns[0].user);
    let out = succeeds(chat(model.path(), &[], &input));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.contains("error: this message takes") && stderr.contains("say less"),
        "{stderr}"
    );
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        format!("{}\n", s.turns[0].reply)
    );
    // A system message that leaves no room: every message is refused, with the advice.
    let system = "b".repeat(60);
    let out = succeeds(chat(model.path(), &["--system", &system], "hi\n"));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--system"));
}
