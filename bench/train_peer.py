"""Peer for bench/train_gpt2.rs: one PyTorch CPU training step of GPT-2 124M.

usage: train_peer.py B T STEPS THREADS
       train_peer.py sgemm N THREADS

Hugging Face transformers' GPT2LMHeadModel (12 layers, 768 wide, 12 heads,
vocab 50257, n_ctx 1024, tied wte) with attn_implementation="sdpa" (causal
torch.nn.functional.scaled_dot_product_attention, which does not keep the
attention probabilities), random init, f32, dropout 0, AdamW,
gradient clipping at 1.0: the same step as ours. One warm-up step, then STEPS
timed steps. Prints one JSON object: each step's seconds and the peak RSS.
With `sgemm`, prints torch.mm's (MKL) best GFLOP/s at N×N×N instead.
"""
import json, resource, sys, time

import torch

if sys.argv[1] == "sgemm":
    n, threads = int(sys.argv[2]), int(sys.argv[3])
    torch.set_num_threads(threads)
    a, b = torch.rand(n, n), torch.rand(n, n)
    a @ b
    best, t0, reps = 1e9, time.perf_counter(), 0
    while reps < 5 or time.perf_counter() - t0 < 1.0:
        t = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t)
        reps += 1
    print(json.dumps({"gflops": 2 * n**3 / best / 1e9}))
    sys.exit(0)

from peer_steps import time_steps
from transformers import GPT2Config, GPT2LMHeadModel

B, T, steps, threads = map(int, sys.argv[1:5])
torch.set_num_threads(threads)
torch.manual_seed(0)
config = GPT2Config(n_layer=12, n_embd=768, n_head=12, vocab_size=50257, n_positions=1024,
                    resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, tie_word_embeddings=True,
                    attn_implementation="sdpa")
model = GPT2LMHeadModel(config).train()
decay = [p for n, p in model.named_parameters() if p.dim() == 2 and "wte" not in n and "wpe" not in n]
other = [p for n, p in model.named_parameters() if not (p.dim() == 2 and "wte" not in n and "wpe" not in n)]
opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": other, "weight_decay": 0.0}],
                        lr=3e-4, betas=(0.9, 0.95), eps=1e-8)
gen = torch.Generator().manual_seed(0)
x = torch.randint(0, 50257, (B, T), generator=gen)
y = torch.randint(0, 50257, (B, T), generator=gen)

times = time_steps(model, list(model.parameters()), opt, x, y, steps)
params = sum(p.numel() for p in model.parameters())
print(json.dumps({"step_s": times, "params": params,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
