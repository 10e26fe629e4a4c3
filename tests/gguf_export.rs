//! `gpt quantize` / [`model::write_gguf`]: a model written as GGUF reads
//! back as the same model. In f32 every weight, the config, the tokenizer
//! and the chat template come back exactly (the layout is the inverse of
//! the reader's, which the GGUF golden tests check against `transformers`);
//! quantized, each matrix holds the blocks our quantizer gives it.
//! Whether llama.cpp runs the files: scripts/check_quantize_llamacpp.py.

use gpt::model::{self, Dtype, GgufMeta, Gpt, GptConfig, Init, LoadOptions, Loaded};
use gpt::tensor::quant::Kind;
use gpt::tokenizer::{CharTokenizer, Tokenizer};
use std::path::{Path, PathBuf};

mod common;
use common::golden::assert_same_weights;
use common::{fails_with, gpt, succeeds};

fn golden(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden/gguf_models")
        .join(name)
}

fn load(path: &Path, dtype: Dtype) -> Loaded {
    model::load(
        path.to_str().unwrap(),
        &LoadOptions {
            dtype,
            ..Default::default()
        },
    )
    .unwrap()
}

fn write(m: &Loaded, kind: Kind, path: &Path) {
    let meta = GgufMeta {
        name: "test",
        tokenizer: &m.tokenizer,
        chat_template: m.chat.template.as_deref(),
    };
    model::write_gguf(&m.model, &meta, kind, path).unwrap();
}

const TEXTS: [&str; 5] = [
    "Hello world! 12345 tokens",
    "  whitespace\n\n\tand\ttabs  ",
    "emoji 🦀 and 中文",
    "<|endoftext|> inside text",
    "",
];

fn same_tokenizer(a: &Tokenizer, b: &Tokenizer, what: &str) {
    assert_eq!(a.vocab_size(), b.vocab_size(), "{what}");
    assert_eq!(a.special_tokens(), b.special_tokens(), "{what}");
    for text in TEXTS {
        // What a character vocabulary cannot encode, it refuses; the file's BPE drops it.
        if let Ok(ids) = a.encode(text) {
            assert_eq!(ids, b.encode(text).unwrap(), "{what}: {text:?}");
        }
    }
}

#[test]
fn f32_files_read_back_as_the_same_model_tokenizer_and_template() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["gpt2.gguf", "llama.gguf", "gqa_tied.gguf", "gqa_llama3_tied.gguf"] {
        let m = load(&golden(name), Dtype::F32);
        let out = dir.path().join(name);
        write(&m, Kind::F32, &out);
        let back = load(&out, Dtype::F32);
        assert_same_weights(&m.model, &back.model, name);
        same_tokenizer(&m.tokenizer, &back.tokenizer, name);
        assert_eq!(m.chat.template, back.chat.template, "{name}");
        assert_eq!(m.chat.stop_ids, back.chat.stop_ids, "{name}");
    }
}

#[test]
fn quantized_files_hold_our_quantizers_blocks() {
    let dir = tempfile::tempdir().unwrap();
    for kind in [Kind::Q8_0, Kind::Q4_0, Kind::Q4_1] {
        for name in ["gpt2.gguf", "llama.gguf", "gqa_tied.gguf"] {
            let m = load(&golden(name), Dtype::F32);
            let out = dir.path().join(format!("{kind}_{name}"));
            write(&m, kind, &out);
            let back = load(&out, Dtype::Stored);
            let mut want = load(&golden(name), Dtype::F32).model;
            want.quantize(kind).unwrap();
            let (p, q) = (&want.params, &back.model.params);
            assert_eq!(p.names, q.names, "{kind} {name}");
            for (i, n) in p.names.iter().enumerate() {
                let embedding = n.contains("wte") || n.contains("embed_tokens") || n == "lm_head.weight";
                match (&p.quant[i], &q.quant[i]) {
                    // The token embedding and the output layer stay 8-bit in 4-bit files.
                    (Some(_), Some(b)) if embedding && kind != Kind::Q8_0 => {
                        assert_eq!(b.kind(), Kind::Q8_0, "{kind} {name}: {n}")
                    }
                    (Some(a), Some(b)) => assert!(a.bytes() == b.bytes(), "{kind} {name}: {n}"),
                    (None, None) => assert_eq!(p.tensors[i].data, q.tensors[i].data, "{kind} {name}: {n}"),
                    (a, b) => panic!("{kind} {name}: {n} quantized {} vs {}", a.is_some(), b.is_some()),
                }
            }
        }
    }
}

