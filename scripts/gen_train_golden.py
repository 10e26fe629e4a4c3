#!/usr/bin/env python3
"""Regenerates the references that tests/train_golden.rs holds
`gpt::train::train_step` to (llm.c's test_gpt2, for our trainer): ten AdamW
steps in PyTorch of one tiny model per case,

    gpt2        tests/golden/train/            GPT-2's architecture at toy size (vocab 64,
                                               n_ctx 32, n_embd 32, 2 layers, 4 heads,
                                               gelu_new, tied wte, dropout 0); runs plain, clip
    llama       tests/golden/llama/train/      Llama's (vocab 64, 32 positions, hidden 32,
                                               2 layers, 4 heads, 4 KV heads, intermediate 96,
                                               untied lm_head); run plain
    llama_gqa   tests/golden/llama/train_gqa/  the same Llama with 2 KV heads and tied
                                               embeddings; run plain

with weights drawn larger than the usual init (gen_gpt2_golden.draw_weights)
so attention is far from uniform and every parameter gets a gradient well
above float noise. Each of the ten steps sees its own batch of B=4 rows of
T=16 random tokens (T < n_ctx, so GPT-2's last wpe rows get no gradient and
must not move).

The optimizer is torch.optim.AdamW with two parameter groups, weight decay
only on the 2-D matrices that are not embeddings (our rule: not biases,
norms, wte, wpe or embed_tokens), constant learning rate. Runs from the same start:

    plain   no gradient clipping
    clip    torch.nn.utils.clip_grad_norm_ to CLIP (global L2 norm); CLIP is
            chosen between the runs' gradient norms, so some steps clip and
            some do not (the script checks both happen)

PyTorch runs in float64 on the float32 initial weights, so the reference is
the exact answer to float32 precision and what the test measures is our
error alone. Written, per case:

    init/           config.json + model.safetensors: the float32 start (our names:
                    GPT-2's without the `transformer.` prefix, Conv1D [in, out]; Llama's as they are)
    plain/, clip/   config.json + model.safetensors: the weights after 10 steps of each run
    grads0.safetensors  every parameter's gradient at step 0 of the plain run
                    (before the optimizer step; clipping does not touch it there)
    golden.json     batches (token ids, [steps][B][T+1]: inputs are [:T], targets [1:]),
                    optimizer settings, each run's losses and gradient norms, tolerances

    ~/.cache/gpt-venv/bin/python scripts/gen_train_golden.py [CASE...]   (default: every case)
"""
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import transformers
from safetensors.torch import save_file
from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

from gen_gpt2_golden import draw_weights

ROOT = Path(__file__).resolve().parent.parent
VOCAB, N_CTX, N_EMBD, N_LAYER, N_HEAD = 64, 32, 32, 2, 4
INTERMEDIATE = 96
B, T, STEPS = 4, 16, 10
LR, BETAS, EPS, WEIGHT_DECAY = 1e-3, (0.9, 0.95), 1e-8, 0.1
SEED = 5


def build_gpt2():
    cfg = GPT2Config(
        vocab_size=VOCAB, n_positions=N_CTX, n_embd=N_EMBD, n_layer=N_LAYER, n_head=N_HEAD,
        activation_function="gelu_new", resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
        tie_word_embeddings=True, bos_token_id=VOCAB - 1, eos_token_id=VOCAB - 1,
    )
    cfg._attn_implementation = "eager"
    torch.manual_seed(SEED)
    model = GPT2LMHeadModel(cfg)
    draw_weights(model)
    return model


def build_llama(n_kv_head, tied):
    cfg = LlamaConfig(
        vocab_size=VOCAB, hidden_size=N_EMBD, intermediate_size=INTERMEDIATE, num_hidden_layers=N_LAYER,
        num_attention_heads=N_HEAD, num_key_value_heads=n_kv_head, max_position_embeddings=N_CTX,
        rms_norm_eps=1e-5, rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
        tie_word_embeddings=tied, bos_token_id=1, eos_token_id=2, attention_dropout=0.0,
    )
    cfg._attn_implementation = "eager"
    torch.manual_seed(SEED)
    model = LlamaForCausalLM(cfg)
    draw_weights(model, fan_in_dim=1)
    return model


