//! `gpt tokenizer train`'s library side on tinyshakespeare, against the ids
//! Hugging Face `tokenizers` gave for the same vocabulary
//! (tests/golden/bpe_train_golden.json, from scripts/check_bpe_tokenizer_train.py).

use gpt::tokenizer::bpe::train::train;
use gpt::tokenizer::Bpe;
use serde::Deserialize;

#[derive(Deserialize)]
struct TrainGolden {
    vocab_size: usize,
    merges_fnv1a64: String,
    corpus_tokens: usize,
    corpus_ids_fnv1a64: String,
}

fn fnv1a64(bytes: impl IntoIterator<Item = u8>) -> String {
    let mut h: u64 = 0xCBF2_9CE4_8422_2325;
    for b in bytes {
        h = (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01B3);
    }
    format!("{h:016x}")
}

#[test]
fn tinyshakespeare_vocab_matches_hugging_face_ids() {
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
