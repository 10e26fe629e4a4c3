#!/usr/bin/env python3
"""tiktoken's throughput on the same files as bench/tokenizer.rs (the peer).

GPT-2 encoding built from data/gpt2 (as scripts/gen_bpe_golden.py does),
encode_ordinary on one thread, encode_ordinary_batch on all cores over chunks
cut at line ends; best of several runs, MB/s = 10^6 bytes per second.
"""
import itertools
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
from gen_bpe_golden import gpt2_encoding  # noqa: E402


def best_of(f, budget=3.0):
    start, best, runs = time.perf_counter(), float("inf"), 0
    while True:
        t = time.perf_counter()
        out = f()
        best = min(best, time.perf_counter() - t)
        runs += 1
        if runs >= 3 and time.perf_counter() - start >= budget:
            return best, out


def line_chunks(text, n):
    """About n chunks of text, cut before a newline that follows a non-space
    (a cut that leaves the pre-tokenizer pieces, hence the ids, unchanged)."""
    size, chunks, start = max(1, len(text) // n), [], 0
    while start < len(text):
        end = text.find("\n", start + size)
        while end > 0 and text[end - 1].isspace():
            end = text.find("\n", end + 1)
        end = len(text) if end < 0 else end
        chunks.append(text[start:end])
        start = end
    return chunks


def main():
    enc = gpt2_encoding()
    threads = os.cpu_count()
    for path in sys.argv[1:]:
        text = Path(path).read_bytes().decode("utf-8")
        mb = len(text.encode("utf-8")) / 1e6
        serial, ids = best_of(lambda: enc.encode_ordinary(text))
        chunks = line_chunks(text, threads * 8)
        parallel, batch = best_of(lambda: enc.encode_ordinary_batch(chunks, num_threads=threads))
        assert list(itertools.chain.from_iterable(batch)) == ids
        print(f"tiktoken     {path}: {mb:.1f} MB, {len(ids)} tokens | 1 thread {mb / serial:.1f} MB/s"
              f" | {threads} threads {mb / parallel:.1f} MB/s")


if __name__ == "__main__":
    main()
