#!/usr/bin/env python3
"""Regenerates tests/golden/llama/: tiny random Llama-family models saved by
`transformers`, with `transformers`' logits and greedy continuations for them
(read by tests/llama_golden.rs; training parity is gen_train_golden.py's).

Every model is Llama's architecture at toy size (vocab 64, 64 positions,
hidden 32, 2 layers, 4 heads of 8, intermediate 96 = 3x, RMSNorm eps 1e-5),
with weights drawn larger than Llama's init (gen_gpt2_golden.draw_weights) so
attention is far from uniform and a wrong rotation, norm or gate shows up as a
large difference:

    llama/            LlamaForCausalLM, 4 KV heads, untied lm_head, rope_theta 10000
    llama_bf16/       the same weights saved in bfloat16
    llama_sharded/    the same weights saved in shards (model-0000N-of-0000M.safetensors
                      + model.safetensors.index.json)
    llama3_tied/      tied embeddings, Llama 3 rope_scaling (llama3: factor 8, low/high
                      frequency factors 0.5/4, original context 32: of head size 8's four
                      wavelengths, 2π is kept, 20π blended, 200π and 2000π slowed 8x)
    qwen2/            Qwen2ForCausalLM: q/k/v biases, rope_theta 1e6
    gqa/              as llama/ with 2 KV heads (grouped-query attention)
    gqa_llama3_tied/  as llama3_tied/ with 2 KV heads
    logits_NAME.bin   float32 little-endian logits of every prompt position, prompts
                      concatenated: [sum(prompt lengths), vocab]
    golden.json       prompts (token ids), each model's directory, logits file and greedy
                      continuations, tolerances, metadata

`transformers` writes the configs (in its own dialect: version 5 writes
`rope_parameters`). The bf16 reference is `transformers` in float32 on the
weights rounded to bfloat16, which is what loading them means. Greedy
continuations come from `generate(do_sample=False)`, each step winning by a
clear margin (checked), so the test is not decided by ties.

    ~/.cache/gpt-venv/bin/python scripts/gen_llama_golden.py
"""
import copy
import json
import shutil
from pathlib import Path

import numpy as np
import torch
import transformers
from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

from gen_gpt2_golden import MIN_MARGIN, PROMPT_LENGTHS, TOLERANCE, draw_weights, greedy_of, logits_of

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "golden" / "llama"
VOCAB, N_CTX, HIDDEN, N_LAYER, N_HEAD, INTERMEDIATE = 64, 64, 32, 2, 4, 96
LLAMA3 = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 0.5, "high_freq_factor": 4.0,
          "original_max_position_embeddings": 32}
SEED = 7


def build(kind="llama", n_kv_head=N_HEAD, tied=False, theta=10000.0, scaling=None, seed=SEED):
    """A tiny model of `kind` (llama or qwen2) with drawn weights, in eval mode."""
    config_class, model_class = {"llama": (LlamaConfig, LlamaForCausalLM),
                                 "qwen2": (Qwen2Config, Qwen2ForCausalLM)}[kind]
    cfg = config_class(
        vocab_size=VOCAB, hidden_size=HIDDEN, intermediate_size=INTERMEDIATE, num_hidden_layers=N_LAYER,
        num_attention_heads=N_HEAD, num_key_value_heads=n_kv_head, max_position_embeddings=N_CTX,
        rms_norm_eps=1e-5, rope_parameters={"rope_type": "default", "rope_theta": theta, **(scaling or {})},
        tie_word_embeddings=tied, bos_token_id=1, eos_token_id=2, attention_dropout=0.0,
    )
    cfg._attn_implementation = "eager"
    torch.manual_seed(seed)
    model = model_class(cfg).eval()
    draw_weights(model, fan_in_dim=1)
    # generate() would hold back EOS until min_new_tokens: greedy here means the plain argmax.
    model.generation_config.eos_token_id = None
    return model


def rounded(model, dtype):
    """A float32 copy whose weights are rounded to `dtype`."""
    copy_ = copy.deepcopy(model)
    with torch.no_grad():
        for p in copy_.parameters():
            p.copy_(p.to(dtype).to(torch.float32))
    return copy_


def save(model, dir, dtype=torch.float32, **kwargs):
    copy.deepcopy(model).to(dtype).save_pretrained(dir, **kwargs)
    (dir / "generation_config.json").unlink(missing_ok=True)


def main():
    models = {
        "llama": build(),
        "llama3_tied": build(tied=True, scaling=LLAMA3),
        "qwen2": build("qwen2", theta=1e6),
        "gqa": build(n_kv_head=2),
        "gqa_llama3_tied": build(n_kv_head=2, tied=True, scaling=LLAMA3),
    }
    bf16 = rounded(models["llama"], torch.bfloat16)
    gen = np.random.default_rng(SEED)
    prompts = [gen.integers(0, VOCAB, n).tolist() for n in PROMPT_LENGTHS]

    if OUT.exists():
        shutil.rmtree(OUT)
    OUT.mkdir(parents=True)
    entries = {}
    # name -> (model whose logits are the reference, directory, save options)
    cases = {name: (m, name, {}) for name, m in models.items()}
    cases["llama_bf16"] = (bf16, "llama_bf16", {"dtype": torch.bfloat16})
    cases["llama_sharded"] = (models["llama"], "llama_sharded", {"max_shard_size": "40KB"})
    for name, (model, dir, opts) in cases.items():
        source = models["llama"] if name in ("llama_bf16", "llama_sharded") else model
        save(source, OUT / dir, **opts)
        logits = logits_of(model, prompts)
        greedy, margin = greedy_of(model, prompts, N_CTX)
        assert margin > MIN_MARGIN, f"{name}: a greedy step is nearly a tie ({margin}); change SEED"
        logits_file = f"logits_{'llama' if name == 'llama_sharded' else name}.bin"
        (OUT / logits_file).write_bytes(logits.tobytes())
        cfg = model.config
        entries[name] = {
            "dir": dir,
            "logits": logits_file,
            "greedy": greedy,
            "greedy_min_margin": margin,
            "num_key_value_heads": cfg.num_key_value_heads,
            "logit_range": [float(logits.min()), float(logits.max())],
        }
    shards = sorted(f.name for f in (OUT / "llama_sharded").glob("model-*.safetensors"))
    assert len(shards) >= 2, f"the sharded save should be in several shards: {shards}"

    golden = {
        "about": "tests/llama_golden.rs reads this; regenerate with scripts/gen_llama_golden.py",
        "config": {"vocab_size": VOCAB, "max_position_embeddings": N_CTX, "hidden_size": HIDDEN,
                   "num_hidden_layers": N_LAYER, "num_attention_heads": N_HEAD, "intermediate_size": INTERMEDIATE},
        "prompts": prompts,
        "logits_tolerance": TOLERANCE,
        "models": entries,
        "max_abs_bf16_vs_f32": float(np.abs(logits_of(bf16, prompts) - logits_of(models["llama"], prompts)).max()),
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__},
    }
    (OUT / "golden.json").write_text(json.dumps(golden, indent=1) + "\n")
    total = sum(f.stat().st_size for f in OUT.rglob("*") if f.is_file())
    print(f"wrote {OUT} ({total / 1e6:.2f} MB); {len(shards)} shards; "
          f"margins { {k: round(v['greedy_min_margin'], 4) for k, v in entries.items()} }")


if __name__ == "__main__":
    main()
