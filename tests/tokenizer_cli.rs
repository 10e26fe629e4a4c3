//! The `gpt tokenize`, `gpt prepare` and `gpt tokenizer train` commands.

use gpt::data::tokens::{IdWidth, TokenFile};
use gpt::tokenizer::Bpe;
use std::path::Path;
use std::process::{Command, Output, Stdio};

mod common;
use common::gpt;

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn corpus() -> String {
    format!("{}/data/tinyshakespeare.txt", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn tokenize_prints_ids_or_count() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_gpt"))
        .args(["tokenize", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"Not all heroes wear capes.")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        "[3673,477,10281,5806,1451,274,13]\n"
    );

    let out = gpt(&["tokenize", "--count", &corpus()]);
    assert_eq!(String::from_utf8(out.stdout).unwrap(), "338025\n");
    let out = gpt(&["tokenize", "no/such/file.txt"]);
    assert!(
        !out.status.success() && stderr(&out).contains("no/such/file.txt"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn prepare_splits_encode_of_the_corpus() {
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("data");
    let out = gpt(&[
        "prepare",
        "--input",
        &corpus(),
        "--out",
        out_dir.to_str().unwrap(),
        "--val-fraction",
        "0.1",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let train = TokenFile::open(&out_dir.join("train.bin")).unwrap();
    let val = TokenFile::open(&out_dir.join("val.bin")).unwrap();
    assert_eq!(train.header().width, IdWidth::U16);
    assert_eq!(train.header().tokenizer_name, "gpt2");
    assert_eq!(train.header().tokenizer_fingerprint, Bpe::gpt2().fingerprint());
    assert_eq!(val.len(), 33_803); // round(33,802.5)
    let mut ids = train.ids().unwrap();
    ids.extend(val.ids().unwrap());
    let text = std::fs::read_to_string(corpus()).unwrap();
    assert_eq!(ids, Bpe::gpt2().encode(&text));
    let size = std::fs::metadata(out_dir.join("train.bin")).unwrap().len();
    assert_eq!(size, 64 + 2 * train.len() as u64);
}

#[test]
fn prepare_joins_files_with_endoftext() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a.txt"), dir.path().join("b.txt"));
    std::fs::write(&a, "Hello world").unwrap();
    std::fs::write(&b, "Bye").unwrap();
    let out_dir = dir.path().join("out");
    let args = [
        "prepare",
        "--input",
        a.to_str().unwrap(),
        b.to_str().unwrap(),
        "--out",
        out_dir.to_str().unwrap(),
    ];
    let out = gpt(&[&args[..], &["--val-fraction", "0", "--dtype", "u32"]].concat());
    assert!(out.status.success(), "{}", stderr(&out));
    let train = TokenFile::open(&out_dir.join("train.bin")).unwrap();
    assert_eq!(train.header().width, IdWidth::U32);
    let bpe = Bpe::gpt2();
    let want = [bpe.encode("Hello world"), vec![50256], bpe.encode("Bye")].concat();
    assert_eq!(train.ids().unwrap(), want);
    assert!(TokenFile::open(&out_dir.join("val.bin")).unwrap().is_empty());
}

#[test]
fn prepare_errors_are_clear() {
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("out");
    let out_dir = out_dir.to_str().unwrap();
    let fails = |args: &[&str], needle: &str| {
        let out = gpt(args);
        assert!(!out.status.success(), "{args:?} should fail");
        assert!(stderr(&out).contains(needle), "{args:?}: {}", stderr(&out));
    };
    fails(
        &["prepare", "--input", "missing.txt", "--out", out_dir],
        "reading missing.txt",
    );
    let empty = dir.path().join("empty.txt");
    std::fs::write(&empty, "").unwrap();
    fails(
        &["prepare", "--input", empty.to_str().unwrap(), "--out", out_dir],
        "corpus is empty",
    );
    let binary = dir.path().join("bin.txt");
    std::fs::write(&binary, b"ok\xff\xfe").unwrap();
    fails(
        &["prepare", "--input", binary.to_str().unwrap(), "--out", out_dir],
        "not UTF-8",
    );
    fails(
        &[
            "prepare",
            "--input",
            &corpus(),
            "--out",
            out_dir,
            "--val-fraction",
            "1.5",
        ],
        "--val-fraction",
    );
    fails(
        &[
            "prepare",
            "--input",
            &corpus(),
            "--out",
            out_dir,
            "--tokenizer",
            "nowhere",
        ],
        "--tokenizer nowhere",
    );

    // A vocabulary of 70,000 ids does not fit u16: an error when forced, u32 on auto.
    let big = dir.path().join("big");
    big_vocabulary(&big, 70_000);
    let big = big.to_str().unwrap();
    fails(
        &[
            "prepare",
            "--input",
            &corpus(),
            "--out",
            out_dir,
            "--tokenizer",
            big,
            "--dtype",
            "u16",
        ],
        "too many for u16",
    );
    let out = gpt(&["prepare", "--input", &corpus(), "--out", out_dir, "--tokenizer", big]);
    assert!(out.status.success(), "{}", stderr(&out));
    let train = TokenFile::open(&Path::new(out_dir).join("train.bin")).unwrap();
    assert_eq!(
        (train.header().width, train.header().vocab_size),
        (IdWidth::U32, 70_000)
    );
}

/// vocab.json with the 256 bytes plus filler tokens up to `size`, no merges.
fn big_vocabulary(dir: &Path, size: usize) {
    let gpt2 = Bpe::gpt2();
    let vocab: serde_json::Value = serde_json::from_str(&gpt2.vocab_json()).unwrap();
    let mut entries: Vec<(String, usize)> = vocab
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_u64().unwrap() as usize))
        .filter(|&(_, id)| id < 256)
        .collect();
    entries.extend((256..size).map(|id| (format!("filler{id}"), id)));
    let map: serde_json::Map<String, serde_json::Value> = entries.into_iter().map(|(k, id)| (k, id.into())).collect();
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("vocab.json"), serde_json::to_string(&map).unwrap()).unwrap();
    std::fs::write(dir.join("merges.txt"), "#version: 0.2\n").unwrap();
}

#[test]
fn tokenizer_train_writes_loadable_files() {
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("tok");
    let out = gpt(&[
        "tokenizer",
        "train",
        "--vocab-size",
        "300",
        &corpus(),
        "--out",
        out_dir.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("learned 43 merges"), "{}", stderr(&out));
    let bpe = Bpe::load(&out_dir).unwrap();
    assert_eq!(bpe.vocab_size(), 300);
    let out = gpt(&["tokenize", "--model", out_dir.to_str().unwrap(), "--count", &corpus()]);
    let count: usize = String::from_utf8(out.stdout).unwrap().trim().parse().unwrap();
    let text = std::fs::read_to_string(corpus()).unwrap();
    assert_eq!(count, bpe.encode(&text).len());
    let out = gpt(&[
        "tokenizer",
        "train",
        "--vocab-size",
        "100",
        &corpus(),
        "--out",
        out_dir.to_str().unwrap(),
    ]);
    assert!(
        !out.status.success() && stderr(&out).contains("at least 257"),
        "{}",
        stderr(&out)
    );
}
