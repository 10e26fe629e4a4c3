#!/usr/bin/env python3
"""Regenerates tests/golden/bpe_trainer_hf.json: the merges and vocabulary that
Hugging Face `tokenizers`' BpeTrainer learns from the first LINES lines of
data/tinyshakespeare.txt, the reference tests/tokenizer_train.rs holds
`gpt tokenizer train` (src/tokenizer/bpe/train.rs) to.

The trainer is set up as GPT-2's tokenizer and as ours: ByteLevel
pre-tokenizer (GPT-2's pattern, no prefix space), all 256 bytes in the
initial alphabet, `<|endoftext|>` its one special token, min_frequency 0
(every pair that occurs can merge; ours has no minimum), VOCAB ids in all.

How BpeTrainer picks each merge (tokenizers/src/models/bpe/trainer.rs): the
pair with the largest count over the distinct words (weighted by their
counts), ties to the smallest (left id, right id) (`Merge`'s `Ord`). Its ids
are the special tokens first, then the alphabet sorted by code point (for
ByteLevel's characters, GPT-2's byte order), then each merged token in order.
Ours are the same but for `<|endoftext|>`, which we put last, as GPT-2 does:
HF id i > 0 is our i - 1, HF 0 is our last. The script replays every merge
from exact pair counts to check that rule, and counts the merges it decided
between pairs of equal count (`merges_won_on_ties`), so the golden covers
the tie-break.

    ~/.cache/gpt-venv/bin/python scripts/gen_bpe_trainer_golden.py
"""
import json
from collections import Counter
from pathlib import Path

import tokenizers
from tokenizers import Tokenizer, models, pre_tokenizers, trainers

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT / "data" / "tinyshakespeare.txt"
OUT = ROOT / "tests" / "golden" / "bpe_trainer_hf.json"
LINES, VOCAB = 1000, 400
EOT = "<|endoftext|>"


def hf_train(text, vocab_size):
    """HF BpeTrainer on `text` (one sequence) as described above: (merges as "left right", vocab)."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, min_frequency=0, special_tokens=[EOT],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False,
    )
    tok.train_from_iterator([text], trainer=trainer)
    model = json.loads(tok.to_str())["model"]
    merges = [m if isinstance(m, str) else " ".join(m) for m in model["merges"]]
    return merges, model["vocab"]


def ties_won(text, merges, vocab):
    """Replays `merges` from exact pair counts over the pre-tokenized words; checks each is the most
    frequent pair, the smallest ids among equals; returns how many had equals."""
    pre = pre_tokenizers.ByteLevel(add_prefix_space=False)
    words = [(list(w), n) for w, n in Counter(p for p, _ in pre.pre_tokenize_str(text)).items()]
    ties = 0
    for step, merge in enumerate(merges):
        left, right = merge.split(" ")
        counts = Counter()
        for w, n in words:
            for pair in zip(w, w[1:]):
                counts[pair] += n
        best = max(counts.values())
        equal = sorted((vocab[a], vocab[b]) for (a, b), n in counts.items() if n == best)
        assert equal[0] == (vocab[left], vocab[right]), f"merge {step} {merge!r} is not {equal[0]}"
        ties += len(equal) > 1
        for w, _ in words:
            i = 0
            while i + 1 < len(w):
                if (w[i], w[i + 1]) == (left, right):
                    w[i : i + 2] = [left + right]
                i += 1
    return ties


def main():
    text = "".join(CORPUS.read_text(encoding="utf-8").splitlines(keepends=True)[:LINES])
    merges, vocab = hf_train(text, VOCAB)
    assert len(vocab) == VOCAB and len(merges) == VOCAB - 257, (len(vocab), len(merges))
    ties = ties_won(text, merges, vocab)
    assert ties > 0, "no merge was decided by the tie-break: use a smaller corpus"
    golden = {
        "about": "tests/tokenizer_train.rs reads this; regenerate with scripts/gen_bpe_trainer_golden.py",
        "corpus": "data/tinyshakespeare.txt",
        "bytes": len(text.encode("utf-8")),
        "vocab_size": VOCAB,
        "min_frequency": 0,
        "special_tokens": [EOT],
        "merges_won_on_ties": ties,
        "merges": merges,
        "vocab": dict(sorted(vocab.items(), key=lambda kv: kv[1])),
        "versions": {"tokenizers": tokenizers.__version__},
    }
    OUT.write_text(json.dumps(golden, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {OUT.relative_to(ROOT)}: {len(merges)} merges from {golden['bytes']} bytes, "
          f"{ties} won on ties")


if __name__ == "__main__":
    main()
