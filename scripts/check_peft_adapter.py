#!/usr/bin/env python3
"""Checks that a LoRA adapter trained by `gpt train --lora-rank` loads in
`peft` and computes what `gpt` computes: `peft.PeftModel.from_pretrained(base,
ADAPTER)` must find every tensor it expects (no missing or unexpected keys),
and its logits on random token ids must match the model `gpt merge --model
BASE --adapter ADAPTER --out MERGED` wrote (within 1e-4), which differ from
the base's.

    gpt train --init BASE --lora-rank 4 --out ADAPTER ...
    gpt merge --model BASE --adapter ADAPTER --out MERGED
    ~/.cache/gpt-venv/bin/python scripts/check_peft_adapter.py BASE ADAPTER MERGED
"""
import sys

import torch
from peft import PeftModel
from peft.utils import load_peft_weights
from transformers import AutoModelForCausalLM


def main(base_dir, adapter_dir, merged_dir):
    torch.manual_seed(0)
    load = lambda d: AutoModelForCausalLM.from_pretrained(d, dtype=torch.float32).eval()
    base = load(base_dir)
    ids = torch.randint(0, base.config.vocab_size, (2, min(24, base.config.max_position_embeddings)))
    with torch.no_grad():
        base_logits = base(ids).logits
        model = PeftModel.from_pretrained(base, adapter_dir).eval()
        # Every saved tensor is one peft expects, and every LoRA tensor peft made was saved.
        saved = set(load_peft_weights(adapter_dir))
        wanted = {n.replace(".default", "") for n, _ in model.named_parameters() if "lora_" in n}
        assert saved == wanted, f"saved but not expected: {saved - wanted}; expected but not saved: {wanted - saved}"
        got = model(ids).logits
        want = load(merged_dir)(ids).logits
    diff = (got - want).abs().max().item()
    moved = (got - base_logits).abs().max().item()
    print(f"{len(saved)} LoRA tensors; peft vs gpt merge: max |diff| {diff:.2e}; adapter moves logits by {moved:.2e}")
    assert diff <= 1e-4 and moved > 1e-3, "peft computes something else than gpt"


if __name__ == "__main__":
    main(*sys.argv[1:])
