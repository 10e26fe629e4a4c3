#!/usr/bin/env python3
"""Regenerates tests/golden/lora/: LoRA adapters saved by `peft` for the tiny
GPT-2 and Llama models of tests/golden/, with the logits `peft` gives for the
base model with the adapter applied (read by tests/lora_golden.rs).

`peft` starts lora_B at zero (the adapter changes nothing until trained), so
both matrices are drawn here (std 0.15) at a scale where a wrong name, transpose or
scaling shows up as a large difference:

    gpt2/         GPT2LMHeadModel + LoRA r=4, alpha=8 on c_attn, c_proj (both), c_fc
                  (Conv1D: fan_in_fan_out)
    llama_gqa/    the grouped-query Llama + LoRA r=4, alpha=16 on every projection
    llama_rslora/ the same base + rank-stabilised LoRA (alpha/sqrt(r)) r=2 on q_proj, v_proj
    logits_NAME.bin   float32 LE logits of every position of each prompt, concatenated
    golden.json   prompts, the base and adapter directories, logits files, tolerance

    ~/.cache/gpt-venv/bin/python scripts/gen_lora_golden.py
"""
import json
import shutil
from pathlib import Path

import numpy as np
import peft
import torch
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "golden" / "lora"
LLAMA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
CASES = {
    "gpt2": ("tests/golden/gpt2/transformers", dict(r=4, lora_alpha=8, target_modules=["c_attn", "c_proj", "c_fc"],
                                                    fan_in_fan_out=True)),
    "llama_gqa": ("tests/golden/llama/gqa", dict(r=4, lora_alpha=16, target_modules=LLAMA_TARGETS)),
    "llama_rslora": ("tests/golden/llama/gqa", dict(r=2, lora_alpha=4, target_modules=["q_proj", "v_proj"],
                                                    use_rslora=True)),
}
PROMPT_LENGTHS = [1, 7, 29, 64]
SEED = 11


def main():
    if OUT.exists():
        shutil.rmtree(OUT)
    OUT.mkdir(parents=True)
    torch.manual_seed(SEED)
    entries = {}
    for name, (base_dir, opts) in CASES.items():
        base = AutoModelForCausalLM.from_pretrained(ROOT / base_dir, dtype=torch.float32).eval()
        base.config._attn_implementation = "eager"
        cfg = LoraConfig(lora_dropout=0.0, init_lora_weights=False, **opts)
        model = get_peft_model(base, cfg).eval()
        with torch.no_grad():
            for pname, p in model.named_parameters():
                if "lora_" in pname:
                    p.normal_(0.0, 0.15)
        model.save_pretrained(OUT / name)
        # A relative base name, as a user's adapter names the model it was trained on.
        conf_path = OUT / name / "adapter_config.json"
        conf = json.loads(conf_path.read_text())
        conf["base_model_name_or_path"] = base_dir.split("/")[-1]
        conf_path.write_text(json.dumps(conf, indent=2, sort_keys=True) + "\n")
        (OUT / name / "README.md").unlink(missing_ok=True)
        vocab = base.config.vocab_size
        n_ctx = getattr(base.config, "n_positions", None) or base.config.max_position_embeddings
        gen = np.random.default_rng(SEED)
        prompts = [gen.integers(0, vocab, min(n, n_ctx)).tolist() for n in PROMPT_LENGTHS]
        with torch.no_grad():
            logits = np.concatenate([model(torch.tensor([p])).logits[0].numpy() for p in prompts]).astype("<f4")
        (OUT / f"logits_{name}.bin").write_bytes(logits.tobytes())
        entries[name] = {"base": base_dir, "adapter": name, "logits": f"logits_{name}.bin", "prompts": prompts}
    golden = {
        "about": "tests/lora_golden.rs reads this; regenerate with scripts/gen_lora_golden.py",
        "tolerance": 1e-4,
        "peft": peft.__version__,
        "torch": torch.__version__,
        "cases": entries,
    }
    (OUT / "golden.json").write_text(json.dumps(golden, indent=1) + "\n")


if __name__ == "__main__":
    main()
