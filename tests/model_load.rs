//! Bad checkpoints get a clear error, never a panic or an out-of-bounds
//! read: damaged, truncated or mismatched files in each format `Gpt::load`
//! reads, built from the golden tiny GPT-2 in tests/golden/gpt2/.

use gpt::model::{parse_checkpoint, Gpt, GptConfig, Init};
use gpt::tensor::rng;
use gpt::tokenizer::Tokenizer;
use std::path::{Path, PathBuf};

fn golden(sub: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden/gpt2")
        .join(sub)
}

/// A temporary copy of a golden directory.
fn copy_of(sub: &str) -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    for f in std::fs::read_dir(golden(sub)).unwrap() {
        let f = f.unwrap().path();
        std::fs::copy(&f, tmp.path().join(f.file_name().unwrap())).unwrap();
    }
    tmp
}

/// The full error chain of loading `path`, which must fail.
fn load_err(path: &Path) -> String {
    format!("{:#}", Gpt::load(path).err().expect("loading must fail"))
}

fn parse_err(config: &str, weights: &[u8]) -> String {
    format!(
        "{:#}",
        parse_checkpoint(config.as_bytes(), weights)
            .err()
            .expect("parsing must fail")
    )
}

fn assert_contains(err: &str, want: &str) {
    assert!(err.contains(want), "error {err:?} should mention {want:?}");
}

/// A safetensors file: 8-byte header length, JSON header, data.
fn safetensors(header: &str, data: &[u8]) -> Vec<u8> {
    [&(header.len() as u64).to_le_bytes()[..], header.as_bytes(), data].concat()
}

/// A tiny model's config and safetensors bytes, from `Gpt::save`.
fn tiny(config: GptConfig) -> (String, Vec<u8>) {
    let dir = tempfile::tempdir().unwrap();
    Gpt::new(config, Init::Gpt2, &mut rng(7)).save(dir.path()).unwrap();
    let read = |f: &str| std::fs::read(dir.path().join(f)).unwrap();
    (
        String::from_utf8(read("config.json")).unwrap(),
        read("model.safetensors"),
    )
}

#[test]
fn truncated_safetensors_files_are_reported_as_truncated() {
    let dir = copy_of("hub");
    let path = dir.path().join("model.safetensors");
    let full = std::fs::read(&path).unwrap();
    for cut in [0, 7, 8, 100, full.len() / 2, full.len() - 1] {
        std::fs::write(&path, &full[..cut]).unwrap();
        let err = load_err(dir.path());
        assert_contains(&err, "truncated");
        assert_contains(&err, "model.safetensors");
    }
}

#[test]
fn headers_whose_offsets_overlap_leave_holes_or_run_past_the_file_are_errors() {
    let config = GptConfig::gpt2(2, 2, 2, 1, 1).to_json();
    let data = [0u8; 16];
    for header in [
        // Overlapping ranges.
        r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}"#,
        // Past the end of the data.
        r#"{"a":{"dtype":"F32","shape":[8],"data_offsets":[0,32]}}"#,
        // A hole, and a range whose size disagrees with its shape.
        r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}}"#,
        r#"{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,16]}}"#,
        // Reversed, and a shape whose size overflows.
        r#"{"a":{"dtype":"F32","shape":[4],"data_offsets":[16,0]}}"#,
        r#"{"a":{"dtype":"F32","shape":[4294967296,4294967296,4],"data_offsets":[0,16]}}"#,
        // Not JSON, not an object of tensors.
        r#"{"a":"#,
        r#"[1,2]"#,
    ] {
        assert_contains(&parse_err(&config, &safetensors(header, &data)), "truncated or corrupt");
    }
    // A header length pointing past the end of the file.
    let mut bytes = safetensors(r#"{}"#, &[]);
    bytes[..8].copy_from_slice(&1000u64.to_le_bytes());
    assert_contains(&parse_err(&config, &bytes), "truncated or corrupt");
    let bytes = [&u64::MAX.to_le_bytes()[..], b"{}"].concat();
    assert_contains(&parse_err(&config, &bytes), "truncated or corrupt");
}

