#!/usr/bin/env python3
"""Shows a checkpoint written by `gpt train` is a plain Hugging Face model:
`transformers.AutoModelForCausalLM.from_pretrained` loads it (no missing or
unexpected weights), its tokenizer files give our token ids, and it computes
the same logits as `gpt eval --logits` (within 1e-4 max abs) and the same
mean loss as `gpt eval --json` on the same text, window by window.

With `--arch gpt2` (the default) it trains a small GPT-2 from scratch; with
`--arch llama` it fine-tunes a random Llama that transformers makes (2 layers,
64 wide, 4 heads on 2 key/value heads, intermediate 192, tied embeddings,
Llama 3 rope scaling, GPT-2's vocabulary and tokenizer files beside it).
Either way on GPT-2's tokenizer, by default 100 steps at lr 3e-3 on
data/tinyshakespeare.txt with n_ctx 64; then it scores a held-out passage of the text with sliding windows
(stride n_ctx / 2, as `gpt eval` does by default), and runs the same windows
through transformers. Prints the figures; exits non-zero on any mismatch.

    cargo build --release
    ~/.cache/gpt-venv/bin/python scripts/check_transformers_load.py [--arch gpt2|llama] [--gpt target/release/gpt] [--keep DIR]
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from transformers import AutoModelForCausalLM, GPT2TokenizerFast, LlamaConfig, LlamaForCausalLM

ROOT = Path(__file__).resolve().parent.parent
LOGITS_TOL = 1e-4
LOSS_TOL = 1e-5  # relative


def default_gpt():
    target = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
    return target / "release" / "gpt"


def gpt(binary, *args):
    out = subprocess.run([str(binary), *map(str, args)], capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"gpt {' '.join(map(str, args))} failed:\n{out.stderr}")
    return out.stdout


def transformers_logits(model, ids, n_ctx, stride):
    """`gpt eval`'s sliding windows: input ids[j] predicts ids[j + 1]; each target scored once, in order."""
    pairs, rows, begin, scored = len(ids) - 1, [], 0, 0
    with torch.no_grad():
        while scored < pairs:
            end = min(begin + n_ctx, pairs)
            logits = model(torch.tensor([ids[begin:end]])).logits[0]
            rows.append(logits[scored - begin:].numpy())
            scored, begin = end, begin + stride
    return np.concatenate(rows)


def random_llama(dir, n_ctx):
    """A random Llama with GPT-2's vocabulary, saved by transformers with GPT-2's tokenizer files beside it."""
    cfg = LlamaConfig(
        vocab_size=50257, hidden_size=64, intermediate_size=192, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=n_ctx, tie_word_embeddings=True,
        rope_parameters={"rope_type": "llama3", "rope_theta": 10000.0, "factor": 8.0, "low_freq_factor": 0.5,
                         "high_freq_factor": 4.0, "original_max_position_embeddings": n_ctx // 2},
        bos_token_id=50256, eos_token_id=50256,
    )
    torch.manual_seed(0)
    LlamaForCausalLM(cfg).save_pretrained(dir)
    for f in ["encoder.json", "vocab.bpe"]:
        shutil.copy(ROOT / "data" / "gpt2" / f, dir / f)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--arch", choices=["gpt2", "llama"], default="gpt2",
                    help="gpt2: trained from scratch; llama: fine-tuned from a random transformers Llama")
    ap.add_argument("--gpt", type=Path, default=default_gpt(), help="the gpt binary [default: target/release/gpt]")
    ap.add_argument("--data", type=Path, default=ROOT / "data" / "tinyshakespeare.txt")
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--eval-chars", type=int, default=1500, help="length of the scored passage (end of --data)")
    ap.add_argument("--keep", type=Path, help="keep the run directory here instead of a temporary one")
    a = ap.parse_args()
    if not a.gpt.is_file():
        sys.exit(f"{a.gpt} not found: run `cargo build --release` first or pass --gpt")
    torch.set_num_threads(2)

    with tempfile.TemporaryDirectory() as tmp:
        work = a.keep or Path(tmp)
        run, n_ctx = work / "run", 64
        if a.arch == "gpt2":
            start = ["--tokenizer", "gpt2", "--n-layer", 2, "--n-embd", 64, "--n-head", 4]
        else:
            random_llama(work / "init", n_ctx)
            start = ["--init", work / "init"]
        gpt(a.gpt, "train", *start, "--data", a.data, "--steps", a.steps, "--n-ctx", n_ctx, "--batch-size", 8,
            "--lr", 3e-3, "--warmup", 10, "--num-samples", 0, "--out", run)
        # A passage from the end of the text (the validation part of the run).
        text = a.data.read_text(encoding="utf-8")[-a.eval_chars:]
        passage = work / "passage.txt"
        passage.write_text(text, encoding="utf-8")
        stride = n_ctx // 2
        ours = json.loads(gpt(a.gpt, "eval", "--model", run, "--data", passage, "--json", "--stride", stride,
                              "--logits", work / "logits.npy"))
        our_logits = np.load(work / "logits.npy")
        ids = json.loads(gpt(a.gpt, "tokenize", "--model", run, passage))

        model, info = AutoModelForCausalLM.from_pretrained(run, output_loading_info=True)
        model.eval()
        hf_ids = GPT2TokenizerFast.from_pretrained(run)(text)["input_ids"]
        theirs = transformers_logits(model, ids, n_ctx, stride)
        their_loss = F.cross_entropy(torch.from_numpy(theirs).double(), torch.tensor(ids[1:])).item()

    problems = [f"{k}: {v}" for k, v in info.items() if v]
    if hf_ids != ids:
        problems.append("transformers' tokenizer from the run directory gives other token ids than gpt tokenize")
    if our_logits.shape != theirs.shape:
        problems.append(f"logits shape {our_logits.shape} vs transformers' {theirs.shape}")
        max_diff = float("inf")
    else:
        max_diff = float(np.abs(our_logits - theirs).max())
    loss_rel = abs(ours["loss"] - their_loss) / their_loss
    print(f"{type(model).__name__}: scored {ours['tokens']} tokens ({len(ids)} ids, n_ctx {n_ctx}, stride {stride}), "
          f"vocab {model.config.vocab_size}; logits span [{theirs.min():.3f}, {theirs.max():.3f}]")
    print(f"max abs logit difference, gpt eval vs transformers: {max_diff:.3e} (tolerance {LOGITS_TOL})")
    print(f"mean loss: gpt eval {ours['loss']:.7f}, transformers {their_loss:.7f} (relative difference "
          f"{loss_rel:.2e}, tolerance {LOSS_TOL})")
    if max_diff > LOGITS_TOL:
        problems.append(f"logits differ by {max_diff}")
    if loss_rel > LOSS_TOL:
        problems.append(f"losses differ by {loss_rel} relative")
    if problems:
        sys.exit("MISMATCH: " + "; ".join(problems))
    print("OK: transformers loads the checkpoint and agrees with gpt eval")


if __name__ == "__main__":
    main()