#[test]
fn character_and_gpt2_vocabularies_are_written_as_llama_cpp_reads_them() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = gpt::tensor::rng(1);
    // A names model: characters, BOS last, BOS added before each text.
    let chars = CharTokenizer::from_docs(&["emma", "olivia", "ava"]);
    let config = GptConfig {
        // What the file's tokenizer says, as a GGUF file's config has it.
        bos_token_id: Some(chars.bos()),
        eos_token_id: vec![chars.bos()],
        ..GptConfig::gpt2(chars.vocab_size(), 16, 8, 2, 1)
    };
    let names = Loaded {
        model: Gpt::new(config.clone(), Init::Gpt2, &mut rng),
        tokenizer: Tokenizer::Char(chars),
        path: dir.path().to_path_buf(),
        chat: Default::default(),
    };
    let out = dir.path().join("names.gguf");
    write(&names, Kind::F32, &out);
    let back = load(&out, Dtype::F32);
    assert_same_weights(&names.model, &back.model, "names");
    same_tokenizer(&names.tokenizer, &back.tokenizer, "names");
    for doc in ["emma", "ava", "mave"] {
        assert_eq!(
            back.tokenizer.encode(doc).unwrap(),
            names.tokenizer.encode(doc).unwrap(),
            "{doc}"
        );
    }
    let Tokenizer::Bpe(bpe) = &back.tokenizer else {
        panic!("a GGUF tokenizer is a BPE")
    };
    // BOS (id 7, after a e i l m o v) goes before each text, as our documents start.
    assert_eq!(bpe.template(), (&[7u32][..], &[][..]));
    // Not ASCII: llama.cpp would need merges the vocabulary lacks.
    let wide = Loaded {
        tokenizer: Tokenizer::Char(CharTokenizer::from_docs(&["zoë"])),
        model: Gpt::new(GptConfig::gpt2(4, 16, 8, 2, 1), Init::Gpt2, &mut rng),
        ..names
    };
    let meta = GgufMeta {
        name: "wide",
        tokenizer: &wide.tokenizer,
        chat_template: None,
    };
    let err = model::write_gguf(&wide.model, &meta, Kind::F32, &dir.path().join("wide.gguf")).unwrap_err();
    assert!(format!("{err:#}").contains("'ë'"), "{err:#}");
    assert!(!dir.path().join("wide.gguf").exists());

    // GPT-2's own vocabulary, special token and all.
    let gpt2 = Loaded {
        model: Gpt::new(GptConfig::gpt2(50257, 16, 8, 2, 1), Init::Gpt2, &mut rng),
        tokenizer: Tokenizer::gpt2(),
        path: dir.path().to_path_buf(),
        chat: Default::default(),
    };
    let out = dir.path().join("gpt2.gguf");
    write(&gpt2, Kind::Q8_0, &out);
    let back = load(&out, Dtype::F32);
    same_tokenizer(&gpt2.tokenizer, &back.tokenizer, "gpt2");
}

#[test]
fn models_llama_cpp_cannot_describe_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = gpt::tensor::rng(1);
    let chars = CharTokenizer::from_docs(&["emma"]);
    let micro = Loaded {
        model: Gpt::new(GptConfig::microgpt(chars.vocab_size()), Init::Normal(0.08), &mut rng),
        tokenizer: Tokenizer::Char(chars),
        path: dir.path().to_path_buf(),
        chat: Default::default(),
    };
    let meta = GgufMeta {
        name: "micro",
        tokenizer: &micro.tokenizer,
        chat_template: None,
    };
    let err = model::write_gguf(&micro.model, &meta, Kind::Q8_0, &dir.path().join("m.gguf")).unwrap_err();
    assert!(err.to_string().contains("only GPT-2 and Llama models"), "{err:#}");
    // A tokenizer of another size than the embedding.
    let m = load(&golden("llama.gguf"), Dtype::F32);
    let meta = GgufMeta {
        name: "x",
        tokenizer: &Tokenizer::gpt2(),
        chat_template: None,
    };
    let err = model::write_gguf(&m.model, &meta, Kind::Q8_0, &dir.path().join("x.gguf")).unwrap_err();
    assert!(err.to_string().contains("the tokenizer has 50257 ids"), "{err:#}");
}

