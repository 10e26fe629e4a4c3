#!/usr/bin/env python3
"""Regenerates tests/golden/gguf_models/: tiny random models written as GGUF
files by llama.cpp's `gguf` package, laid out as llama.cpp's converter
(convert_hf_to_gguf.py) writes them, with reference logits and greedy
continuations (read by tests/gguf_model_golden.rs).

    llama.gguf          gen_llama_golden's untied Llama (4 KV heads), F32
    llama_q8_0.gguf     the same, matrices in Q8_0 (norms stay F32, as llama.cpp keeps them)
    gqa_tied.gguf       a tied Llama with 2 KV heads (grouped-query attention), F32
    gqa_tied_q8_0.gguf  the same in Q8_0
    gqa_llama3_tied.gguf  gen_llama_golden's gqa_llama3_tied (2 KV heads, tied, Llama 3 rope
                        scaling stored as llama.cpp does: rope_freqs.weight), F32
    gpt2.gguf           gen_gpt2_golden's tiny GPT-2 (biases, learned positions), F32
    gpt2_q8_0.gguf      the same in Q8_0
    logits_NAME.bin     float32 little-endian logits of every prompt position, prompts
                        concatenated: [sum(prompt lengths), vocab]
    golden.json         prompts, each file's logits and greedy continuations, figures

As llama.cpp's converter does, the rows of Llama's attn_q / attn_k are
permuted within each head (`LlamaModel.permute`), GPT-2's Conv1D matrices
are transposed to `[out, in]`, and an absent `output.weight` means tied
embeddings. Each file carries a small byte-level vocabulary
(tokenizer.ggml.*, model "gpt2", pre "gpt-2": GPT-2's first tokens and
merges) and a chat template.

The reference logits are `transformers`' float32 model with each weight
replaced by the file's dequantized values (`gguf.quants.dequantize`, the
permutation undone): for F32 files, the original weights. Every file is
also loaded by `transformers` itself (`from_pretrained(dir, gguf_file=...)`,
which dequantizes and undoes the permutation on its own); its logits must
agree with the reference (the figure is recorded in golden.json). Not for
gqa_llama3_tied: transformers' GGUF loader ignores rope_freqs.weight, so there
the reference is the safetensors model's own logits only.

    ~/.cache/gpt-venv/bin/python scripts/gen_gguf_model_golden.py
"""
import json
import math
import shutil
import sys
import tempfile
from pathlib import Path

import gguf
import numpy as np
import torch
import transformers
from transformers import AutoModelForCausalLM

sys.path.insert(0, str(Path(__file__).resolve().parent))
import gen_gpt2_golden as g2  # noqa: E402
import gen_llama_golden as gl  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "golden" / "gguf_models"
Q8_0 = gguf.GGMLQuantizationType.Q8_0
F32 = gguf.GGMLQuantizationType.F32
CHAT_TEMPLATE = "{% for m in messages %}<|{{ m.role }}|>{{ m.content }}{% endfor %}"


def vocab(n, specials):
    """n tokens: GPT-2's byte tokens and first merges, `specials` (id -> text) as control tokens."""
    encoder = json.loads((ROOT / "data" / "gpt2" / "encoder.json").read_text())
    by_id = {i: t for t, i in encoder.items()}
    merges_all = (ROOT / "data" / "gpt2" / "vocab.bpe").read_text().splitlines()[1:]
    tokens, types = [], []
    source = iter(range(len(by_id)))
    for i in range(n):
        if i in specials:
            tokens.append(specials[i])
            types.append(3)
        else:
            tokens.append(by_id[next(source)])
            types.append(1)
    have = set(tokens)
    merges = [m for m in merges_all[:n] if "".join(m.split(" ")) in have and all(p in have for p in m.split(" "))]
    return tokens, types, merges


