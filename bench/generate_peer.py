"""Peer for bench/generate.rs: Hugging Face transformers on CPU, same model files.

usage: generate_peer.py MODEL_DIR THREADS
Prints one JSON object: prefill (512-token prompt, last logit) and decode
(128 new tokens after a 16-token prompt, greedy, use_cache=True) timings, and
how far bf16 rounding of the weight matrices alone moves the logits (weights
rounded to bf16, arithmetic in f32), on the same 64 tokens bench/generate.rs uses.
"""
import json, sys, time

import torch
from transformers import GPT2LMHeadModel

model_dir, threads = sys.argv[1], int(sys.argv[2])
torch.set_num_threads(threads)
model = GPT2LMHeadModel.from_pretrained(model_dir, torch_dtype=torch.float32).eval()
gen = torch.Generator().manual_seed(0)
vocab = model.config.vocab_size


def best(f, reps):
    f()  # warm-up
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        f()
        times.append(time.perf_counter() - t)
    return min(times)


prompt512 = torch.randint(0, vocab, (1, 512), generator=gen)
prompt16 = torch.randint(0, vocab, (1, 16), generator=gen)
with torch.inference_mode():
    prefill = best(lambda: model(prompt512, use_cache=True).logits[:, -1, :], 3)
    first16 = best(lambda: model(prompt16, use_cache=True).logits[:, -1, :], 3)

    def decode():
        return model.generate(prompt16, max_new_tokens=128, min_new_tokens=128, do_sample=False,
                              use_cache=True, pad_token_id=0)

    total = best(decode, 2)

    tokens = torch.tensor([[(i * 7919) % vocab for i in range(64)]])
    exact = model(tokens).logits
    for name, p in model.named_parameters():
        if p.dim() == 2 and "wpe" not in name:
            p.copy_(p.to(torch.bfloat16).to(torch.float32))
    bf16_diff = (model(tokens).logits - exact).abs().max().item()
print(json.dumps({
    "bf16_weights_max_logit_diff": bf16_diff,
    "prefill_512_s": prefill,
    "prefill_tokens_per_s": 512 / prefill,
    "ttft_16_s": first16,
    "decode_s_per_token": (total - first16) / 128,
}))
