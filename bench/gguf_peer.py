"""Peer for bench/gguf.rs: llama.cpp (llama-cpp-python from PyPI, built from source) on the same GGUF file.

usage: gguf_peer.py MODEL.gguf THREADS PROMPT512_IDS PROMPT16_IDS NEW_TOKENS
(ids as comma-separated lists: both sides run the very same tokens).
Prints one JSON object: prefill seconds for the 512-token prompt (best of 3),
decode seconds per token (greedy, batch 1, best of 2), the process's peak RSS
and its RSS before the model was loaded (the Python interpreter's share).
"""
import json, resource, sys, time

import llama_cpp
import numpy as np


def rss_mb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS"):
                return int(line.split()[1]) / 1024


path, threads = sys.argv[1], int(sys.argv[2])
p512 = [int(x) for x in sys.argv[3].split(",")]
p16 = [int(x) for x in sys.argv[4].split(",")]
new_tokens = int(sys.argv[5])
before = rss_mb()
t = time.perf_counter()
m = llama_cpp.Llama(model_path=path, n_ctx=1024, n_batch=512, n_threads=threads, n_threads_batch=threads,
                    logits_all=False, verbose=False)
load_s = time.perf_counter() - t


def prefill():
    m.reset()
    m._ctx.kv_cache_clear() if hasattr(m._ctx, "kv_cache_clear") else None
    t = time.perf_counter()
    m.eval(p512)
    return time.perf_counter() - t


def decode():
    m.reset()
    m._ctx.kv_cache_clear() if hasattr(m._ctx, "kv_cache_clear") else None
    m.eval(p16)
    tok = int(np.argmax(m.scores[m.n_tokens - 1]))
    t = time.perf_counter()
    for _ in range(new_tokens - 1):
        m.eval([tok])
        tok = int(np.argmax(m.scores[m.n_tokens - 1]))
    return (time.perf_counter() - t) / (new_tokens - 1)


prefill()  # warm-up
print(json.dumps({
    "load_s": load_s,
    "prefill_s": min(prefill() for _ in range(3)),
    "decode_s_per_token": min(decode() for _ in range(2)),
    "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    "python_rss_mb": before,
    "version": llama_cpp.__version__,
}))
