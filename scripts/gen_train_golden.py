#!/usr/bin/env python3
"""Regenerates tests/golden/train/: ten AdamW steps of tiny GPT-2s and Llamas
in PyTorch, the reference that tests/train_golden.rs holds
`gpt::train::train_step` to (llm.c's test_gpt2, for our trainer).

The models are GPT-2's architecture at toy size (vocab 64, gelu_new, tied
wte, dropout 0) and Llama's (vocab 64, intermediate 3x hidden, rope_theta
10000), with weights drawn larger than the usual init (as in
gen_gpt2_golden.py) so attention is far from uniform and every parameter gets
a gradient well above float noise:

    init             GPT-2, n_ctx 32, n_embd 32, 2 layers, 4 heads
    init_long        GPT-2, n_ctx 160, n_embd 16, 2 layers, 2 heads: room for rows of
                     64+ queries, where our attention switches to its GEMM path
                     (src/tensor/attention.rs), which works in blocks of 64 queries
    llama_init       Llama, 32 positions, hidden 32, 2 layers, 4 heads, untied lm_head
    llama_gqa_init   the same with 2 key/value heads and tied embeddings
    llama_long_init  Llama, 160 positions, hidden 16, 2 layers, 2 heads on 1 key/value
                     head, untied

The optimizer is torch.optim.AdamW with two parameter groups, weight decay
only on the 2-D matrices that are not embeddings (our rule: not biases,
norms, wte, wpe or embed_tokens), constant learning rate. Seven runs, each
step on its own batch:

    plain   init; B=4 rows of T=16 random tokens (T < n_ctx, so the last wpe
            rows get no gradient and must not move); no gradient clipping
    clip    the same with torch.nn.utils.clip_grad_norm_ to CLIP (global L2
            norm); CLIP is chosen between the runs' gradient norms, so some
            steps clip and some do not (the script checks both happen)
    long    init_long; B=2 rows of T=150 random tokens: three blocks of
            queries, the last one partial
    packed  init_long; documents `BOS tokens BOS` (BOS = 63) packed into rows
            of at most n_ctx inputs, in order, a row taking documents while they
            fit (src/data/batch.rs's packing); rows padded to the longest, with
            targets that count for nothing. Each document gets position ids
            from 0 and attends only to itself: a block-diagonal causal mask
            built from the document boundaries (the script checks the loss is
            that of each document run alone). Even steps fill two rows of over
            64 queries (the GEMM path, documents straddling query blocks), odd
            steps one short row (the row-by-row path)
    llama, llama_gqa   llama_init, llama_gqa_init on plain's rows
    llama_packed       llama_long_init on packed's documents: rotary positions from
                       each document's start

PyTorch runs in float64 on the float32 initial weights, so the reference is
the exact answer to float32 precision and what the test measures is our
error alone. It runs on one thread, so the files regenerate byte for byte
(for the same torch and transformers). Written:

    init/, init_long/, llama_*init/   config.json + model.safetensors: the float32
                        starts (our names: GPT-2's with no `transformer.` prefix,
                        Conv1D [in, out]; Llama's as they are, nn.Linear [out, in])
    RUN/                config.json + model.safetensors: the weights after the run;
                        grads0.safetensors: every parameter's gradient at step 0
                        (before the optimizer step; not for clip, whose step 0 is
                        plain's, clipped)
    golden.json         data (token rows [step][row][T+1]: inputs are [:T], targets
                        [1:]; or documents [step][document][tokens]), optimizer
                        settings, each run's losses and gradient norms

    ~/.cache/gpt-venv/bin/python scripts/gen_train_golden.py
"""
import json
import shutil
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import transformers
from safetensors.torch import save_file
from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM
from transformers.models.llama import modeling_llama

from gen_gpt2_golden import draw_weights

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "golden" / "train"
VOCAB = 64
BOS = VOCAB - 1
# (n_ctx, n_embd, n_layer, n_head) of each GPT-2 start.
MODELS = {"init": (32, 32, 2, 4), "init_long": (160, 16, 2, 2)}
# (n_ctx, hidden, layers, heads, key/value heads, tied) of each Llama start.
LLAMAS = {"llama_init": (32, 32, 2, 4, 4, False), "llama_gqa_init": (32, 32, 2, 4, 2, True),
          "llama_long_init": (160, 16, 2, 2, 1, False)}
STEPS = 10
LR, BETAS, EPS, WEIGHT_DECAY = 1e-3, (0.9, 0.95), 1e-8, 0.1
PACKED_ROWS = 2
SEED = 5