#[test]
fn cli_quantize_writes_a_file_generate_runs_and_never_overwrites_unasked() {
    let dir = tempfile::tempdir().unwrap();
    let input = golden("llama.gguf");
    let (input, out) = (input.to_str().unwrap(), dir.path().join("q.gguf"));
    let out = out.to_str().unwrap();
    let done = succeeds(gpt(&["quantize", input, out, "--to", "q4_1"]));
    let said = String::from_utf8_lossy(&done.stderr);
    assert!(said.contains("wrote") && said.contains("Q4_1"), "{said}");
    let before = std::fs::read(out).unwrap();
    fails_with(&gpt(&["quantize", input, out, "--to", "q8_0"]), "pass --overwrite");
    assert_eq!(std::fs::read(out).unwrap(), before, "refused, yet the file changed");
    succeeds(gpt(&["quantize", input, out, "--to", "q8_0", "--overwrite"]));
    assert_ne!(std::fs::read(out).unwrap(), before);
    fails_with(&gpt(&["quantize", input, out, "--to", "q2_k"]), "q4_1");
    fails_with(
        &gpt(&["quantize", input, dir.path().to_str().unwrap(), "--to", "q8_0"]),
        "is a directory",
    );
    let ran = succeeds(gpt(&[
        "generate",
        "--model",
        out,
        "-n",
        "4",
        "--temperature",
        "0",
        "hello",
    ]));
    assert!(!ran.stdout.is_empty());
}

#[test]
fn a_tokenizer_vocab_json_cannot_hold_is_saved_as_tokenizer_json() {
    // The tiny Llama's tokenizer has added tokens (<|im_start|>, ...): a run fine-tuned from it keeps them.
    let m = load(&golden("llama.gguf"), Dtype::F32);
    let Tokenizer::Bpe(bpe) = &m.tokenizer else {
        panic!("a GGUF tokenizer is a BPE")
    };
    let dir = tempfile::tempdir().unwrap();
    bpe.save(dir.path()).unwrap();
    assert!(dir.path().join("tokenizer.json").is_file());
    assert!(dir.path().join("tokenizer_config.json").is_file());
    assert!(!dir.path().join("vocab.json").exists());
    let back = Tokenizer::load(dir.path()).unwrap();
    same_tokenizer(&m.tokenizer, &back, "saved");
    assert_eq!(back.fingerprint(), m.tokenizer.fingerprint());
}

#[test]
fn a_gguf_model_fine_tunes_into_a_run_that_generates_and_quantizes() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("text.txt");
    std::fs::write(&data, "The quick brown fox jumps over the lazy dog. ".repeat(400)).unwrap();
    let run = dir.path().join("run");
    let (run_s, data_s) = (run.to_str().unwrap(), data.to_str().unwrap());
    let init = golden("llama.gguf");
    succeeds(gpt(&[
        "train",
        "--init",
        init.to_str().unwrap(),
        "--data",
        data_s,
        "--out",
        run_s,
        "--steps",
        "2",
        "--n-ctx",
        "16",
        "--batch-size",
        "2",
        "--quiet",
    ]));
    assert!(run.join("tokenizer.json").is_file());
    let ran = succeeds(gpt(&[
        "generate",
        "--model",
        run_s,
        "-n",
        "4",
        "--temperature",
        "0",
        "The quick",
    ]));
    assert!(!ran.stdout.is_empty());
    let out = dir.path().join("run.q8_0.gguf");
    succeeds(gpt(&["quantize", run_s, out.to_str().unwrap(), "--to", "q8_0"]));
}
