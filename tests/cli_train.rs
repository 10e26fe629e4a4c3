//! The `gpt train` / `gpt sample` commands end to end, and their errors on bad input.

use std::path::Path;
use std::process::Output;

mod common;
use common::{fails_with, gpt, succeeds};

fn tiny_train(dir: &Path, data: &Path, extra: &[&str]) -> Output {
    let mut args = vec![
        "train",
        "--data",
        data.to_str().unwrap(),
        "--out",
        dir.to_str().unwrap(),
    ];
    args.extend([
        "--steps",
        "30",
        "--n-layer",
        "1",
        "--n-embd",
        "16",
        "--batch-size",
        "4",
        "--num-samples",
        "5",
    ]);
    args.extend(extra);
    gpt(&args)
}

#[test]
fn train_then_sample_round_trip() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("words.txt");
    std::fs::write(&data, "alpha\nbeta\n\ngamma\ndelta\nepsilon\nzeta\neta\ntheta\n").unwrap();
    let run = tmp.path().join("run");
    let out = tiny_train(&run, &data, &[]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("val loss") && stdout.contains("samples are not in the training set"),
        "{stdout}"
    );
    for f in [
        "model.safetensors",
        "config.json",
        "char_tokenizer.json",
        "log.jsonl",
        "loss.svg",
    ] {
        assert!(run.join(f).exists(), "{f} missing");
    }
    let log = std::fs::read_to_string(run.join("log.jsonl")).unwrap();
    assert_eq!(log.lines().count(), 30);
    let out = gpt(&["sample", "--model", run.to_str().unwrap(), "-n", "7", "--seed", "3"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 7);
    // Same seed, same samples.
    let again = gpt(&["sample", "--model", run.to_str().unwrap(), "-n", "7", "--seed", "3"]);
    assert_eq!(out.stdout, again.stdout);
}

#[test]
fn bad_data_files_are_clear_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("run");
    fails_with(&tiny_train(&run, &tmp.path().join("missing.txt"), &[]), "missing.txt");
    let empty = tmp.path().join("empty.txt");
    std::fs::write(&empty, "").unwrap();
    fails_with(&tiny_train(&run, &empty, &[]), "is empty");
    let blank = tmp.path().join("blank.txt");
    std::fs::write(&blank, "\n  \n\t\n").unwrap();
    fails_with(&tiny_train(&run, &blank, &[]), "every line is blank");
    let binary = tmp.path().join("latin1.txt");
    std::fs::write(&binary, b"caf\xe9\nna\xefve\n").unwrap();
    fails_with(&tiny_train(&run, &binary, &[]), "not valid UTF-8");
}

#[test]
fn bad_model_shapes_and_long_documents() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("d.txt");
    std::fs::write(&data, "a fairly long line of text\nshort\nanother one\n").unwrap();
    let run = tmp.path().join("run");
    fails_with(&tiny_train(&run, &data, &["--n-head", "3"]), "divisible");
    let out = tiny_train(&run, &data, &["--n-ctx", "8"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("longer than n_ctx = 8") && err.contains("cut"), "{err}");
}

#[test]
fn missing_or_truncated_checkpoints_are_clear_errors() {
    let tmp = tempfile::tempdir().unwrap();
    fails_with(
        &gpt(&["sample", "--model", tmp.path().join("nope").to_str().unwrap()]),
        "does not exist",
    );
    let data = tmp.path().join("d.txt");
    std::fs::write(&data, "abc\nbcd\ncde\n").unwrap();
    let run = tmp.path().join("run");
    assert!(tiny_train(&run, &data, &[]).status.success());
    let weights = run.join("model.safetensors");
    let bytes = std::fs::read(&weights).unwrap();
    std::fs::write(&weights, &bytes[..bytes.len() / 2]).unwrap();
    fails_with(&gpt(&["sample", "--model", run.to_str().unwrap()]), "truncated");
}