def build_model(init):
    if init in LLAMAS:
        n_ctx, hidden, n_layer, n_head, n_kv_head, tied = LLAMAS[init]
        cfg = LlamaConfig(
            vocab_size=VOCAB, hidden_size=hidden, intermediate_size=3 * hidden, num_hidden_layers=n_layer,
            num_attention_heads=n_head, num_key_value_heads=n_kv_head, max_position_embeddings=n_ctx,
            rms_norm_eps=1e-5, rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
            tie_word_embeddings=tied, bos_token_id=BOS, eos_token_id=BOS, attention_dropout=0.0,
        )
        model_class, fan_in_dim = LlamaForCausalLM, 1
    else:
        n_ctx, n_embd, n_layer, n_head = MODELS[init]
        cfg = GPT2Config(
            vocab_size=VOCAB, n_positions=n_ctx, n_embd=n_embd, n_layer=n_layer, n_head=n_head,
            activation_function="gelu_new", resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
            tie_word_embeddings=True, bos_token_id=BOS, eos_token_id=BOS,
        )
        model_class, fan_in_dim = GPT2LMHeadModel, 0
    cfg._attn_implementation = "eager"
    torch.manual_seed(SEED)
    model = model_class(cfg)
    draw_weights(model, fan_in_dim)
    return model


# transformers' Llama computes RMSNorm and the attention softmax in float32 even in a float64 model, which
# would leave the reference only float32-exact: here both run in the input's precision (the same functions
# on float32 input). The rotary angles stay float32: that is the model's definition, and ours.
def rms_norm_in_input_precision(self, x):
    return self.weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.variance_epsilon))


def eager_attention_in_input_precision(module, query, key, value, attention_mask, scaling, dropout=0.0, **kwargs):
    key = modeling_llama.repeat_kv(key, module.num_key_value_groups)
    value = modeling_llama.repeat_kv(value, module.num_key_value_groups)
    scores = torch.matmul(query, key.transpose(2, 3)) * scaling
    if attention_mask is not None:
        scores = scores + attention_mask
    weights = F.dropout(F.softmax(scores, dim=-1), p=dropout, training=module.training)
    return torch.matmul(weights, value).transpose(1, 2).contiguous(), weights


modeling_llama.LlamaRMSNorm.forward = rms_norm_in_input_precision
modeling_llama.eager_attention_forward = eager_attention_in_input_precision


def n_ctx_of(model):
    return getattr(model.config, "n_positions", None) or model.config.max_position_embeddings


def ours(name):
    return name.removeprefix("transformer.")


def decays(name, p):
    """Our weight-decay rule (src/train/optim.rs): matrices, not embeddings."""
    return p.dim() == 2 and not ours(name).startswith(("wte.", "wpe.", "model.embed_tokens."))


