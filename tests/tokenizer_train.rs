//! `gpt tokenizer train`'s library side against Hugging Face `tokenizers`:
//! - on a slice of tinyshakespeare, the merges and vocabulary of HF's
//!   `BpeTrainer` (tests/golden/bpe_trainer_hf.json, from
//!   scripts/gen_bpe_trainer_golden.py);
//! - on the whole of it, the merges that scripts/check_bpe_tokenizer_train.py
//!   found identical to `BpeTrainer`'s, and the ids HF's encoder gave for them
//!   (tests/golden/bpe_train_golden.json).

use gpt::tokenizer::bpe::train::train;
use gpt::tokenizer::bpe::ENDOFTEXT;
use gpt::tokenizer::Bpe;
use serde::Deserialize;
use std::collections::HashMap;

#[derive(Deserialize)]
struct TrainGolden {
    vocab_size: usize,
    merges_fnv1a64: String,
    corpus_tokens: usize,
    corpus_ids_fnv1a64: String,
}

/// What HF's `BpeTrainer` learned from the first `bytes` of `corpus`.
#[derive(Deserialize)]
struct HfTrainerGolden {
    corpus: String,
    bytes: usize,
    vocab_size: usize,
    min_frequency: u64,
    special_tokens: Vec<String>,
    /// How many merges beat a pair of the same count (on smaller ids).
    merges_won_on_ties: usize,
    /// `merges.txt` lines: "left right" in byte-level characters.
    merges: Vec<String>,
    /// HF's ids: its special tokens first.
    vocab: HashMap<String, u32>,
}

fn fnv1a64(bytes: impl IntoIterator<Item = u8>) -> String {
    let mut h: u64 = 0xCBF2_9CE4_8422_2325;
    for b in bytes {
        h = (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01B3);
    }
    format!("{h:016x}")
}

#[test]
fn merges_match_hugging_face_bpe_trainer_ties_included() {
    let root = env!("CARGO_MANIFEST_DIR");
    let golden: HfTrainerGolden =
        serde_json::from_slice(&std::fs::read(format!("{root}/tests/golden/bpe_trainer_hf.json")).unwrap()).unwrap();
    // Our trainer's settings: no minimum count, `<|endoftext|>` its one special token.
    assert_eq!(golden.min_frequency, 0);
    assert_eq!(golden.special_tokens, [ENDOFTEXT]);
    assert!(
        golden.merges_won_on_ties > 0,
        "the golden does not exercise the tie-break"
    );
    let text = std::fs::read_to_string(format!("{root}/{}", golden.corpus)).unwrap();
    let bpe = train(&[&text[..golden.bytes]], golden.vocab_size, |_, _| {}).unwrap();

    let ours: Vec<String> = bpe.merges_txt().lines().skip(1).map(String::from).collect(); // after "#version"
    let differ = (0..ours.len().max(golden.merges.len())).find(|&i| ours.get(i) != golden.merges.get(i));
    if let Some(i) = differ {
        panic!(
            "merge {i}: ours {:?}, HF {:?} ({} merges vs {})",
            ours.get(i),
            golden.merges.get(i),
            ours.len(),
            golden.merges.len()
        );
    }
    // The one difference: HF numbers its special tokens first, we put
    // `<|endoftext|>` last as GPT-2 does; every other id is one less.
    assert_eq!(golden.vocab[ENDOFTEXT], 0);
    let last = golden.vocab_size as u32 - 1;
    let want: HashMap<String, u32> = golden
        .vocab
        .iter()
        .map(|(token, &id)| (token.clone(), if token == ENDOFTEXT { last } else { id - 1 }))
        .collect();
    let got: HashMap<String, u32> = serde_json::from_str(&bpe.vocab_json()).unwrap();
    assert_eq!(got, want);
}

#[test]
fn tinyshakespeare_merges_and_ids_match_hugging_face_trainer_and_encoder() {
    let root = env!("CARGO_MANIFEST_DIR");
    let golden: TrainGolden =
        serde_json::from_slice(&std::fs::read(format!("{root}/tests/golden/bpe_train_golden.json")).unwrap()).unwrap();
    let text = std::fs::read_to_string(format!("{root}/data/tinyshakespeare.txt")).unwrap();
    let mut calls = 0;
    let bpe = train(&[&text], golden.vocab_size, |done, total| {
        calls += 1;
        assert!(done <= total);
    })
    .unwrap();
    assert_eq!(calls, golden.vocab_size - 257);
    assert_eq!(bpe.vocab_size(), golden.vocab_size);
    assert_eq!(fnv1a64(bpe.merges_txt().into_bytes()), golden.merges_fnv1a64);

    let dir = tempfile::tempdir().unwrap();
    bpe.save(dir.path()).unwrap();
    let loaded = Bpe::load(dir.path()).unwrap();
    let ids = loaded.encode_parallel(&text, false);
    assert_eq!(ids.len(), golden.corpus_tokens);
    assert_eq!(
        fnv1a64(ids.iter().flat_map(|id| id.to_le_bytes())),
        golden.corpus_ids_fnv1a64
    );
    assert_eq!(bpe.encode(&text), ids);
    assert_eq!(loaded.decode(&ids).unwrap(), text);
}

#[test]
fn training_is_deterministic_and_files_add_up() {
    let text = "the cat sat on the mat; the dog sat on the log.\n".repeat(20);
    let whole = train(&[&text], 270, |_, _| {}).unwrap();
    assert_eq!(whole.vocab_size(), 270);
    assert_eq!(
        whole.fingerprint(),
        train(&[&text], 270, |_, _| {}).unwrap().fingerprint()
    );
    // Two files cut at a piece boundary count the same words as one.
    let at = text.len() / 2 + text[text.len() / 2..].find('\n').unwrap();
    let halves = train(&[&text[..at], &text[at..]], 270, |_, _| {}).unwrap();
    assert_eq!(halves.fingerprint(), whole.fingerprint());
    // Cut inside a word, the counts (and so the merges) differ.
    let split = train(&[&text[..at - 2], &text[at - 2..]], 270, |_, _| {}).unwrap();
    assert_ne!(split.fingerprint(), whole.fingerprint());
}
