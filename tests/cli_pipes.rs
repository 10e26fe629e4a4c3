//! Pipes and files: every command ends quietly (status 0, nothing on stderr)
//! when the reader of its output goes away (`gpt sample | head -1`), and the
//! files a run writes are created as other tools create theirs (0666 less
//! the umask), weights and optimizer state included.

use gpt::model::{Gpt, GptConfig, Init};
use std::path::Path;
use std::process::{Command, Stdio};

mod common;

/// A short training run's arguments: a character model on a few names, in `out`.
fn train_args(dir: &Path, out: &Path) -> Vec<String> {
    let data = dir.join("names.txt");
    let names: Vec<&str> = gpt::data::docs::NAMES.lines().take(60).collect();
    std::fs::write(&data, names.join("\n")).unwrap();
    let args = [
        "train",
        "--data",
        "",
        "--out",
        "",
        "--steps",
        "3",
        "--n-layer",
        "1",
        "--n-embd",
        "8",
        "--n-head",
        "2",
        "--batch-size",
        "2",
        "--num-samples",
        "50",
    ];
    let mut args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    args[2] = data.to_str().unwrap().to_string();
    args[4] = out.to_str().unwrap().to_string();
    args
}

/// Runs `gpt args` with its standard output closed before it writes: returns its status and stderr.
fn closed_stdout(args: &[String]) -> (std::process::ExitStatus, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_gpt"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("gpt starts");
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    (out.status, String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn a_closed_stdout_ends_every_command_quietly() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    // Training writes its results after saving: the run survives its reader.
    let (status, err) = closed_stdout(&train_args(dir.path(), &run));
    assert!(
        status.success() && !err.contains("panicked") && !err.contains("error"),
        "{status}: {err}"
    );
    assert!(run.join("model.safetensors").is_file(), "the run was lost");

    let bpe = dir.path().join("bpe");
    Gpt::new(
        GptConfig::gpt2(50257, 32, 8, 2, 1),
        Init::Normal(0.5),
        &mut gpt::tensor::rng(1),
    )
    .save(&bpe)
    .unwrap();
    let text = dir.path().join("text.txt");
    std::fs::write(&text, "the quick brown fox jumps over the lazy dog. ".repeat(20)).unwrap();
    let (run, bpe, text) = (run.to_str().unwrap(), bpe.to_str().unwrap(), text.to_str().unwrap());
    let commands: &[&[&str]] = &[
        &["sample", "--model", run, "--num-samples", "500"],
        &["generate", "--model", bpe, "-n", "5", "a", "b"],
        &["generate", "--model", bpe, "-n", "5", "streamed"],
        &["generate", "--model", bpe, "-n", "5", "--json", "a"],
        &["eval", "--model", bpe, "--data", text],
        &["tokenize", text],
    ];
    for args in commands {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let (status, err) = closed_stdout(&args);
        assert!(
            status.success() && !err.contains("panicked") && !err.contains("error"),
            "gpt {}: {status}: {err}",
            args.join(" ")
        );
    }
}

#[cfg(unix)]
#[test]
fn run_files_are_created_with_the_usual_permissions() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let mut args = train_args(dir.path(), &run);
    args.extend([
        "--save-every".to_string(),
        "1".to_string(),
        "--stop-at".to_string(),
        "2".to_string(),
    ]);
    // A umask that leaves the group write: files come out 0664, as `touch` makes them.
    let shell = Command::new("sh")
        .args(["-c", "umask 002 && exec \"$0\" \"$@\"", env!("CARGO_BIN_EXE_gpt")])
        .args(&args)
        .output()
        .unwrap();
    common::succeeds(shell);
    let mut seen = Vec::new();
    for entry in std::fs::read_dir(&run).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().to_string_lossy().into_owned();
        let mode = entry.metadata().unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o664, "{name} is {mode:o}");
        seen.push(name);
    }
    for want in ["model.safetensors", "config.json"] {
        assert!(seen.iter().any(|n| n == want), "{want} missing: {seen:?}");
    }
    assert!(
        seen.iter().any(|n| n.starts_with("train_state-")),
        "no optimizer state: {seen:?}"
    );
}