def adamw(named, decays=decays):
    """Our optimizer in PyTorch: AdamW over `named` parameters in two groups, weight decay
    where `decays(name, p)`, none elsewhere; the held learning rate."""
    named = list(named)
    groups = [
        {"params": [p for n, p in named if decays(n, p)], "weight_decay": WEIGHT_DECAY},
        {"params": [p for n, p in named if not decays(n, p)], "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=LR, betas=BETAS, eps=EPS)


def tensors(model, of=lambda p: p):
    """Parameters (or `of` them) under our names, as float32. The tied lm_head is not a separate parameter."""
    return {ours(n): of(p).detach().to(torch.float32).clone() for n, p in model.named_parameters()}


def write_checkpoint(model, dir):
    dir.mkdir(parents=True)
    save_file(tensors(model), dir / "model.safetensors", metadata={"format": "pt"})
    model.config.to_json_file(dir / "config.json")


def rows_loss(model, rows):
    """Mean loss of token rows (inputs [:T], targets [1:]): positions 0..T, plain causal attention."""
    x = torch.tensor(rows)
    logits = model(x[:, :-1]).logits
    return F.cross_entropy(logits.reshape(-1, VOCAB), x[:, 1:].reshape(-1))


def pack(docs, n_ctx):
    """`docs` in rows of at most `n_ctx` inputs, in order, a row taking documents while they fit:
    each row a list of (input, target, document index)."""
    rows = [[]]
    for d, doc in enumerate(docs):
        if rows[-1] and len(rows[-1]) + len(doc) - 1 > n_ctx:
            rows.append([])
        rows[-1] += [(x, y, d) for x, y in zip(doc[:-1], doc[1:])]
    return rows


def packed_loss(model, docs):
    """Mean loss of `docs` packed into rows, each document attending only to itself from position 0.
    Padding (document -1) has target -100: it counts for nothing."""
    rows = pack(docs, n_ctx_of(model))
    t = max(map(len, rows))
    rows = [r + [(0, -100, -1)] * (t - len(r)) for r in rows]
    ids, targets, doc = (torch.tensor([[e[i] for e in r] for r in rows]) for i in range(3))
    # Each token's position counts from its document's first token in the row (padding: 0).
    pos = torch.tensor([[i - r.index(d) if d >= 0 else 0 for i, d in enumerate(r)] for r in doc.tolist()])
    # Block-diagonal causal: a query sees the keys of its own document up to itself.
    allowed = (doc[:, :, None] == doc[:, None, :]) & torch.ones(t, t, dtype=torch.bool).tril()
    mask = torch.zeros(allowed.shape, dtype=model.dtype).masked_fill(~allowed, float("-inf"))[:, None]
    logits = model(ids, position_ids=pos, attention_mask=mask).logits
    return F.cross_entropy(logits.reshape(-1, VOCAB), targets.reshape(-1))


def alone_loss(model, docs):
    """The loss `packed_loss` must give: each document run on its own, the mean over all targets."""
    total = sum(rows_loss(model, [d]) * (len(d) - 1) for d in docs)
    return total / sum(len(d) - 1 for d in docs)


def run(spec, batches, init, dtype=torch.float64):
    """The run `spec` on `batches` (one a step) from the weights `init` in `dtype`: losses,
    gradient norms before clipping, step-0 gradients, model."""
    model = build_model(spec["init"])
    model.load_state_dict(init)
    model = model.to(dtype).train()
    named = list(model.named_parameters())
    opt = adamw(named)
    loss_of = packed_loss if spec["packed_rows"] else rows_loss
    losses, norms, grads0 = [], [], None
    for step, batch in enumerate(batches):
        opt.zero_grad(set_to_none=False)
        loss = loss_of(model, batch)
        if loss_of is packed_loss and dtype == torch.float64:
            with torch.no_grad():
                alone = alone_loss(model, batch).item()
            assert abs(loss.item() - alone) <= 1e-12 * alone, f"step {step}: packed {loss.item()}, alone {alone}"
        loss.backward()
        norm = torch.sqrt(sum((p.grad**2).sum() for _, p in named)).item()
        if spec["grad_clip"] is not None:
            torch.nn.utils.clip_grad_norm_(model.parameters(), spec["grad_clip"])
        if step == 0:
            grads0 = tensors(model, lambda p: p.grad)
        opt.step()
        losses.append(loss.item())
        norms.append(norm)
    return losses, norms, grads0, model.float()


def key_bias(name, n_embd):
    """The slice of `name` that is the attention keys' bias, or None. Its gradient is zero in exact
    arithmetic (a bias on every key adds the same q.b to a query's scores, which softmax ignores), so in
    float32 it is rounding noise that Adam scales up to steps of about lr: after a few steps its value
    is noise in PyTorch float32 as much as in ours, and it does not affect the loss."""
    return slice(n_embd, 2 * n_embd) if name.endswith("attn.c_attn.bias") else None


def max_abs(a, b, keys=False):
    """Max abs difference over every weight but the key biases, or (keys=True) over the key biases only."""
    out = 0.0
    n_embd = next(b[k].shape[1] for k in ("wte.weight", "model.embed_tokens.weight") if k in b)
    for k in b:
        d = (a[k].double() - b[k].double()).abs()
        s = key_bias(k, n_embd)
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


def documents(gen):
    """Each step's documents: on even steps as many as fill PACKED_ROWS rows (up to 61 inputs each,
    so they straddle the blocks of 64 queries), on odd steps three short ones (one row under 64)."""
    n_ctx = MODELS["init_long"][0]
    doc = lambda most: [BOS, *gen.integers(0, BOS, gen.integers(0, most + 1)).tolist(), BOS]
    steps = []
    for step in range(STEPS):
        if step % 2:
            steps.append([doc(15) for _ in range(3)])
            continue
        docs = []
        while len(pack(docs + [d := doc(60)], n_ctx)) <= PACKED_ROWS:
            docs.append(d)
        steps.append(docs)
    return steps


def main():
    torch.set_num_threads(1)
    starts = {name: build_model(name) for name in [*MODELS, *LLAMAS]}
    gen = np.random.default_rng(SEED)
    data = {
        "rows16": gen.integers(0, VOCAB, (STEPS, 4, 17)).tolist(),
        "rows150": gen.integers(0, VOCAB, (STEPS, 2, 151)).tolist(),
        "documents": documents(gen),
    }
    specs = {
        "plain": {"init": "init", "data": "rows16", "packed_rows": None, "grad_clip": None},
        "clip": {"init": "init", "data": "rows16", "packed_rows": None, "grad_clip": None},
        "long": {"init": "init_long", "data": "rows150", "packed_rows": None, "grad_clip": None},
        "packed": {"init": "init_long", "data": "documents", "packed_rows": PACKED_ROWS, "grad_clip": None},
        "llama": {"init": "llama_init", "data": "rows16", "packed_rows": None, "grad_clip": None},
        "llama_gqa": {"init": "llama_gqa_init", "data": "rows16", "packed_rows": None, "grad_clip": None},
        "llama_packed": {"init": "llama_long_init", "data": "documents", "packed_rows": PACKED_ROWS,
                         "grad_clip": None},
    }
    init = {name: {k: v.clone() for k, v in m.state_dict().items()} for name, m in starts.items()}

    def go(name, dtype=torch.float64):
        spec = specs[name]
        return run(spec, data[spec["data"]], init[spec["init"]], dtype)

    results = {name: go(name) for name in specs if name != "clip"}
    # A threshold the clipped run crosses both ways: below its larger norms, above its smaller.
    specs["clip"]["grad_clip"] = clip = float(np.round(np.median(results["plain"][1]), 2))
    results["clip"] = go("clip")
    clip_norms = results["clip"][1]
    n_clipped = sum(n > clip for n in clip_norms)
    assert 0 < n_clipped < STEPS, f"clipping at {clip} should act on some steps, not all: {clip_norms}"
    # No norm so near the threshold that float32 rounding could decide whether it clips.
    assert min(abs(n / clip - 1) for n in clip_norms) > 1e-3, "a norm is too near the threshold; change SEED"

    if OUT.exists():
        shutil.rmtree(OUT)
    OUT.mkdir(parents=True)
    for name, model in starts.items():
        write_checkpoint(model, OUT / name)
    runs = {}
    for name, spec in specs.items():
        losses, norms, grads0, model = results[name]
        write_checkpoint(model, OUT / name)
        own_grads = name != "clip"
        if own_grads:
            save_file(grads0, OUT / name / "grads0.safetensors")
        # For scale: how far PyTorch itself in float32 is from this float64 reference.
        f32_losses, _, f32_grads0, f32_model = go(name, torch.float32)
        start, end, f32_end = tensors(starts[spec["init"]]), tensors(model), tensors(f32_model)
        runs[name] = {
            **spec,
            "grads0": f"{'plain' if name == 'clip' else name}/grads0.safetensors",
            "losses": losses,
            "grad_norms": norms,
            **({"steps_clipped": n_clipped} if name == "clip" else {}),
            "max_param_change": max_abs(end, start),
            "pytorch_f32_vs_reference": {
                "loss_max_rel": max(abs(a - b) / abs(b) for a, b in zip(f32_losses, losses)),
                **({"grad0_max_abs_rel_per_tensor": max(rel_to_largest(f32_grads0[k], g) for k, g in grads0.items())}
                   if own_grads else {}),
                "params_max_abs_but_key_biases": max_abs(f32_end, end),
                "key_biases_max_abs": max_abs(f32_end, end, keys=True),
            },
        }
        print(f"{name}: losses {losses}\n  norms {norms}\n  {runs[name]['pytorch_f32_vs_reference']}")
    golden = {
        "about": "tests/train_golden.rs reads this; regenerate with scripts/gen_train_golden.py",
        "optimizer": {"lr": LR, "beta1": BETAS[0], "beta2": BETAS[1], "eps": EPS, "weight_decay": WEIGHT_DECAY},
        "data": "@",
        "runs": runs,
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__},
    }
    # One line per step's rows or documents, the rest indented.
    sets = ",\n  ".join(f'"{k}": [\n   ' + ",\n   ".join(json.dumps(s) for s in v) + "\n  ]" for k, v in data.items())
    text = json.dumps(golden, indent=1).replace('"@"', f"{{\n  {sets}\n }}")
    (OUT / "golden.json").write_text(text + "\n")
    total = sum(f.stat().st_size for f in OUT.rglob("*") if f.is_file())
    print(f"wrote {OUT} ({total / 1e3:.0f} kB); clip {clip} acts on {n_clipped} steps")


if __name__ == "__main__":
    main()
