#!/usr/bin/env python3
"""Regenerates tests/golden/peft/: ten AdamW steps of parameter-efficient
fine-tuning in PyTorch (+ peft), the reference that tests/train_golden.rs
holds `gpt train --train-layers` and `--lora-rank` to.

Both start from tests/golden/train/init (the tiny GPT-2 of
scripts/gen_train_golden.py: n_ctx 32, n_embd 32, 2 layers, 4 heads, vocab 64,
tied wte) and train on that golden's `rows16` batches (B=4 rows of T=16) with
its optimizer settings (AdamW lr 1e-3, betas 0.9/0.95, eps 1e-8, weight decay
0.1 on 2-D tensors that are not embeddings, constant lr), in float64 on the
float32 start, one thread:

    layers1   only the last block, ln_f and the head train (requires_grad off for
              the rest); the head is the tied wte, which so trains, as in
              transformers; no gradient clipping
    lora      peft LoRA r=4, lora_alpha=8 on c_attn (fan_in_fan_out: Conv1D),
              lora_dropout 0: A drawn by peft (kaiming-uniform), B zero; the
              gradient clipped to a norm the run crosses both ways

Written:

    layers1/            config.json + model.safetensors: the weights after ten steps
    lora_init/          the adapter before training, as peft saves it (float32)
    lora/               the adapter after ten steps, as peft saves it
    RUN/grads0.safetensors   the trainable tensors' gradients at step 0 (our names)
    golden.json         each run's losses and gradient norms (the data: the train golden's)

    ~/.cache/gpt-venv/bin/python scripts/gen_peft_golden.py
"""
import json
import shutil

import numpy as np
import peft
import torch
import transformers
from peft import LoraConfig, get_peft_model
from safetensors.torch import load_file, save_file

from gen_train_golden import BETAS, EPS, LR, OUT as TRAIN, ROOT, SEED, WEIGHT_DECAY, adamw, build_model, decays, rows_loss
from gen_train_golden import tensors, write_checkpoint

OUT = ROOT / "tests" / "golden" / "peft"
DATA = "rows16"
LORA = dict(r=4, lora_alpha=8, target_modules=["c_attn"], fan_in_fan_out=True, lora_dropout=0.0)


def base():
    """The train golden's start, as a transformers GPT-2 in float32."""
    model = build_model("init")
    state = {f"transformer.{k}": v for k, v in load_file(TRAIN / "init" / "model.safetensors").items()}
    missing, unexpected = model.load_state_dict(state, strict=False)
    assert not unexpected and set(missing) <= {"lm_head.weight"}, (missing, unexpected)
    return model


def ours(name):
    """Our name of a parameter of a transformers or peft model."""
    name = name.removeprefix("base_model.model.").removeprefix("transformer.")
    return name.replace(".default.", ".")


def train(model, batches, grad_clip):
    """Ten AdamW steps of `model`'s trainable parameters: losses, norms before clipping, step-0 gradients."""
    model = model.to(torch.float64).train()
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    opt = adamw(named, lambda n, p: decays(ours(n), p))
    losses, norms, grads0 = [], [], None
    for step, batch in enumerate(batches):
        opt.zero_grad(set_to_none=False)
        loss = rows_loss(model, batch)
        loss.backward()
        norms.append(torch.sqrt(sum((p.grad**2).sum() for _, p in named)).item())
        if grad_clip is not None:
            torch.nn.utils.clip_grad_norm_([p for _, p in named], grad_clip)
        if step == 0:
            grads0 = {ours(n): p.grad.detach().to(torch.float32).clone() for n, p in named}
        opt.step()
        losses.append(loss.item())
    return losses, norms, grads0, model.float()


def layers1(batches):
    model = base()
    for name, p in model.named_parameters():
        p.requires_grad = ours(name).startswith(("h.1.", "ln_f.", "wte."))
    return train(model, batches, None)


def lora(batches, grad_clip):
    """A fresh peft LoRA model (the same A each call) and its run."""
    torch.manual_seed(SEED)
    model = get_peft_model(base(), LoraConfig(**LORA))
    assert all(("lora_" in n) == p.requires_grad for n, p in model.named_parameters())
    start = {n: p.detach().clone() for n, p in model.named_parameters() if "lora_B" in n}
    assert all((b == 0).all() for b in start.values()), "peft starts B at zero"
    return model, train(model, batches, grad_clip)


def main():
    torch.set_num_threads(1)
    golden = json.loads((TRAIN / "golden.json").read_text())
    batches = golden["data"][DATA]
    if OUT.exists():
        shutil.rmtree(OUT)
    OUT.mkdir(parents=True)
    runs = {}

    losses, norms, grads0, model = layers1(batches)
    start = tensors(base())
    end = tensors(model)
    moved = sorted(k for k in end if not torch.equal(end[k], start[k]))
    assert moved == sorted(k for k in end if k.startswith(("h.1.", "ln_f.", "wte."))), moved
    write_checkpoint(model, OUT / "layers1")
    save_file(grads0, OUT / "layers1" / "grads0.safetensors")
    runs["layers1"] = {"init": "init", "data": DATA, "packed_rows": None, "grad_clip": None, "train_layers": 1,
                       "grads0": "layers1/grads0.safetensors", "losses": losses, "grad_norms": norms}

    # A threshold the clipped run crosses both ways.
    _, (_, plain_norms, _, _) = lora(batches, None)
    clip = float(np.median(plain_norms))
    fresh, (losses, norms, grads0, model) = lora(batches, clip)
    n_clipped = sum(n > clip for n in norms)
    assert 0 < n_clipped < len(norms), f"clipping at {clip} should act on some steps, not all: {norms}"
    assert min(abs(n / clip - 1) for n in norms) > 1e-3, "a norm is too near the threshold"
    torch.manual_seed(SEED)
    get_peft_model(base(), LoraConfig(**LORA)).save_pretrained(OUT / "lora_init")
    model.save_pretrained(OUT / "lora")
    (OUT / "lora_init" / "README.md").unlink(missing_ok=True)
    (OUT / "lora" / "README.md").unlink(missing_ok=True)
    save_file(grads0, OUT / "lora_grads0.safetensors")
    runs["lora"] = {"init": "init", "data": DATA, "packed_rows": None, "grad_clip": clip, "lora_init": "lora_init",
                    "lora": "lora", "grads0": "lora_grads0.safetensors", "losses": losses, "grad_norms": norms,
                    "steps_clipped": n_clipped}
    for name, run in runs.items():
        print(f"{name}: losses {run['losses']}\n  norms {run['grad_norms']}")
    out = {
        "about": "tests/train_golden.rs reads this (with ../train/golden.json's data); regenerate with "
                 "scripts/gen_peft_golden.py",
        "runs": runs,
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__, "peft": peft.__version__},
    }
    (OUT / "golden.json").write_text(json.dumps(out, indent=1) + "\n")
    total = sum(f.stat().st_size for f in OUT.rglob("*") if f.is_file())
    print(f"wrote {OUT} ({total / 1e3:.0f} kB); clip {clip} acts on {n_clipped} steps")


if __name__ == "__main__":
    main()