# case -> (output directory, model builder, runs)
CASES = {
    "gpt2": (ROOT / "tests" / "golden" / "train", build_gpt2, ("plain", "clip")),
    "llama": (ROOT / "tests" / "golden" / "llama" / "train", lambda: build_llama(N_HEAD, False), ("plain",)),
    "llama_gqa": (ROOT / "tests" / "golden" / "llama" / "train_gqa", lambda: build_llama(2, True), ("plain",)),
}


def ours(name):
    return name.removeprefix("transformer.")


def decays(name, p):
    """Our weight-decay rule (src/train/optim.rs): matrices, not embeddings."""
    return p.dim() == 2 and not ours(name).startswith(("wte.", "wpe.", "model.embed_tokens."))


def tensors(model, of=lambda p: p):
    """Parameters (or `of` them) under our names, as float32. The tied lm_head is not a separate parameter."""
    return {ours(n): of(p).detach().to(torch.float32).clone() for n, p in model.named_parameters()}


def write_checkpoint(model, dir):
    dir.mkdir(parents=True)
    save_file(tensors(model), dir / "model.safetensors", metadata={"format": "pt"})
    model.config.to_json_file(dir / "config.json")


def loss_of(model, batch):
    x = torch.tensor(batch)
    logits = model(x[:, :-1]).logits
    return F.cross_entropy(logits.reshape(-1, VOCAB), x[:, 1:].reshape(-1))


def run(build_model, init, batches, clip, dtype=torch.float64):
    """Ten AdamW steps from `init` in `dtype`: losses, gradient norms before clipping, step-0 gradients, model."""
    model = build_model()
    model.load_state_dict(init)
    model = model.to(dtype).train()
    named = list(model.named_parameters())
    groups = [
        {"params": [p for n, p in named if decays(n, p)], "weight_decay": WEIGHT_DECAY},
        {"params": [p for n, p in named if not decays(n, p)], "weight_decay": 0.0},
    ]
    opt = torch.optim.AdamW(groups, lr=LR, betas=BETAS, eps=EPS)
    losses, norms, grads0 = [], [], None
    for step, batch in enumerate(batches):
        opt.zero_grad(set_to_none=False)
        loss = loss_of(model, batch)
        loss.backward()
        norm = torch.sqrt(sum((p.grad**2).sum() for _, p in named)).item()
        if clip is not None:
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        if step == 0:
            grads0 = tensors(model, lambda p: p.grad)
        opt.step()
        losses.append(loss.item())
        norms.append(norm)
    return losses, norms, grads0, model.float()


def key_bias(name):
    """The slice of `name` that is the attention keys' bias, or None. Its gradient is zero in exact
    arithmetic (a bias on every key adds the same q.b to a query's scores, which softmax ignores), so in
    float32 it is rounding noise that Adam scales up to steps of about lr: after a few steps its value
    is noise in PyTorch float32 as much as in ours, and it does not affect the loss."""
    return slice(N_EMBD, 2 * N_EMBD) if name.endswith("attn.c_attn.bias") else None


def max_abs(a, b, keys=False):
    """Max abs difference over every weight but the key biases, or (keys=True) over the key biases only."""
    out = 0.0
    for k in b:
        d = (a[k].double() - b[k].double()).abs()
        s = key_bias(k)
        if s is not None:
            mask = torch.zeros_like(d, dtype=torch.bool)
            mask[s] = True
            d = d[mask] if keys else d[~mask]
        elif keys:
            continue
        out = max(out, d.max().item())
    return out


def rel_to_largest(got, want):
    """Max abs difference relative to the largest |want| of the tensor."""
    return ((got.double() - want.double()).abs().max() / want.double().abs().max()).item()


