#!/usr/bin/env python3
"""Regenerates tests/golden/gpt2/: a tiny random GPT-2 in every checkpoint
format `Gpt::load` reads, with Hugging Face `transformers`' logits and greedy
continuations for it.

The model is GPT-2's architecture at toy size (vocab 300, n_ctx 64, n_embd 32,
2 layers, 4 heads), with weights drawn larger than GPT-2's init so attention
is far from uniform and logits span several units: a wrong transpose, norm or
mask shows up as a large difference. It is written as

    hub/            config.json + model.safetensors as on the Hub (openai-community/gpt2):
                    no name prefix, with the causal-mask buffers h.N.attn.bias / masked_bias
    transformers/   save_pretrained(): `transformer.` prefix, tied lm_head left out
    f16/            the Hub layout in float16
    bf16/           the `transformers` layout in bfloat16
    llmc/           llm.c's gpt2_*.bin, as its train_gpt2.py write_model writes it:
                    model.bin (version 3, float32) and model_bf16.bin (version 5, bfloat16)
    tf/             OpenAI's release layout (hparams.json, checkpoint, model.ckpt.index,
                    model.ckpt.data-00000-of-00001), written by tf.compat.v1.train.Saver
    golden.json     prompts (token ids), greedy continuations, tolerances, metadata
    logits_*.bin    float32 little-endian logits of every prompt position, prompts
                    concatenated: [sum(prompt lengths), vocab]

The f16 / bf16 references are `transformers` run in float32 on the weights
rounded to that dtype, which is exactly what loading them means (they are
converted to f32 at load); golden.json also records how far those logits are
from the f32 model's, for information.

Greedy continuations come from `generate(do_sample=False)`; the script checks
every greedy step wins by a clear margin, so the test is not decided by ties.

Needs torch, transformers, safetensors, numpy and tensorflow (tensorflow-cpu):

    ~/.cache/gpt-venv/bin/python scripts/gen_gpt2_golden.py
"""
import copy
import json
import os
import shutil
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

import numpy as np
import torch
import transformers
from safetensors.torch import save_file
from transformers import GPT2Config, GPT2LMHeadModel

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "golden" / "gpt2"
VOCAB, N_CTX, N_EMBD, N_LAYER, N_HEAD = 300, 64, 32, 2, 4
PROMPT_LENGTHS = [1, 7, 29, 40, 64]
NEW_TOKENS = 24
TOLERANCE = 1e-4
MIN_MARGIN = 1e-3
SEED = 1234


def build_model(seed):
    cfg = GPT2Config(
        vocab_size=VOCAB, n_positions=N_CTX, n_embd=N_EMBD, n_layer=N_LAYER, n_head=N_HEAD,
        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
        bos_token_id=VOCAB - 1, eos_token_id=VOCAB - 1,
    )
    cfg._attn_implementation = "eager"
    torch.manual_seed(seed)
    model = GPT2LMHeadModel(cfg).eval()
    draw_weights(model)
    return model