#[test]
fn bpe_training_on_text_and_on_a_prepared_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let text = tmp.path().join("story.txt");
    std::fs::write(&text, "The quick brown fox jumps over the lazy dog. ".repeat(40)).unwrap();
    let run = tmp.path().join("run");
    // A tiny BPE model trained on `data` with `tokenizer`, into `run`.
    let train = |data: &Path, tokenizer: &str| {
        let (data, out) = (data.to_str().unwrap(), run.to_str().unwrap());
        let mut args = vec![
            "train",
            "--data",
            data,
            "--out",
            out,
            "--tokenizer",
            tokenizer,
            "--overwrite",
        ];
        args.extend([
            "--n-ctx",
            "16",
            "--steps",
            "8",
            "--n-layer",
            "1",
            "--n-embd",
            "8",
            "--batch-size",
            "2",
        ]);
        gpt(&args)
    };
    let out = train(&text, "gpt2");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("gpt2 tokenizer"));
    for f in [
        "model.safetensors",
        "config.json",
        "vocab.json",
        "merges.txt",
        "loss.svg",
    ] {
        assert!(run.join(f).exists(), "{f} missing");
    }
    // The saved model and its BPE vocabulary generate text.
    let out = gpt(&["generate", "--model", run.to_str().unwrap(), "-n", "5", "--json", "The"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    // The same text prepared into token files trains too ...
    let prepared = tmp.path().join("prepared");
    let prep = gpt(&[
        "prepare",
        "--input",
        text.to_str().unwrap(),
        "--out",
        prepared.to_str().unwrap(),
    ]);
    assert!(prep.status.success(), "{}", String::from_utf8_lossy(&prep.stderr));
    assert!(train(&prepared, "gpt2").status.success());
    // ... but not with another tokenizer than the one that made the files.
    let vocab_dir = tmp.path().join("tok");
    let args = [
        "tokenizer",
        "train",
        "--vocab-size",
        "300",
        text.to_str().unwrap(),
        "--out",
        vocab_dir.to_str().unwrap(),
    ];
    let trained = gpt(&args);
    assert!(trained.status.success(), "{}", String::from_utf8_lossy(&trained.stderr));
    fails_with(&train(&prepared, vocab_dir.to_str().unwrap()), "tokenizer");
}

#[test]
fn a_run_directory_is_replaced_only_with_overwrite_and_then_wholly() {
    let tmp = tempfile::tempdir().unwrap();
    let names = tmp.path().join("names.txt");
    std::fs::write(&names, "alpha\nbeta\ngamma\ndelta\nepsilon\nzeta\neta\ntheta\n").unwrap();
    let run = tmp.path().join("run");
    succeeds(tiny_train(&run, &names, &["--stop-at", "10"]));
    let weights = std::fs::read(run.join("model.safetensors")).unwrap();

    // Training into it again is refused, naming what is there and the ways on, and changes nothing.
    let out = tiny_train(&run, &names, &[]);
    fails_with(&out, "already holds a run");
    let err = String::from_utf8_lossy(&out.stderr);
    for want in [
        "step 10",
        "train_state-10.safetensors",
        "--resume",
        "--overwrite",
        "another --out",
    ] {
        assert!(err.contains(want), "{want:?} missing: {err}");
    }
    assert_eq!(std::fs::read(run.join("model.safetensors")).unwrap(), weights);
    fails_with(
        &gpt(&["train", "--resume", run.to_str().unwrap(), "--overwrite"]),
        "--overwrite",
    );

    // --overwrite replaces it: a BPE run leaves nothing of the character run beside it.
    let text = tmp.path().join("story.txt");
    std::fs::write(&text, "The quick brown fox jumps over the lazy dog. ".repeat(40)).unwrap();
    let bpe = ["--tokenizer", "gpt2", "--n-ctx", "16", "--overwrite"];
    succeeds(tiny_train(&run, &text, &bpe));
    assert!(!run.join("char_tokenizer.json").exists(), "the old tokenizer is left");
    assert!(
        !run.join("train_state-10.safetensors").exists(),
        "the old optimizer state is left"
    );
    let log = std::fs::read_to_string(run.join("log.jsonl")).unwrap();
    assert_eq!(log.lines().count(), 30, "the log holds only the new run");
    succeeds(gpt(&["generate", "--model", run.to_str().unwrap(), "-n", "3", "The"]));
}

#[test]
fn flags_that_a_run_would_ignore_are_refused_naming_the_flag() {
    let tmp = tempfile::tempdir().unwrap();
    let names = tmp.path().join("names.txt");
    std::fs::write(&names, "alpha\nbeta\ngamma\ndelta\nepsilon\nzeta\neta\ntheta\n").unwrap();
    let run = tmp.path().join("run");
    fails_with(&tiny_train(&run, &names, &["--stop-at", "31"]), "--stop-at 31");
    fails_with(&tiny_train(&run, &names, &["--val-fraction", "1.5"]), "--val-fraction");
    fails_with(&tiny_train(&run, &names, &["--grad-accum", "0"]), "--grad-accum");
    succeeds(tiny_train(&run, &names, &["--stop-at", "10"]));
    let resume = |extra: &[&str]| gpt(&[&["train", "--resume", run.to_str().unwrap()], extra].concat());
    fails_with(
        &resume(&["--stop-at", "10"]),
        "--stop-at 10: the checkpoint is already at step 10",
    );
    fails_with(&resume(&["--steps", "0"]), "--steps");

    let text = tmp.path().join("story.txt");
    std::fs::write(&text, "The quick brown fox jumps over the lazy dog. ".repeat(40)).unwrap();
    let bpe = ["--tokenizer", "gpt2", "--n-ctx", "16", "--overwrite"];
    fails_with(
        &tiny_train(&run, &text, &[&bpe[..], &["--no-pack"]].concat()),
        "--no-pack",
    );
    let prepared = tmp.path().join("prepared");
    succeeds(gpt(&[
        "prepare",
        "--input",
        text.to_str().unwrap(),
        "--out",
        prepared.to_str().unwrap(),
    ]));
    fails_with(
        &tiny_train(&run, &prepared, &[&bpe[..], &["--val-fraction", "0.2"]].concat()),
        "--val-fraction",
    );
    fails_with(&tiny_train(&run, tmp.path(), &["--overwrite"]), "without train.bin");
    fails_with(
        &tiny_train(&run, &prepared, &["--tokenizer", "char", "--overwrite"]),
        "not a directory",
    );
}

#[test]
fn a_prepared_directory_names_its_tokenizer_and_bad_tokenizers_list_the_choices() {
    let tmp = tempfile::tempdir().unwrap();
    let text = tmp.path().join("story.txt");
    std::fs::write(&text, "The quick brown fox jumps over the lazy dog. ".repeat(40)).unwrap();
    let prepared = tmp.path().join("prepared");
    let prepare = |tokenizer: &str| {
        let (input, out) = (text.to_str().unwrap(), prepared.to_str().unwrap());
        succeeds(gpt(&[
            "prepare",
            "--input",
            input,
            "--out",
            out,
            "--tokenizer",
            tokenizer,
        ]))
    };
    prepare("gpt2");
    let run = tmp.path().join("run");
    // No --tokenizer gpt2: the token files' header names it.
    let out = succeeds(tiny_train(&run, &prepared, &["--n-ctx", "16"]));
    assert!(String::from_utf8_lossy(&out.stderr).contains("gpt2 tokenizer"));

    for bad in ["bpe", tmp.path().to_str().unwrap()] {
        let out = tiny_train(&run, &text, &["--tokenizer", bad, "--overwrite"]);
        fails_with(
            &out,
            &format!("--tokenizer {bad}: give char (one per character), gpt2 (GPT-2's BPE, built in), a directory with tokenizer files (vocab.json + merges.txt"),
        );
    }
    // Token files of a tokenizer of their own: its directory must be named.
    let vocab = tmp.path().join("vocab");
    let (t, v) = (text.to_str().unwrap(), vocab.to_str().unwrap());
    succeeds(gpt(&["tokenizer", "train", "--vocab-size", "300", t, "--out", v]));
    prepare(v);
    fails_with(&tiny_train(&run, &prepared, &["--overwrite"]), "--tokenizer DIR");
    let out = tiny_train(&run, &prepared, &["--tokenizer", v, "--n-ctx", "16", "--overwrite"]);
    succeeds(out);
}

#[test]
fn off_a_terminal_progress_is_plain_lines_and_quiet_is_one_line() {
    let tmp = tempfile::tempdir().unwrap();
    let names = tmp.path().join("names.txt");
    let some: Vec<&str> = gpt::data::docs::NAMES.lines().take(200).collect();
    std::fs::write(&names, some.join("\n")).unwrap();
    let run = tmp.path().join("run");
    let text = tmp.path().join("story.txt");
    std::fs::write(&text, "The quick brown fox jumps over the lazy dog. ".repeat(40)).unwrap();
    let bpe = ["--tokenizer", "gpt2", "--n-ctx", "16"];
    // stderr is a pipe here: a line every 10 steps, for character and BPE runs alike.
    for (data, extra) in [(&names, &[][..]), (&text, &bpe[..])] {
        let out = succeeds(tiny_train(
            &run,
            data,
            &[extra, &["--eval-every", "10", "--overwrite"]].concat(),
        ));
        let err = String::from_utf8_lossy(&out.stderr);
        let line = fancy_regex::Regex::new(
            r"(?m)^step 20/30 \| loss \d+\.\d{4} \| val \d+\.\d{4} \| lr \d\.\de-\d \| [\d.]+ ms/step \| [\d.]+k? tok/s$",
        )
        .unwrap();
        assert!(line.is_match(&err).unwrap(), "{err}");
        assert!(err.contains("step 0/30 | val "), "the starting loss is shown: {err}");
        assert!(!err.contains("sample at step"), "samples only when asked: {err}");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(stdout.matches("train loss").count(), 1, "{stdout}");
    }
    let last = std::fs::read_to_string(run.join("log.jsonl")).unwrap();
    let last: serde_json::Value = serde_json::from_str(last.lines().last().unwrap()).unwrap();
    assert!(
        last["ms"].as_f64().unwrap() > 0.0 && last["tokens_per_s"].as_u64().unwrap() > 0,
        "{last}"
    );

    let out = succeeds(tiny_train(&run, &names, &["--sample-every", "10", "--overwrite"]));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).matches("sample at step").count(),
        2
    );
    let out = succeeds(tiny_train(&run, &names, &["--quiet", "--stop-at", "20", "--overwrite"]));
    assert_eq!(String::from_utf8_lossy(&out.stderr), "");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(
        lines.len() == 2 && lines[0].starts_with("done: 20 steps") && lines[1].starts_with("continue with"),
        "{stdout}"
    );
}