def permute(w, n_head):
    """llama.cpp's LlamaModel.permute (rows of one head: halves -> interleaved pairs)."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def unpermute(w, n_head):
    return w.reshape(n_head, w.shape[0] // n_head // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def rope_freqs(cfg):
    """Llama 3's rope scaling as llama.cpp's converter stores it (LlamaModel.generate_extra_tensors)."""
    rope = cfg.rope_parameters
    dim = cfg.hidden_size // cfg.num_attention_heads
    freqs = 1.0 / (rope["rope_theta"] ** (torch.arange(0, dim, 2, dtype=torch.float32) / dim))
    factor, low, high = rope["factor"], rope["low_freq_factor"], rope["high_freq_factor"]
    old = rope["original_max_position_embeddings"]
    factors = []
    for freq in freqs.tolist():
        wavelen = 2 * math.pi / freq
        if wavelen < old / high:
            factors.append(1)
        elif wavelen > old / low:
            factors.append(factor)
        else:
            smooth = (old / wavelen - low) / (high - low)
            factors.append(1 / ((1 - smooth) / factor + smooth))
    return np.array(factors, dtype=np.float32)


def llama_tensors(model):
    """(gguf name, numpy array in the file's row layout, HF name, undo) for a LlamaForCausalLM."""
    cfg = model.config
    sd = {k: v.detach().numpy().astype(np.float32) for k, v in model.state_dict().items()}
    out = [("token_embd.weight", sd["model.embed_tokens.weight"], "model.embed_tokens.weight", None)]
    for i in range(cfg.num_hidden_layers):
        p = f"model.layers.{i}."
        nh, nkv = cfg.num_attention_heads, cfg.num_key_value_heads
        out += [
            (f"blk.{i}.attn_norm.weight", sd[p + "input_layernorm.weight"], p + "input_layernorm.weight", None),
            (f"blk.{i}.attn_q.weight", permute(sd[p + "self_attn.q_proj.weight"], nh), p + "self_attn.q_proj.weight",
             lambda w, nh=nh: unpermute(w, nh)),
            (f"blk.{i}.attn_k.weight", permute(sd[p + "self_attn.k_proj.weight"], nkv), p + "self_attn.k_proj.weight",
             lambda w, nkv=nkv: unpermute(w, nkv)),
            (f"blk.{i}.attn_v.weight", sd[p + "self_attn.v_proj.weight"], p + "self_attn.v_proj.weight", None),
            (f"blk.{i}.attn_output.weight", sd[p + "self_attn.o_proj.weight"], p + "self_attn.o_proj.weight", None),
            (f"blk.{i}.ffn_norm.weight", sd[p + "post_attention_layernorm.weight"],
             p + "post_attention_layernorm.weight", None),
            (f"blk.{i}.ffn_gate.weight", sd[p + "mlp.gate_proj.weight"], p + "mlp.gate_proj.weight", None),
            (f"blk.{i}.ffn_up.weight", sd[p + "mlp.up_proj.weight"], p + "mlp.up_proj.weight", None),
            (f"blk.{i}.ffn_down.weight", sd[p + "mlp.down_proj.weight"], p + "mlp.down_proj.weight", None),
        ]
    out.append(("output_norm.weight", sd["model.norm.weight"], "model.norm.weight", None))
    rope = cfg.rope_parameters
    if rope.get("rope_type") == "llama3":
        out.append(("rope_freqs.weight", rope_freqs(cfg), None, None))
    if not cfg.tie_word_embeddings:
        out.append(("output.weight", sd["lm_head.weight"], "lm_head.weight", None))
    return out


def gpt2_tensors(model):
    cfg = model.config
    sd = {k: v.detach().numpy().astype(np.float32) for k, v in model.state_dict().items()}
    t = lambda w: np.ascontiguousarray(w.T)  # noqa: E731
    out = [("token_embd.weight", sd["transformer.wte.weight"], "transformer.wte.weight", None),
           ("position_embd.weight", sd["transformer.wpe.weight"], "transformer.wpe.weight", None)]
    for i in range(cfg.n_layer):
        p = f"transformer.h.{i}."
        for ours, theirs in [("attn_norm", "ln_1"), ("ffn_norm", "ln_2")]:
            for s in ["weight", "bias"]:
                out.append((f"blk.{i}.{ours}.{s}", sd[p + f"{theirs}.{s}"], p + f"{theirs}.{s}", None))
        for ours, theirs in [("attn_qkv", "attn.c_attn"), ("attn_output", "attn.c_proj"),
                             ("ffn_up", "mlp.c_fc"), ("ffn_down", "mlp.c_proj")]:
            out.append((f"blk.{i}.{ours}.weight", t(sd[p + f"{theirs}.weight"]), p + f"{theirs}.weight", t))
            out.append((f"blk.{i}.{ours}.bias", sd[p + f"{theirs}.bias"], p + f"{theirs}.bias", None))
    for s in ["weight", "bias"]:
        out.append((f"output_norm.{s}", sd[f"transformer.ln_f.{s}"], f"transformer.ln_f.{s}", None))
    return out


def write(path, arch, model, tensors, qtype, specials):
    """Writes the GGUF file; returns the state dict of the weights it holds (dequantized, HF layout)."""
    cfg = model.config
    w = gguf.GGUFWriter(str(path), arch)
    w.add_name(f"tiny {arch}")
    if arch == "llama":
        w.add_context_length(cfg.max_position_embeddings)
        w.add_embedding_length(cfg.hidden_size)
        w.add_block_count(cfg.num_hidden_layers)
        w.add_feed_forward_length(cfg.intermediate_size)
        w.add_head_count(cfg.num_attention_heads)
        w.add_head_count_kv(cfg.num_key_value_heads)
        w.add_layer_norm_rms_eps(cfg.rms_norm_eps)
        w.add_rope_freq_base(cfg.rope_parameters["rope_theta"])
        w.add_rope_dimension_count(cfg.hidden_size // cfg.num_attention_heads)
        w.add_vocab_size(cfg.vocab_size)
    else:
        w.add_context_length(cfg.n_positions)
        w.add_embedding_length(cfg.n_embd)
        w.add_block_count(cfg.n_layer)
        w.add_feed_forward_length(4 * cfg.n_embd)
        w.add_head_count(cfg.n_head)
        w.add_layer_norm_eps(cfg.layer_norm_epsilon)
    tokens, types, merges = vocab(cfg.vocab_size, specials)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("gpt-2")
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(merges)
    ids = sorted(specials)
    w.add_bos_token_id(ids[0])
    w.add_eos_token_id(ids[-1])
    w.add_add_bos_token(False)
    w.add_chat_template(CHAT_TEMPLATE)
    state = {}
    for name, data, hf_name, undo in tensors:
        if qtype == Q8_0 and data.ndim == 2 and hf_name is not None:
            q = gguf.quants.quantize(data, Q8_0)
            w.add_tensor(name, q, raw_dtype=Q8_0)
            back = gguf.quants.dequantize(q, Q8_0).reshape(data.shape)
        else:
            w.add_tensor(name, data)
            back = data
        if hf_name is not None:
            state[hf_name] = torch.from_numpy(np.ascontiguousarray(undo(back) if undo else back))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return state


def main():
    gen = np.random.default_rng(gl.SEED)
    llama_prompts = [gen.integers(0, gl.VOCAB, n).tolist() for n in g2.PROMPT_LENGTHS]
    gen = np.random.default_rng(g2.SEED)
    gpt2_prompts = [gen.integers(0, g2.VOCAB, n).tolist() for n in g2.PROMPT_LENGTHS]
    models = {
        "llama": (gl.build(), "llama", llama_tensors, {1: "<s>", 2: "</s>"}, llama_prompts, gl.N_CTX),
        "gqa_tied": (gl.build(n_kv_head=2, tied=True, seed=gl.SEED + 1), "llama", llama_tensors,
                     {1: "<s>", 2: "</s>"}, llama_prompts, gl.N_CTX),
        "gqa_llama3_tied": (gl.build(n_kv_head=2, tied=True, scaling=gl.LLAMA3), "llama", llama_tensors,
                            {1: "<s>", 2: "</s>"}, llama_prompts, gl.N_CTX),
        "gpt2": (g2.build_model(g2.SEED), "gpt2", gpt2_tensors, {g2.VOCAB - 1: "<|endoftext|>"}, gpt2_prompts,
                 g2.N_CTX),
    }
    if OUT.exists():
        shutil.rmtree(OUT)
    OUT.mkdir(parents=True)
    entries = {}
    for base, (model, arch, tensors_of, specials, prompts, n_ctx) in models.items():
        kinds = [(F32, "")] if base == "gqa_llama3_tied" else [(F32, ""), (Q8_0, "_q8_0")]
        for qtype, suffix in kinds:
            name = base + suffix
            file = OUT / f"{name}.gguf"
            state = write(file, arch, model, tensors_of(model), qtype, specials)
            reference = type(model)(model.config).eval()
            missing, unexpected = reference.load_state_dict(state, strict=False)
            assert not unexpected and all("lm_head" in m or ".attn.bias" in m for m in missing), (missing, unexpected)
            if model.config.tie_word_embeddings:
                reference.tie_weights()
            reference.generation_config.eos_token_id = None
            logits = g2.logits_of(reference, prompts)
            greedy, margin = g2.greedy_of(reference, prompts, n_ctx)
            assert margin > g2.MIN_MARGIN, f"{name}: a greedy step is nearly a tie ({margin})"
            # transformers' own GGUF loader: dequantizes and undoes the permutation itself (but
            # ignores rope_freqs.weight, so a Llama 3 scaled file is checked against the reference only).
            hf_diff = None
            if base != "gqa_llama3_tied":
                with tempfile.TemporaryDirectory() as tmp:
                    shutil.copy(file, Path(tmp) / file.name)
                    # transformers maps gpt2.context_length to n_ctx, not n_positions (the size of wpe): say it.
                    extra = {"n_positions": n_ctx} if arch == "gpt2" else {}
                    theirs = AutoModelForCausalLM.from_pretrained(tmp, gguf_file=file.name, dtype=torch.float32,
                                                                  **extra).eval()
                    theirs.config._attn_implementation = "eager"
                    hf_diff = float(np.abs(g2.logits_of(theirs, prompts) - logits).max())
                assert hf_diff < 1e-5, f"{name}: transformers' GGUF loader differs by {hf_diff}"
            logits_file = f"logits_{name}.bin"
            (OUT / logits_file).write_bytes(logits.tobytes())
            entries[name] = {
                "file": file.name,
                "arch": arch,
                "type": "Q8_0" if qtype == Q8_0 else "F32",
                "logits": logits_file,
                "prompts": "llama" if arch == "llama" else "gpt2",
                "greedy": greedy,
                "greedy_min_margin": margin,
                "max_abs_transformers_gguf_loader_vs_reference": hf_diff,
                "max_abs_vs_original_weights": float(np.abs(g2.logits_of(model, prompts) - logits).max()),
                "bos": min(specials),
                "eos": max(specials),
            }
    golden = {
        "about": "tests/gguf_model_golden.rs reads this; regenerate with scripts/gen_gguf_model_golden.py",
        "prompts": {"llama": llama_prompts, "gpt2": gpt2_prompts},
        "logits_tolerance": g2.TOLERANCE,
        "chat_template": CHAT_TEMPLATE,
        "models": entries,
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__,
                     "gguf": getattr(gguf, "__version__", "?")},
    }
    (OUT / "golden.json").write_text(json.dumps(golden, indent=1) + "\n")
    total = sum(f.stat().st_size for f in OUT.rglob("*") if f.is_file())
    print(f"wrote {OUT} ({total / 1e3:.0f} KB)")
    for k, v in entries.items():
        print(f"  {k}: transformers' GGUF loader vs reference {v['max_abs_transformers_gguf_loader_vs_reference']}, "
              f"vs original weights {v['max_abs_vs_original_weights']:.1e}, margin {v['greedy_min_margin']:.3f}")


if __name__ == "__main__":
    main()