def draw_weights(model, fan_in_dim=0):
    """Weights larger than GPT-2's init, so attention is far from uniform and
    every logit moves well above float noise (gen_train_golden.py and
    gen_llama_golden.py use them too). Matrices are GPT-2's Conv1D [in, out]
    (fan_in_dim 0) or nn.Linear [out, in] (fan_in_dim 1, Llama)."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if ".ln_" in name or name.startswith("transformer.ln_f") or "norm" in name:
                p.copy_((1.0 if name.endswith("weight") else 0.0) + 0.2 * torch.randn_like(p))
            elif name.endswith("bias"):
                p.copy_(0.1 * torch.randn_like(p))
            elif "wte" in name or "embed_tokens" in name:
                p.copy_(0.5 * torch.randn_like(p))
            elif "wpe" in name:
                p.copy_(0.3 * torch.randn_like(p))
            else:
                p.copy_(torch.randn_like(p) / p.shape[fan_in_dim] ** 0.5)


def rounded(model, dtype):
    """A float32 copy whose weights are rounded to `dtype`."""
    copy = build_model(SEED)
    copy.load_state_dict({k: v.to(dtype).to(torch.float32) for k, v in model.state_dict().items()})
    return copy.eval()


def logits_of(model, prompts):
    with torch.no_grad():
        return np.concatenate([model(torch.tensor([p])).logits[0].numpy() for p in prompts]).astype("<f4")


def greedy_of(model, prompts, n_ctx=N_CTX):
    """Greedy continuations of the prompts that leave room, with the smallest winning margin."""
    out, margin = [], float("inf")
    for p in prompts:
        n = min(NEW_TOKENS, n_ctx - len(p))
        if n == 0:
            continue
        with torch.no_grad():
            seq = model.generate(
                torch.tensor([p]), attention_mask=torch.ones(1, len(p), dtype=torch.long),
                max_new_tokens=n, min_new_tokens=n, do_sample=False, pad_token_id=0,
            )[0].tolist()
            full = model(torch.tensor([seq])).logits[0]
        new = seq[len(p):]
        for i, tok in enumerate(new):
            top2 = torch.topk(full[len(p) - 1 + i], 2)
            assert top2.indices[0].item() == tok, "generate() disagrees with the full forward"
            margin = min(margin, (top2.values[0] - top2.values[1]).item())
        out.append({"prompt": len(out), "tokens": new})
    return out, margin


def hub_tensors(model, dtype):
    """The Hub's layout: no prefix, no lm_head, plus the causal-mask buffers."""
    t = {k.removeprefix("transformer."): v.to(dtype).contiguous()
         for k, v in model.state_dict().items() if k != "lm_head.weight"}
    for i in range(N_LAYER):
        t[f"h.{i}.attn.bias"] = torch.tril(torch.ones(N_CTX, N_CTX)).view(1, 1, N_CTX, N_CTX).to(dtype)
        t[f"h.{i}.attn.masked_bias"] = torch.tensor(-1e4).to(dtype)
    return t


def write_hub(model, dir, dtype):
    dir.mkdir(parents=True)
    save_file(hub_tensors(model, dtype), dir / "model.safetensors", metadata={"format": "pt"})
    model.config.to_json_file(dir / "config.json")


def write_transformers(model, dir, dtype):
    copy.deepcopy(model).to(dtype).save_pretrained(dir)
    (dir / "generation_config.json").unlink(missing_ok=True)


def write_llmc(model, path, version):
    """llm.c train_gpt2.py's write_model: int32 header, then its parameter order,
    nn.Linear weights [out, in] (ours are Conv1D [in, out]), vocab padded to 128."""
    sd = {k.removeprefix("transformer."): v for k, v in model.state_dict().items()}
    vp = (VOCAB + 127) // 128 * 128
    header = np.zeros(256, dtype="<i4")
    header[:8] = [20240326, version, N_CTX, VOCAB, N_LAYER, N_HEAD, N_EMBD, vp]
    wte = torch.cat([sd["wte.weight"], torch.zeros(vp - VOCAB, N_EMBD)])
    order = [wte, sd["wpe.weight"]]
    per_layer = ["ln_1.weight", "ln_1.bias", "attn.c_attn.weight", "attn.c_attn.bias", "attn.c_proj.weight",
                 "attn.c_proj.bias", "ln_2.weight", "ln_2.bias", "mlp.c_fc.weight", "mlp.c_fc.bias",
                 "mlp.c_proj.weight", "mlp.c_proj.bias"]
    for name in per_layer:
        for i in range(N_LAYER):
            t = sd[f"h.{i}.{name}"]
            order.append(t.t() if name.endswith("weight") and ".c_" in name else t)
    order += [sd["ln_f.weight"], sd["ln_f.bias"]]
    with open(path, "wb") as f:
        f.write(header.tobytes())
        for t in order:
            t = t.detach().contiguous()
            if version == 3:
                f.write(t.to(torch.float32).numpy().astype("<f4").tobytes())
            else:
                f.write(t.to(torch.bfloat16).view(torch.int16).numpy().astype("<i2").tobytes())


