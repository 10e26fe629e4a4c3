#!/usr/bin/env bash
# Tokenizer throughput, gpt (Rust) beside tiktoken in the same run:
# tinyshakespeare and a ~53 MB file of it repeated 48 times (made in /tmp),
# one thread and all cores. Needs a Python with tiktoken ($PYTHON, default
# ~/.cache/gpt-venv/bin/python, else python3).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-$HOME/.cache/gpt-venv/bin/python}
[ -x "$PYTHON" ] || PYTHON=python3
small=data/tinyshakespeare.txt
big=${TMPDIR:-/tmp}/gpt-bench-tinyshakespeare-x48.txt
if [ ! -s "$big" ]; then
    for _ in $(seq 48); do cat "$small"; done >"$big"
fi
cargo bench --quiet --bench tokenizer -- "$small" "$big"
"$PYTHON" bench/tokenizer_tiktoken.py "$small" "$big"