def generate(case):
    out, build_model, runs = CASES[case]
    model = build_model()
    init = {k: v.clone() for k, v in model.state_dict().items()}
    gen = np.random.default_rng(SEED)
    batches = gen.integers(0, VOCAB, (STEPS, B, T + 1)).tolist()

    plain_losses, plain_norms, grads0, plain = run(build_model, init, batches, None)
    results = {"plain": ({"grad_clip": None, "losses": plain_losses, "grad_norms": plain_norms}, plain)}
    if "clip" in runs:
        # A threshold the clipped run crosses both ways: below its larger norms, above its smaller.
        clip = float(np.round(np.median(plain_norms), 2))
        clip_losses, clip_norms, _, clipped = run(build_model, init, batches, clip)
        n_clipped = sum(n > clip for n in clip_norms)
        assert 0 < n_clipped < STEPS, f"clipping at {clip} should act on some steps, not all: {clip_norms}"
        # No norm so near the threshold that float32 rounding could decide whether it clips.
        assert min(abs(n / clip - 1) for n in clip_norms) > 1e-3, "a norm is too near the threshold; change SEED"
        results["clip"] = ({"grad_clip": clip, "losses": clip_losses, "grad_norms": clip_norms,
                            "steps_clipped": n_clipped}, clipped)

    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    write_checkpoint(model, out / "init")
    for name, (_, trained) in results.items():
        write_checkpoint(trained, out / name)
    save_file(grads0, out / "grads0.safetensors")
    # For scale: how far PyTorch itself in float32 is from this float64 reference.
    f32_losses, _, f32_grads0, f32_model = run(build_model, init, batches, None, torch.float32)
    f32 = {
        "loss_max_rel": max(abs(a - b) / abs(b) for a, b in zip(f32_losses, plain_losses)),
        "grad0_max_abs_rel_per_tensor": max(rel_to_largest(f32_grads0[k], g) for k, g in grads0.items()),
        "params_max_abs_but_key_biases": max_abs(tensors(f32_model), tensors(plain)),
        "key_biases_max_abs": max_abs(tensors(f32_model), tensors(plain), keys=True),
    }
    moved = max_abs(tensors(plain), tensors(model))
    config = {k: v for k, v in model.config.to_dict().items()
              if k in ("model_type", "vocab_size", "n_ctx", "n_embd", "n_layer", "n_head", "hidden_size",
                       "num_hidden_layers", "num_attention_heads", "num_key_value_heads", "intermediate_size",
                       "tie_word_embeddings")}
    if case == "gpt2":  # as it always was
        config = {"vocab_size": VOCAB, "n_ctx": N_CTX, "n_embd": N_EMBD, "n_layer": N_LAYER, "n_head": N_HEAD}
    golden = {
        "about": "tests/train_golden.rs reads this; regenerate with scripts/gen_train_golden.py",
        "config": config,
        "optimizer": {"lr": LR, "beta1": BETAS[0], "beta2": BETAS[1], "eps": EPS, "weight_decay": WEIGHT_DECAY},
        "batches": batches,
        "runs": {name: fields for name, (fields, _) in results.items()},
        "max_param_change_plain": moved,
        "pytorch_f32_vs_reference": f32,
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__},
    }
    # One line per step's batch, the rest indented.
    rows = ",\n  ".join(json.dumps(b) for b in batches)
    text = json.dumps({**golden, "batches": "@"}, indent=1).replace('"@"', f"[\n  {rows}\n ]")
    (out / "golden.json").write_text(text + "\n")
    total = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    print(f"{case}: wrote {out} ({total / 1e3:.0f} kB)")
    for name, (fields, _) in results.items():
        print(f"  {name} (clip {fields['grad_clip']}): losses {fields['losses']}\n      norms {fields['grad_norms']}")
    print(f"  largest change of a weight over the plain run: {moved:.3g}")
    print(f"  PyTorch float32 vs this float64 reference: {f32}")


def main():
    for case in sys.argv[1:] or CASES:
        generate(case)


if __name__ == "__main__":
    main()
