//! Byte-level BPE from `tokenizer.json` and from GGUF metadata against ids
//! from Hugging Face `tokenizers` (tests/golden/hf_tokenizers/, regenerated
//! by scripts/gen_hf_tokenizer_golden.py): SmolLM2-135M-Instruct's tokenizer,
//! and small ones trained with Llama 3's and Qwen2's patterns and with the
//! remaining options. Identical ids, with and without special tokens, with
//! the post-processor's template, serial and parallel; decoding as
//! `tokenizers` decodes.

use gpt::tokenizer::{Bpe, GgufVocab, SpecialTokens, Tokenizer};
use serde::Deserialize;
use serde_json::Value;
use std::path::PathBuf;

#[derive(Deserialize)]
struct Golden {
    #[serde(default)]
    gguf: Option<GgufGolden>,
    tinyshakespeare: Corpus,
    cases: Vec<Case>,
}

/// What SmolLM2's GGUF file says beyond its tokens and merges.
#[derive(Deserialize)]
struct GgufGolden {
    pre: String,
    bos: u32,
    eos: u32,
    padding: u32,
    unknown: u32,
    add_bos: bool,
    control: Vec<u32>,
}

#[derive(Deserialize)]
struct Case {
    text: String,
    /// Special tokens matched.
    ids: Vec<u32>,
    /// Special tokens as text, when different.
    plain: Option<Vec<u32>>,
    /// With the post-processor's tokens, when different.
    template: Option<Vec<u32>>,
    /// What decoding `ids` gives, when not `text`.
    decoded: Option<String>,
}

#[derive(Deserialize)]
struct Corpus {
    path: String,
    tokens: usize,
    fnv1a64: String,
    first_ids: Vec<u32>,
}

fn dir(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden/hf_tokenizers")
        .join(name)
}

fn golden(name: &str) -> Golden {
    serde_json::from_slice(&std::fs::read(dir(name).join("golden.json")).unwrap()).unwrap()
}

fn tokenizer_json(name: &str) -> Value {
    serde_json::from_slice(&std::fs::read(dir(name).join("tokenizer.json")).unwrap()).unwrap()
}

fn fnv1a64(ids: &[u32]) -> u64 {
    let mut h: u64 = 0xCBF2_9CE4_8422_2325;
    for b in ids.iter().flat_map(|id| id.to_le_bytes()) {
        h = (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01B3);
    }
    h
}

/// Every case and the whole of tinyshakespeare give `tokenizers`' ids.
fn check(bpe: &Bpe, golden: &Golden) {
    assert!(golden.cases.len() >= 500, "only {} golden strings", golden.cases.len());
    let mut failures = Vec::new();
    for c in &golden.cases {
        let special = bpe.encode_allowing_special(&c.text);
        let plain = bpe.encode(&c.text);
        let template = bpe.post_process(&special);
        for (what, got, want) in [
            ("ids", &special, &c.ids),
            ("plain", &plain, c.plain.as_ref().unwrap_or(&c.ids)),
            ("template", &template, c.template.as_ref().unwrap_or(&c.ids)),
        ] {
            if got != want {
                failures.push(format!(
                    "{:?} ({what})\n  ours:       {got:?}\n  tokenizers: {want:?}",
                    c.text
                ));
            }
        }
        assert_eq!(bpe.encode_parallel(&c.text, true), special, "{:?}", c.text);
        assert_eq!(bpe.encode_parallel(&c.text, false), plain, "{:?}", c.text);
        let decoded = bpe.decode(&c.ids).unwrap();
        assert_eq!(&decoded, c.decoded.as_ref().unwrap_or(&c.text), "decoding {:?}", c.ids);
    }
    assert!(
        failures.is_empty(),
        "{} differ:\n{}",
        failures.len(),
        failures.iter().take(20).cloned().collect::<Vec<_>>().join("\n")
    );
    let g = &golden.tinyshakespeare;
    let text = std::fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(&g.path)).unwrap();
    let ids = bpe.encode_parallel(&text, true);
    assert_eq!(ids.len(), g.tokens);
    assert_eq!(&ids[..g.first_ids.len()], g.first_ids);
    assert_eq!(format!("{:016x}", fnv1a64(&ids)), g.fnv1a64);
    assert_eq!(bpe.encode_allowing_special(&text), ids, "serial and parallel differ");
}

fn load(name: &str) -> Bpe {
    Bpe::load_tokenizer_json(&dir(name)).unwrap()
}

