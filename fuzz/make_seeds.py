#!/usr/bin/env python3
"""Writes fuzz/seeds/: tiny valid inputs for the `checkpoint` fuzz target
(u16 LE config length, config.json, model.safetensors) in each layout and
dtype Gpt::load accepts, so the fuzzer starts from files that parse.

    ~/.cache/gpt-venv/bin/python fuzz/make_seeds.py
"""
import json
import struct
from pathlib import Path

import torch
from safetensors.torch import save

OUT = Path(__file__).resolve().parent / "seeds"
V, T, C, L = 5, 4, 4, 1


def config(**extra):
    c = {"model_type": "gpt2", "vocab_size": V, "n_positions": T, "n_embd": C, "n_head": 2, "n_layer": L}
    c.update(extra)
    return json.dumps(c).encode()


def tensors(prefix="", dtype=torch.float32, bias=True, norms=True, lm_head=False, buffers=False):
    g = torch.Generator().manual_seed(0)
    t = {"wte.weight": (V, C), "wpe.weight": (T, C)}
    linears = {"attn.c_attn": 3 * C, "attn.c_proj": C, "mlp.c_fc": 4 * C, "mlp.c_proj": C}
    for i in range(L):
        for name, out in linears.items():
            t[f"h.{i}.{name}.weight"] = (4 * C if name == "mlp.c_proj" else C, out)
            if bias:
                t[f"h.{i}.{name}.bias"] = (out,)
        for ln in ["ln_1", "ln_2"] if norms else []:
            t[f"h.{i}.{ln}.weight"] = (C,)
            if bias:
                t[f"h.{i}.{ln}.bias"] = (C,)
    if norms:
        t["ln_f.weight"] = (C,)
        if bias:
            t["ln_f.bias"] = (C,)
    out = {prefix + k: torch.randn(s, generator=g).to(dtype) for k, s in t.items()}
    if lm_head:
        out["lm_head.weight"] = torch.randn(V, C, generator=g).to(dtype)
    for i in range(L if buffers else 0):
        out[f"h.{i}.attn.bias"] = torch.tril(torch.ones(T, T)).view(1, 1, T, T)
        out[f"h.{i}.attn.masked_bias"] = torch.tensor(-1e4)
    return save(out)


def llama_config(model_type="llama", **extra):
    c = {"model_type": model_type, "vocab_size": V, "hidden_size": C, "intermediate_size": 2 * C,
         "num_hidden_layers": L, "num_attention_heads": 2, "num_key_value_heads": 2, "max_position_embeddings": T,
         "rope_theta": 10000.0}
    c.update(extra)
    return json.dumps(c).encode()


def llama_tensors(dtype=torch.float32, qkv_bias=False, lm_head=True):
    """Hugging Face Llama names, nn.Linear [out, in]."""
    g = torch.Generator().manual_seed(0)
    t = {"model.embed_tokens.weight": (V, C), "model.norm.weight": (C,)}
    linears = {"self_attn.q_proj": (C, C), "self_attn.k_proj": (C, C), "self_attn.v_proj": (C, C),
               "self_attn.o_proj": (C, C), "mlp.gate_proj": (2 * C, C), "mlp.up_proj": (2 * C, C),
               "mlp.down_proj": (C, 2 * C)}
    for i in range(L):
        for name, shape in linears.items():
            t[f"model.layers.{i}.{name}.weight"] = shape
            if qkv_bias and name[-6] in "qkv":
                t[f"model.layers.{i}.{name}.bias"] = (shape[0],)
        for norm in ["input_layernorm", "post_attention_layernorm"]:
            t[f"model.layers.{i}.{norm}.weight"] = (C,)
    if lm_head:
        t["lm_head.weight"] = (V, C)
    return save({k: torch.randn(s, generator=g).to(dtype) for k, s in t.items()})


def main():
    OUT.mkdir(exist_ok=True)
    seeds = {
        "hub_f32": (config(), tensors(buffers=True)),
        "transformers_f16": (config(), tensors("transformer.", torch.float16)),
        "untied_bf16": (config(tie_word_embeddings=False), tensors(dtype=torch.bfloat16, lm_head=True)),
        "microgpt": (
            config(norm="rmsnorm", activation_function="relu", bias=False, tie_word_embeddings=False,
                   embd_norm=True, final_norm=False),
            tensors(bias=False, norms=False, lm_head=True),
        ),
        "llama3_bf16": (
            llama_config(rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                       "high_freq_factor": 4.0, "original_max_position_embeddings": 2}),
            llama_tensors(torch.bfloat16),
        ),
        "qwen2_tied": (llama_config("qwen2", tie_word_embeddings=True), llama_tensors(qkv_bias=True, lm_head=False)),
    }
    for name, (cfg, st) in seeds.items():
        (OUT / name).write_bytes(struct.pack("<H", len(cfg)) + cfg + st)


if __name__ == "__main__":
    main()
