#!/usr/bin/env bash
# Tokenizer throughput, gpt (Rust) beside tiktoken in the same run:
# tinyshakespeare and a ~53 MB file of it repeated 48 times (made in /tmp),
# one thread and all cores. Needs a Python with tiktoken: $GPT_BENCH_PYTHON,
# else ~/.cache/gpt-venv/bin/python, else python3.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${GPT_BENCH_PYTHON:-$HOME/.cache/gpt-venv/bin/python}
[ -x "$PYTHON" ] || PYTHON=python3
small=data/tinyshakespeare.txt
big=${TMPDIR:-/tmp}/gpt-bench-tinyshakespeare-x48.txt
if [ ! -s "$big" ]; then
    for _ in $(seq 48); do cat "$small"; done >"$big"
fi
ours=$(cargo bench --quiet --bench tokenizer -- "$small" "$big")
echo "$ours"
peer=$("$PYTHON" bench/tokenizer_tiktoken.py "$small" "$big")
echo "$peer"
# Ratios, file by file: "... | 1 thread X MB/s | N threads Y MB/s".
paste -d '\n' <(grep ' MB/s' <<<"$ours") <(grep ' MB/s' <<<"$peer") | awk -F'|' '
    { split($1, head, ":"); split($2, one, " "); split($3, all, " ") }
    NR % 2 == 1 { name = head[1]; sub(/^gpt \(Rust\) +/, "", name); o1 = one[3]; oN = all[3]; threads = all[1] }
    NR % 2 == 0 { printf "gpt / tiktoken  %s: 1 thread %.1fx | %s threads %.1fx (%.1fx tiktoken single-threaded)\n",
                         name, o1 / one[3], threads, oN / all[3], oN / one[3] }'
