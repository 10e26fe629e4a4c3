#!/usr/bin/env python3
"""Checks `gpt tokenizer train` against Hugging Face `tokenizers`.

Trains a byte-level BPE on tinyshakespeare (vocab 512 by default) with the
`gpt` binary and requires the merges HF's BpeTrainer learns from the same text
(set up as in gen_bpe_trainer_golden.py), then loads the written vocab.json +
merges.txt in HF `tokenizers` (ByteLevel pre-tokenizer and decoder, as GPT-2)
and requires identical ids from both on the whole corpus and on the golden
test strings. Then records the result in tests/golden/bpe_train_golden.json,
which a Rust test (no Python) compares its own training run with.

    python scripts/check_bpe_tokenizer_train.py [--gpt PATH] [--vocab-size N]
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT / "data" / "tinyshakespeare.txt"
GOLDEN = ROOT / "tests" / "golden" / "bpe_golden.json"
OUT = ROOT / "tests" / "golden" / "bpe_train_golden.json"
sys.path.insert(0, str(ROOT / "scripts"))
from gen_bpe_golden import fnv1a64_ids  # noqa: E402
from gen_bpe_trainer_golden import hf_train  # noqa: E402


def fnv1a64_bytes(data):
    h = 0xCBF29CE484222325
    for b in data:
        h = ((h ^ b) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


def gpt_binary(path):
    if path:
        return path
    subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=ROOT, check=True)
    return str(Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target")) / "release" / "gpt")


def hf_tokenizer(model_dir):
    tok = Tokenizer(models.BPE.from_file(str(model_dir / "vocab.json"), str(model_dir / "merges.txt")))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    return tok


def gpt_ids(gpt, model_dir, text_path):
    out = subprocess.run([gpt, "tokenize", "--model", str(model_dir), str(text_path)],
                         check=True, capture_output=True)
    return json.loads(out.stdout)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--gpt", help="path of the gpt binary [default: cargo build --release]")
    ap.add_argument("--vocab-size", type=int, default=512)
    args = ap.parse_args()
    gpt = gpt_binary(args.gpt)
    ok = True
    with tempfile.TemporaryDirectory() as tmp:
        model = Path(tmp) / "tok"
        t = time.perf_counter()
        subprocess.run([gpt, "tokenizer", "train", "--vocab-size", str(args.vocab_size), str(CORPUS),
                        "--out", str(model)], check=True)
        print(f"gpt tokenizer train --vocab-size {args.vocab_size} on tinyshakespeare: "
              f"{time.perf_counter() - t:.2f} s (whole command)")
        merges = (model / "merges.txt").read_bytes()
        hf_merges, _ = hf_train(CORPUS.read_bytes().decode("utf-8"), args.vocab_size)
        same = merges.decode("utf-8").splitlines()[1:] == hf_merges
        ok &= same
        print(f"merges: gpt {len(merges.splitlines()) - 1}, HF BpeTrainer {len(hf_merges)}: "
              f"{'identical' if same else 'DIFFERENT'}")
        hf = hf_tokenizer(model)
        strings = Path(tmp) / "strings.txt"
        strings.write_text("\n".join(c["text"] for c in json.loads(GOLDEN.read_text())["ordinary"]),
                           encoding="utf-8")
        for name, path in [("tinyshakespeare", CORPUS), ("golden strings", strings)]:
            text = path.read_bytes().decode("utf-8")  # no newline translation
            ours, theirs = gpt_ids(gpt, model, path), hf.encode(text).ids
            same = ours == theirs and hf.decode(theirs) == text
            ok &= same
            print(f"{name}: gpt {len(ours)} ids, HF tokenizers {len(theirs)} ids: "
                  f"{'identical' if same else 'DIFFERENT'}")
            if not same:
                i = next((i for i, (a, b) in enumerate(zip(ours, theirs)) if a != b), None)
                print(f"  first difference at {i}: gpt {ours[i:i + 8] if i is not None else ''} "
                      f"HF {theirs[i:i + 8] if i is not None else ''}")
            if name == "tinyshakespeare":
                corpus_ids = theirs
    if not ok:
        sys.exit(1)
    OUT.write_text(json.dumps({
        "about": "gpt tokenizer train on data/tinyshakespeare.txt: the merges of HF tokenizers' BpeTrainer, "
                 "and the ids HF tokenizers encodes the corpus to with them; by scripts/check_bpe_tokenizer_train.py",
        "vocab_size": args.vocab_size,
        "merges_fnv1a64": f"{fnv1a64_bytes(merges):016x}",
        "corpus_tokens": len(corpus_ids),
        "corpus_ids_fnv1a64": f"{fnv1a64_ids(corpus_ids):016x}",
    }, indent=1) + "\n")
    print(f"wrote {OUT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