#[test]
fn smollm2_matches_tokenizers() {
    let bpe = load("smollm2");
    check(&bpe, &golden("smollm2"));
    // From tokenizer_config.json; the end of turn found by its text.
    let want = SpecialTokens {
        bos: Some(1),
        eos: Some(2),
        pad: Some(2),
        eot: Some(2),
        unk: Some(0),
    };
    assert_eq!(bpe.special_tokens(), want);
    assert_eq!(bpe.endoftext(), Some(0));
    assert_eq!(bpe.vocab_size(), 49152);
    assert_eq!(bpe.decode(&[1, 2]).unwrap(), "<|im_start|><|im_end|>");
    let tok = Tokenizer::load(&dir("smollm2")).unwrap();
    assert_eq!((tok.name(), tok.fingerprint()), ("hf", bpe.fingerprint()));
    assert_eq!(tok.document_separator(), Some(0));
}

#[test]
fn llama3_style_matches_tokenizers() {
    let bpe = load("llama3");
    check(&bpe, &golden("llama3"));
    let s = bpe.special_tokens();
    let id = |t: &str| bpe.token_id(t);
    assert_eq!(
        (s.bos, s.eos, s.eot),
        (id("<|begin_of_text|>"), id("<|end_of_text|>"), id("<|eot_id|>"))
    );
    assert_eq!(bpe.post_process(&[7]), [s.bos.unwrap(), 7]);
}

#[test]
fn qwen2_style_matches_tokenizers() {
    let bpe = load("qwen2");
    check(&bpe, &golden("qwen2"));
    let s = bpe.special_tokens();
    let id = |t: &str| bpe.token_id(t);
    assert_eq!((s.bos, s.eos, s.pad), (None, id("<|im_end|>"), id("<|endoftext|>")));
    assert_eq!(bpe.post_process(&[7]), [7]);
}

#[test]
fn prefix_space_digit_runs_unknown_bytes_and_strip_flags_match_tokenizers() {
    let bpe = load("flags");
    check(&bpe, &golden("flags"));
    // No tokenizer_config.json: BOS and EOS guessed from the usual texts.
    assert_eq!(bpe.special_tokens().eos, bpe.token_id("<|endoftext|>"));
    assert_eq!(bpe.special_tokens().unk, Some(0));
}

/// A GGUF file's tokenizer.ggml.* values for a tokenizer.json, as llama.cpp's
/// convert script writes them: tokens in id order (added tokens as their
/// text), special added tokens control, other added tokens user-defined.
fn gguf_values(name: &str, pre: &str) -> GgufVocab {
    let json = tokenizer_json(name);
    let vocab = json["model"]["vocab"].as_object().unwrap();
    let added = json["added_tokens"].as_array().unwrap();
    let n = vocab.len().max(
        added
            .iter()
            .map(|a| a["id"].as_u64().unwrap() as usize + 1)
            .max()
            .unwrap_or(0),
    );
    let mut tokens = vec![String::new(); n];
    let mut token_types = vec![1; n];
    for (text, id) in vocab {
        tokens[id.as_u64().unwrap() as usize] = text.clone();
    }
    for a in added {
        let id = a["id"].as_u64().unwrap() as usize;
        tokens[id] = a["content"].as_str().unwrap().to_string();
        token_types[id] = if a["special"].as_bool().unwrap() { 3 } else { 4 };
    }
    let merges = json["model"]["merges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| match m {
            Value::String(s) => s.clone(),
            pair => format!("{} {}", pair[0].as_str().unwrap(), pair[1].as_str().unwrap()),
        })
        .collect();
    GgufVocab {
        model: "gpt2".to_string(),
        pre: Some(pre.to_string()),
        tokens,
        token_types,
        merges,
        ..GgufVocab::default()
    }
}

#[test]
fn smollm2_from_gguf_metadata_matches_tokenizers() {
    let golden = golden("smollm2");
    let g = golden.gguf.as_ref().unwrap();
    let mut v = gguf_values("smollm2", &g.pre);
    let control: Vec<u32> = (0..v.tokens.len() as u32)
        .filter(|&id| v.token_types[id as usize] == 3)
        .collect();
    assert_eq!(
        control, g.control,
        "the GGUF's control tokens are tokenizer.json's special ones"
    );
    v.bos = Some(g.bos);
    v.eos = Some(g.eos);
    v.pad = Some(g.padding);
    v.unk = Some(g.unknown);
    v.add_bos = Some(g.add_bos);
    let bpe = Bpe::from_gguf(&v).unwrap();
    check(&bpe, &golden);
    assert_eq!(bpe.fingerprint(), load("smollm2").fingerprint());
    let s = bpe.special_tokens();
    assert_eq!(
        (s.bos, s.eos, s.pad, s.eot, s.unk),
        (Some(1), Some(2), Some(2), Some(2), Some(0))
    );
}

