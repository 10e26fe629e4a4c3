"""Peer for bench/finetune.rs: PyTorch + peft fine-tuning steps of SmolLM2-135M's shape.

usage: finetune_peer.py full|lora|full-bf16|lora-bf16 B T STEPS THREADS

Hugging Face transformers' LlamaForCausalLM with SmolLM2-135M's configuration
(30 layers, 576 wide, 9 heads, 3 key/value heads, SwiGLU 1536, vocab 49152,
tied embeddings, rope theta 100000), attn_implementation="sdpa", random
init, f32, dropout 0. `full` trains every weight; `lora` wraps it with
peft's LoRA r=8 at peft's defaults for a Llama (alpha 8, q_proj and v_proj,
dropout 0), every base weight frozen. AdamW (betas 0.9/0.95, eps 1e-8, weight
decay 0.1 on matrices) on the trainable parameters, gradient clipping at 1.0:
the same step as ours. The -bf16 modes run forward and loss under
torch.autocast("cpu", dtype=torch.bfloat16) (mixed precision; weights,
gradients and optimizer state stay f32). One warm-up step, then STEPS timed steps. Prints one
JSON object: each step's seconds, the trainable parameters and the peak RSS.
"""
import json, resource, sys

import torch
from peer_steps import time_steps
from transformers import LlamaConfig, LlamaForCausalLM

mode, _, precision = sys.argv[1].partition("-")
B, T, steps, threads = map(int, sys.argv[2:6])
torch.set_num_threads(threads)
torch.manual_seed(0)
config = LlamaConfig(vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
                     num_attention_heads=9, num_key_value_heads=3, max_position_embeddings=2048,
                     rms_norm_eps=1e-5, rope_theta=100000.0, tie_word_embeddings=True,
                     attention_dropout=0.0, attn_implementation="sdpa")
model = LlamaForCausalLM(config)
if mode == "lora":
    from peft import LoraConfig, get_peft_model
    model = get_peft_model(model, LoraConfig(r=8, lora_alpha=8, lora_dropout=0.0,
                                             target_modules=["q_proj", "v_proj"]))
model.train()
trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
decay = [p for n, p in trainable if p.dim() == 2 and "embed_tokens" not in n]
other = [p for n, p in trainable if not (p.dim() == 2 and "embed_tokens" not in n)]
opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": other, "weight_decay": 0.0}],
                        lr=3e-4, betas=(0.9, 0.95), eps=1e-8)
gen = torch.Generator().manual_seed(0)
x = torch.randint(0, 49152, (B, T), generator=gen)
y = torch.randint(0, 49152, (B, T), generator=gen)

times = time_steps(model, [p for _, p in trainable], opt, x, y, steps, bf16=precision == "bf16")
print(json.dumps({"step_s": times, "trainable": sum(p.numel() for _, p in trainable),
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