#[test]
fn wrong_dtypes_shapes_and_missing_tensors_are_named() {
    let config = GptConfig::gpt2(3, 2, 2, 1, 1).to_json();
    let (good_config, good) = tiny(GptConfig::gpt2(3, 2, 2, 1, 1));
    assert_eq!(config, good_config);
    parse_checkpoint(config.as_bytes(), &good).unwrap();

    // Rewrite one tensor's header entry, keeping the file consistent.
    let header_len = u64::from_le_bytes(good[..8].try_into().unwrap()) as usize;
    let header = std::str::from_utf8(&good[8..8 + header_len]).unwrap();
    let data = &good[8 + header_len..];
    let with = |from: &str, to: &str| {
        assert!(header.contains(from), "{from}");
        safetensors(&header.replacen(from, to, 1), data)
    };
    let wpe = r#""wpe.weight":{"dtype":"F32","shape":[2,2]"#;
    assert_contains(
        &parse_err(&config, &with(wpe, r#""wpe.weight":{"dtype":"I32","shape":[2,2]"#)),
        "tensor wpe.weight is I32; only F32, F16 and BF16",
    );
    assert_contains(
        &parse_err(&config, &with(wpe, r#""wpe.weight":{"dtype":"F32","shape":[4,1]"#)),
        "tensor wpe.weight has shape [4, 1], config.json implies [2, 2]",
    );
    assert_contains(
        &parse_err(&config, &with(wpe, r#""wpx.weight":{"dtype":"F32","shape":[2,2]"#)),
        "tensor wpe.weight is missing",
    );
    // F64 has the wrong element size for its byte range, so the header check catches it first.
    assert!(parse_checkpoint(
        config.as_bytes(),
        &with(wpe, r#""wpe.weight":{"dtype":"F64","shape":[2,2]"#)
    )
    .is_err());
}

#[test]
fn configs_that_contradict_the_weights_are_errors() {
    let dir = copy_of("transformers");
    let config_path = dir.path().join("config.json");
    let original = std::fs::read_to_string(&config_path).unwrap();
    let edit = |from: &str, to: &str| {
        assert!(original.contains(from), "{from}");
        std::fs::write(&config_path, original.replacen(from, to, 1)).unwrap();
        load_err(dir.path())
    };
    assert_contains(
        &edit("\"n_layer\": 2", "\"n_layer\": 3"),
        "tensor h.2.ln_1.weight is missing",
    );
    assert_contains(
        &edit("\"n_layer\": 2", "\"n_layer\": 1"),
        "unexpected tensor transformer.h.1",
    );
    assert_contains(
        &edit("\"vocab_size\": 300", "\"vocab_size\": 301"),
        "wte.weight has shape [300, 32]",
    );
    assert_contains(
        &edit("\"n_positions\": 64", "\"n_positions\": 65"),
        "wpe.weight has shape [64, 32]",
    );
    assert_contains(&edit("\"n_head\": 4", "\"n_head\": 5"), "divisible");
    assert_contains(
        &edit("\"tie_word_embeddings\": true", "\"tie_word_embeddings\": false"),
        "lm_head.weight is missing",
    );
    assert_contains(&edit("\"model_type\": \"gpt2\"", "\"model_type\": \"llama\""), "llama");
    // Sizes no file of this length could hold are refused before any tensor is looked at.
    assert_contains(&edit("\"n_layer\": 2", "\"n_layer\": 4000000000"), "cannot fit");
    assert_contains(&edit("\"n_embd\": 32", "\"n_embd\": 4611686018427387904"), "cannot fit");
    std::fs::write(&config_path, "{\"n_embd\": ").unwrap();
    assert_contains(&load_err(dir.path()), "config.json is not a valid model config");
    std::fs::remove_file(&config_path).unwrap();
    assert_contains(&load_err(dir.path()), "config.json");
}

#[test]
fn a_tied_config_with_a_different_lm_head_is_an_error() {
    let (config, _) = tiny(GptConfig::gpt2(3, 2, 2, 1, 1));
    let mut untied = GptConfig::gpt2(3, 2, 2, 1, 1);
    untied.tie_word_embeddings = false;
    let (_, weights) = tiny(untied);
    assert_contains(&parse_err(&config, &weights), "lm_head.weight differs from wte.weight");
}

#[test]
fn damaged_llmc_files_are_clear_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("gpt2_124M.bin");
    let full = std::fs::read(golden("llmc/model.bin")).unwrap();
    for cut in [4, 1000, 1024, full.len() / 2, full.len() - 1] {
        std::fs::write(&path, &full[..cut]).unwrap();
        let err = load_err(&path);
        assert_contains(&err, "truncated");
        assert_contains(&err, "gpt2_124M.bin");
    }
    let mut bad = full.clone();
    bad[4..8].copy_from_slice(&9i32.to_le_bytes());
    std::fs::write(&path, &bad).unwrap();
    assert_contains(&load_err(&path), "version 9 is not supported");
    // Without the magic number it is not taken for an llm.c file at all.
    bad[..4].copy_from_slice(&1i32.to_le_bytes());
    std::fs::write(&path, &bad).unwrap();
    assert_contains(&load_err(&path), "is not a model");
    // The golden folder holds two llm.c files: which one is meant must be said.
    assert_contains(&load_err(&golden("llmc")), "holds 2 llm.c model files");
}

#[test]
fn damaged_tensorflow_checkpoints_are_clear_errors() {
    let dir = copy_of("tf");
    let d = dir.path();
    let index = d.join("model.ckpt.index");
    let data = d.join("model.ckpt.data-00000-of-00001");
    let (full_index, full_data) = (std::fs::read(&index).unwrap(), std::fs::read(&data).unwrap());
    let reset = || {
        std::fs::write(&index, &full_index).unwrap();
        std::fs::write(&data, &full_data).unwrap();
    };

    for cut in [0, 10, full_index.len() / 2, full_index.len() - 1] {
        std::fs::write(&index, &full_index[..cut]).unwrap();
        let err = load_err(d);
        assert!(err.contains("truncated") || err.contains("magic"), "{err}");
    }
    for i in 0..full_index.len() - 48 {
        // Every byte of the blocks is covered by a checksum.
        let mut bad = full_index.clone();
        bad[i] ^= 0x20;
        std::fs::write(&index, &bad).unwrap();
        assert!(Gpt::load(d).is_err(), "flipped index byte {i} went unnoticed");
    }
    reset();

    std::fs::write(&data, &full_data[..full_data.len() - 1]).unwrap();
    assert_contains(&load_err(d), "truncated");
    let mut bad = full_data.clone();
    bad[1234] ^= 1;
    std::fs::write(&data, &bad).unwrap();
    assert_contains(&load_err(d), "do not match their checksum");
    std::fs::remove_file(&data).unwrap();
    assert_contains(&load_err(d), "model.ckpt.data-00000-of-00001");
    reset();

    let hparams = d.join("hparams.json");
    let original = std::fs::read_to_string(&hparams).unwrap();
    std::fs::write(&hparams, original.replace("\"n_layer\": 2", "\"n_layer\": 3")).unwrap();
    assert_contains(&load_err(d), "model/h2/ln_1/g is missing");
    std::fs::write(&hparams, original.replace("\"n_embd\": 32", "\"n_embd\": 16")).unwrap();
    assert_contains(
        &load_err(d),
        "model/wte: it has shape [300, 32], hparams.json implies [300, 16]",
    );
    std::fs::write(&hparams, "{}").unwrap();
    assert_contains(&load_err(d), "hparams.json");
    std::fs::write(&hparams, &original).unwrap();
    Gpt::load(d).unwrap();
}

#[test]
fn tokenizers_are_found_beside_tensorflow_and_llmc_checkpoints() {
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/gpt2");
    let dir = copy_of("tf");
    for f in ["encoder.json", "vocab.bpe"] {
        std::fs::copy(data.join(f), dir.path().join(f)).unwrap();
    }
    let text = "Alan Turing theorized that computers would one day become";
    let tok = Tokenizer::load(dir.path()).unwrap();
    assert_eq!(tok.vocab_size(), 50257);
    assert_eq!(tok.encode(text).unwrap(), Tokenizer::gpt2().encode(text).unwrap());
    // A model file means its folder (llm.c's holds no tokenizer we read: GPT-2's).
    let tok = Tokenizer::load(&golden("llmc/model.bin")).unwrap();
    assert_eq!(tok.fingerprint(), Tokenizer::gpt2().fingerprint());
}

#[test]
fn the_fuzz_seeds_are_valid_checkpoints() {
    let seeds = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds");
    let mut n = 0;
    // The files directly in fuzz/seeds; other targets' seeds are in folders of their own.
    let files = std::fs::read_dir(seeds)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file());
    for seed in files {
        let bytes = std::fs::read(seed).unwrap();
        let len = u16::from_le_bytes([bytes[0], bytes[1]]) as usize;
        let (config, weights) = bytes[2..].split_at(len);
        parse_checkpoint(config, weights).unwrap();
        n += 1;
    }
    assert!(n >= 4);
}

#[test]
fn the_config_fuzz_seeds_parse_and_survive_a_round_trip() {
    let seeds = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds/config");
    let mut n = 0;
    for seed in std::fs::read_dir(seeds).unwrap() {
        let path = seed.unwrap().path();
        let config = GptConfig::from_json(&std::fs::read_to_string(&path).unwrap())
            .unwrap_or_else(|e| panic!("{}: {e:#}", path.display()));
        assert_eq!(
            GptConfig::from_json(&config.to_json()).unwrap(),
            config,
            "{}",
            path.display()
        );
        n += 1;
    }
    assert!(n >= 5);
}