#[test]
fn llama3_and_qwen2_from_gguf_metadata_match_tokenizers() {
    for (name, pre) in [("llama3", "llama-bpe"), ("qwen2", "qwen2")] {
        let mut v = gguf_values(name, pre);
        let bos = v
            .tokens
            .iter()
            .position(|t| t == "<|begin_of_text|>")
            .map(|id| id as u32);
        v.bos = bos;
        // llama-bpe adds BOS unless the file says otherwise, qwen2 does not.
        let bpe = Bpe::from_gguf(&v).unwrap();
        check(&bpe, &golden(name));
        assert_eq!(bpe.fingerprint(), load(name).fingerprint(), "{name}");
    }
}

/// `bpe` written as tokenizer.json + tokenizer_config.json and read back.
fn written_and_read(bpe: &Bpe) -> Bpe {
    let dir = tempfile::tempdir().unwrap();
    bpe.save(dir.path()).unwrap();
    assert!(!dir.path().join("vocab.json").exists());
    let back = Tokenizer::load(dir.path()).unwrap();
    let Tokenizer::Bpe(back) = back else {
        panic!("a BPE reads back as a BPE")
    };
    assert_eq!(back.fingerprint(), bpe.fingerprint());
    assert_eq!(back.special_tokens(), bpe.special_tokens());
    assert_eq!(back.template(), bpe.template());
    back
}

/// What a model fine-tuned from a GGUF file (or a tokenizer.json) saves is a
/// tokenizer.json that encodes as `tokenizers` does: the same ids, specials and template.
#[test]
fn tokenizers_written_as_tokenizer_json_read_back_the_same() {
    for name in ["smollm2", "llama3", "qwen2", "flags"] {
        check(&written_and_read(&load(name)), &golden(name));
    }
    let golden = golden("smollm2");
    let g = golden.gguf.as_ref().unwrap();
    let mut v = gguf_values("smollm2", &g.pre);
    (v.bos, v.eos, v.pad, v.unk) = (Some(g.bos), Some(g.eos), Some(g.padding), Some(g.unknown));
    written_and_read(&Bpe::from_gguf(&v).unwrap());
}

/// GPT-2's tokenizer.json, as the Hub has it, is the built-in GPT-2 tokenizer.
#[test]
fn gpt2_tokenizer_json_is_gpt2() {
    let data = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("data/gpt2");
    let vocab: Value = serde_json::from_slice(&std::fs::read(data.join("encoder.json")).unwrap()).unwrap();
    let merges_text = std::fs::read_to_string(data.join("vocab.bpe")).unwrap();
    let merges: Vec<&str> = merges_text.lines().skip(1).filter(|l| !l.is_empty()).collect();
    let byte_level =
        serde_json::json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true});
    let json = serde_json::json!({
        "version": "1.0",
        "added_tokens": [{"id": 50256, "content": "<|endoftext|>", "single_word": false, "lstrip": false,
                          "rstrip": false, "normalized": true, "special": true}],
        "normalizer": null,
        "pre_tokenizer": byte_level,
        "post_processor": byte_level,
        "decoder": byte_level,
        "model": {"type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": "",
                  "end_of_word_suffix": "", "fuse_unk": false, "vocab": vocab, "merges": merges},
    });
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("tokenizer.json"), json.to_string()).unwrap();
    let tok = Tokenizer::load(tmp.path()).unwrap();
    let gpt2 = Tokenizer::gpt2();
    assert_eq!(tok.fingerprint(), gpt2.fingerprint());
    let text = "Hello<|endoftext|> world's 123 \u{3000}\n\n  x";
    assert_eq!(tok.encode(text).unwrap(), gpt2.encode(text).unwrap());
    let Tokenizer::Bpe(bpe) = tok else {
        panic!("BPE expected")
    };
    assert_eq!(
        bpe.encode_allowing_special(text),
        Bpe::gpt2().encode_allowing_special(text)
    );
    assert_eq!(bpe.special_tokens().eos, Some(50256));
}

/// A change to a valid input that makes it invalid.
type Edit<T> = Box<dyn Fn(&mut T)>;