def write_tf(model, dir):
    """OpenAI's variable names and shapes (Conv1D weights [1, in, out]), saved by a TF1 Saver."""
    import tensorflow as tf

    dir.mkdir(parents=True)
    sd = {k.removeprefix("transformer."): v.numpy() for k, v in model.state_dict().items()}
    leaf = {"weight": "w", "bias": "b"}
    variables = {"model/wte": sd["wte.weight"], "model/wpe": sd["wpe.weight"]}
    for i in range(N_LAYER):
        for part in ["attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj"]:
            tf_part = part.replace(".", "/")
            variables[f"model/h{i}/{tf_part}/w"] = sd[f"h.{i}.{part}.weight"][None]
            variables[f"model/h{i}/{tf_part}/b"] = sd[f"h.{i}.{part}.bias"]
        for ln in ["ln_1", "ln_2"]:
            variables[f"model/h{i}/{ln}/g"] = sd[f"h.{i}.{ln}.weight"]
            variables[f"model/h{i}/{ln}/b"] = sd[f"h.{i}.{ln}.bias"]
    variables["model/ln_f/g"] = sd["ln_f.weight"]
    variables["model/ln_f/b"] = sd["ln_f.bias"]
    graph = tf.Graph()
    with graph.as_default():
        vs = [tf.compat.v1.Variable(v, name=k) for k, v in variables.items()]
        saver = tf.compat.v1.train.Saver(vs, save_relative_paths=True)
        with tf.compat.v1.Session() as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            saver.save(sess, str(dir / "model.ckpt"), write_meta_graph=False)
    hparams = {"n_vocab": VOCAB, "n_ctx": N_CTX, "n_embd": N_EMBD, "n_head": N_HEAD, "n_layer": N_LAYER}
    (dir / "hparams.json").write_text(json.dumps(hparams, indent=2) + "\n")
    return tf.__version__


def main():
    model = build_model(SEED)
    gen = np.random.default_rng(SEED)
    prompts = [gen.integers(0, VOCAB, n).tolist() for n in PROMPT_LENGTHS]

    if OUT.exists():
        shutil.rmtree(OUT)
    OUT.mkdir(parents=True)
    models = {"f32": model, "f16": rounded(model, torch.float16), "bf16": rounded(model, torch.bfloat16)}
    logits = {k: logits_of(m, prompts) for k, m in models.items()}
    greedy, margins = {}, {}
    for k, m in models.items():
        greedy[k], margins[k] = greedy_of(m, prompts)
        assert margins[k] > MIN_MARGIN, f"{k}: a greedy step is nearly a tie ({margins[k]}); change SEED"
        (OUT / f"logits_{k}.bin").write_bytes(logits[k].tobytes())

    write_hub(model, OUT / "hub", torch.float32)
    write_transformers(model, OUT / "transformers", torch.float32)
    write_hub(model, OUT / "f16", torch.float16)
    write_transformers(model, OUT / "bf16", torch.bfloat16)
    (OUT / "llmc").mkdir()
    write_llmc(model, OUT / "llmc" / "model.bin", 3)
    write_llmc(model, OUT / "llmc" / "model_bf16.bin", 5)
    tf_version = write_tf(model, OUT / "tf")

    golden = {
        "about": "tests/gpt2_golden.rs reads this; regenerate with scripts/gen_gpt2_golden.py",
        "config": {"vocab_size": VOCAB, "n_ctx": N_CTX, "n_embd": N_EMBD, "n_layer": N_LAYER, "n_head": N_HEAD},
        "prompts": prompts,
        "logits": {k: f"logits_{k}.bin" for k in models},
        "logits_tolerance": TOLERANCE,
        "greedy": greedy,
        "greedy_min_margin": margins,
        "max_abs_vs_f32": {k: float(np.abs(logits[k] - logits["f32"]).max()) for k in ("f16", "bf16")},
        "logit_range": [float(logits["f32"].min()), float(logits["f32"].max())],
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__,
                     "tensorflow": tf_version},
    }
    (OUT / "golden.json").write_text(json.dumps(golden, indent=1) + "\n")
    total = sum(f.stat().st_size for f in OUT.rglob("*") if f.is_file())
    print(f"wrote {OUT} ({total / 1e6:.2f} MB); margins {margins}; vs f32 {golden['max_abs_vs_f32']}")


if __name__ == "__main__":
    main()
