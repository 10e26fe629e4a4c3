//! Property tests of the GPT-2 BPE: exact round trip, decoding never panics,
//! the hand-written pre-tokenizer equals the regex, and cutting at piece
//! boundaries (what parallel encoding does) never changes the ids. The same
//! for the pre-tokenizers of Llama 3 and Qwen2.

use gpt::tokenizer::bpe::llama3;
use gpt::tokenizer::bpe::pre::{PreTokenizer, Step};
use gpt::tokenizer::bpe::pretokenize::{is_piece_boundary, pieces};
use gpt::tokenizer::Bpe;
use proptest::prelude::*;
use std::sync::OnceLock;

fn gpt2() -> &'static Bpe {
    static B: OnceLock<Bpe> = OnceLock::new();
    B.get_or_init(Bpe::gpt2)
}

fn pattern() -> &'static fancy_regex::Regex {
    static R: OnceLock<fancy_regex::Regex> = OnceLock::new();
    R.get_or_init(|| {
        fancy_regex::Regex::new(r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+").unwrap()
    })
}

/// Llama 3's pattern (`max_digits` 3) or Qwen2's (1).
fn llama3_pattern(max_digits: usize) -> &'static fancy_regex::Regex {
    static R: [OnceLock<fancy_regex::Regex>; 2] = [OnceLock::new(), OnceLock::new()];
    R[(max_digits == 3) as usize].get_or_init(|| {
        let digits = if max_digits == 3 { r"\p{N}{1,3}" } else { r"\p{N}" };
        let pattern = format!(
            r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{{L}}\p{{N}}]?\p{{L}}+|{digits}| ?[^\s\p{{L}}\p{{N}}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
        );
        fancy_regex::Regex::new(&pattern).unwrap()
    })
}

/// Text that hits the pattern's edges often: contractions, space runs of all
/// kinds, marks, digits, emoji, `<|endoftext|>`; mixed with any characters.
fn tricky_text() -> impl Strategy<Value = String> {
    let atoms = prop::sample::select(vec![
        "a",
        "Z",
        "é",
        "ß",
        "日本",
        "한",
        "ﬁ",
        "7",
        "٣",
        "Ⅻ",
        "½",
        " ",
        "  ",
        "\t",
        "\n",
        "\r\n",
        "\u{a0}",
        "\u{3000}",
        "\u{85}",
        "\u{2028}",
        "'",
        "'s",
        "'S",
        "'ll",
        "'LL",
        "'re",
        "'d",
        "'T",
        "'ſ",
        "'Ve",
        "\r",
        ".\n\n",
        " \n",
        "123",
        "’",
        "!",
        "?!",
        ".",
        "-",
        "\u{301}",
        "\u{200d}",
        "😀",
        "👨‍👩‍👧",
        "🇫🇷",
        "\u{feff}",
        "\0",
        "<|endoftext|>",
        "http://x.y/z?q=1",
    ]);
    let atom = prop_oneof![3 => atoms.prop_map(String::from), 1 => any::<char>().prop_map(String::from)];
    prop::collection::vec(atom, 0..40).prop_map(|v| v.concat())
}

fn any_text() -> impl Strategy<Value = String> {
    prop_oneof![tricky_text(), any::<String>()]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    #[test]
    fn decode_inverts_encode(text in any_text()) {
        let bpe = gpt2();
        prop_assert_eq!(bpe.decode(&bpe.encode(&text)).unwrap(), text.clone());
        prop_assert_eq!(bpe.decode_bytes(&bpe.encode_allowing_special(&text)).unwrap(), text.as_bytes());
    }

    #[test]
    fn decoding_any_ids_never_panics(ids in prop::collection::vec(prop_oneof![0u32..50_257, any::<u32>()], 0..50)) {
        let bpe = gpt2();
        let valid = ids.iter().all(|&id| id < 50_257);
        prop_assert_eq!(bpe.decode(&ids).is_ok(), valid);
        prop_assert_eq!(bpe.decode_bytes(&ids).is_ok(), valid);
    }

    #[test]
    fn pretokenizer_equals_the_regex(text in any_text()) {
        let want: Vec<&str> = pattern().find_iter(&text).map(|m| m.unwrap().as_str()).collect();
        let got: Vec<&str> = pieces(&text).collect();
        prop_assert_eq!(got, want);
    }

    #[test]
    fn llama3_and_qwen2_pretokenizers_equal_their_regexes(text in any_text()) {
        for max_digits in [3, 1] {
            let want: Vec<&str> = llama3_pattern(max_digits).find_iter(&text).map(|m| m.unwrap().as_str()).collect();
            let got: Vec<&str> = llama3::pieces(&text, max_digits).collect();
            prop_assert_eq!(got, want, "max_digits {}", max_digits);
        }
    }

    #[test]
    fn cutting_at_any_pre_tokenizers_boundaries_keeps_the_pieces(text in tricky_text()) {
        for steps in [
            vec![Step::Llama3 { max_digits: 3 }],
            vec![Step::Llama3 { max_digits: 1 }],
            vec![Step::Digits { individual: true }, Step::Gpt2],
            vec![Step::Digits { individual: false }, Step::Gpt2],
        ] {
            let pre = PreTokenizer::new(steps);
            let split = |t: &str| {
                let mut out = Vec::new();
                pre.for_each_piece(t, &mut |p| out.push(p.to_string()));
                out
            };
            let whole = split(&text);
            for at in (1..text.len()).filter(|&at| pre.is_piece_boundary(&text, at)) {
                prop_assert_eq!(&[split(&text[..at]), split(&text[at..])].concat(), &whole, "{} cut at {}", pre.describe(), at);
            }
        }
    }

    #[test]
    fn cutting_at_piece_boundaries_keeps_the_ids(text in tricky_text()) {
        let bpe = gpt2();
        let whole = bpe.encode(&text);
        for at in (1..text.len()).filter(|&at| is_piece_boundary(&text, at)) {
            let mut cut = bpe.encode(&text[..at]);
            cut.extend(bpe.encode(&text[at..]));
            prop_assert_eq!(&cut, &whole, "cut at {}", at);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(8))]

    /// Texts large enough (> 256 KiB, most of them) that encode_parallel splits them.
    #[test]
    fn parallel_equals_serial(lines in prop::collection::vec(tricky_text(), 1..30), repeat in 300usize..800) {
        let text = lines.join("\n").repeat(repeat);
        let bpe = gpt2();
        prop_assert_eq!(bpe.encode_parallel(&text, false), bpe.encode(&text));
        prop_assert_eq!(bpe.encode_parallel(&text, true), bpe.encode_allowing_special(&text));
    }
}