/// What is not supported is refused, naming the part.
#[test]
fn unsupported_tokenizer_json_gives_clear_errors() {
    let base = tokenizer_json("qwen2");
    let err = |edit: &dyn Fn(&mut Value)| {
        let mut json = base.clone();
        edit(&mut json);
        format!("{:#}", Bpe::from_tokenizer_json(&json.to_string(), None).unwrap_err())
    };
    let cases: Vec<(&str, Edit<Value>)> = vec![
        (
            "normalizer NFC is not supported",
            Box::new(|j| j["normalizer"] = serde_json::json!({"type": "NFC"})),
        ),
        (
            "model WordPiece is not supported",
            Box::new(|j| j["model"]["type"] = "WordPiece".into()),
        ),
        (
            "byte_fallback is not supported",
            Box::new(|j| j["model"]["byte_fallback"] = true.into()),
        ),
        (
            "dropout is not supported",
            Box::new(|j| j["model"]["dropout"] = 0.1.into()),
        ),
        (
            "continuing_subword_prefix \"##\"",
            Box::new(|j| j["model"]["continuing_subword_prefix"] = "##".into()),
        ),
        (
            "pre-tokenizer Metaspace is not supported",
            Box::new(|j| j["pre_tokenizer"] = serde_json::json!({"type": "Metaspace"})),
        ),
        (
            "pattern {\"Regex\":\"\\\\d+\"} is not supported",
            Box::new(|j| j["pre_tokenizer"]["pretokenizers"][0]["pattern"] = serde_json::json!({"Regex": "\\d+"})),
        ),
        (
            "only behavior Isolated",
            Box::new(|j| j["pre_tokenizer"]["pretokenizers"][0]["behavior"] = "Removed".into()),
        ),
        (
            "Digits after ByteLevel is not supported",
            Box::new(|j| {
                let p = j["pre_tokenizer"]["pretokenizers"].as_array_mut().unwrap();
                p.push(serde_json::json!({"type": "Digits", "individual_digits": true}));
            }),
        ),
        (
            "needs ByteLevel",
            Box::new(|j| j["pre_tokenizer"] = serde_json::json!({"type": "Digits", "individual_digits": true})),
        ),
        (
            "decoder WordPiece is not supported",
            Box::new(|j| j["decoder"] = serde_json::json!({"type": "WordPiece"})),
        ),
        (
            "post-processor RobertaProcessing is not supported",
            Box::new(|j| j["post_processor"] = serde_json::json!({"type": "RobertaProcessing"})),
        ),
        (
            "single_word is not supported",
            Box::new(|j| j["added_tokens"][0]["single_word"] = true.into()),
        ),
        (
            "\"nope\" is not in model.vocab",
            Box::new(|j| j["model"]["merges"][3] = serde_json::json!(["nope", "a"])),
        ),
        (
            "ids must be dense",
            Box::new(|j| j["added_tokens"][0]["id"] = 90000.into()),
        ),
        ("not a tokenizer.json", Box::new(|j| *j = serde_json::json!([1, 2]))),
    ];
    for (want, edit) in cases {
        let got = err(&*edit);
        assert!(got.contains(want), "expected {want:?} in: {got}");
    }
    let config = r#"{"eos_token": "<|nope|>"}"#;
    let got = format!(
        "{:#}",
        Bpe::from_tokenizer_json(&base.to_string(), Some(config)).unwrap_err()
    );
    assert!(got.contains("eos_token: \"<|nope|>\" is not a token"), "{got}");
}

#[test]
fn unsupported_gguf_metadata_gives_clear_errors() {
    let base = gguf_values("qwen2", "qwen2");
    let err = |edit: &dyn Fn(&mut GgufVocab)| {
        let mut v = base.clone();
        edit(&mut v);
        format!("{:#}", Bpe::from_gguf(&v).unwrap_err())
    };
    let cases: Vec<(&str, Edit<GgufVocab>)> = vec![
        (
            "tokenizer.ggml.model \"llama\" is not supported",
            Box::new(|v| v.model = "llama".into()),
        ),
        (
            "tokenizer.ggml.pre \"default\" is not supported",
            Box::new(|v| v.pre = None),
        ),
        (
            "tokenizer.ggml.pre \"tekken\" is not supported",
            Box::new(|v| v.pre = Some("tekken".into())),
        ),
        ("2 entries for 2005 tokens", Box::new(|v| v.token_types.truncate(2))),
        (
            "merges[5]: expected \"left right\"",
            Box::new(|v| v.merges[5] = "ab".into()),
        ),
        (
            "merges[5]: \"zzz\" is not a token",
            Box::new(|v| v.merges[5] = "zzz a".into()),
        ),
        (
            "tokens[7] \"a b\" is not byte-level text",
            Box::new(|v| v.tokens[7] = "a b".into()),
        ),
        ("BOS token id 99999 is outside", Box::new(|v| v.bos = Some(99_999))),
        (
            "add_bos_token is true but tokenizer.ggml.bos_token_id is not set",
            Box::new(|v| v.add_bos = Some(true)),
        ),
        ("tokenizer.ggml.tokens is empty", Box::new(|v| v.tokens.clear())),
    ];
    for (want, edit) in cases {
        let got = err(&*edit);
        assert!(got.contains(want), "expected {want:?} in: {got}");
    }
}
