#!/usr/bin/env bash
# Data parallelism on one machine: `gpt train` at GPT-2 124M shape (12 layers, 768 wide,
# GPT-2's vocabulary, random init), a global batch of 4 rows of 64 tokens, as
#   - 1 rank x 2 threads (one process, --batch-size 4),
#   - 2 ranks x 1 thread (mpirun -np 2, --batch-size 2 each), and the same with --zero 1.
# Prints per run: ms/step and tokens/s (median of the steps after the first), the
# time in the collectives per step (`comm_ms` of log.jsonl: the all-reduce, with --zero 1 the
# all-gather too, and any wait for the slower rank) with the GB/s it makes of the gradients'
# bytes, and each rank's peak RSS. Needs Open MPI (Debian: libopenmpi-dev openmpi-bin libclang-dev) and GNU time.
# GPT_BENCH_STEPS (default 5) sets the steps of each run.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --features mpi --quiet
STEPS=${GPT_BENCH_STEPS:-5}
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
head -n 3000 data/names.txt | paste -sd ' ' > "$TMP/text.txt"
GPT="$PWD/target/release/gpt"
ARGS=(train --data "$TMP/text.txt" --tokenizer gpt2 --n-layer 12 --n-embd 768 --n-head 12 --n-ctx 64
      --steps "$STEPS" --eval-every 0 --val-fraction 0.02 --num-samples 0 --quiet --overwrite)
MPIRUN=(mpirun --allow-run-as-root --oversubscribe --bind-to none)
export OMPI_MCA_btl_vader_single_copy_mechanism=none

# name, then the command line (its log goes to $TMP/name)
run() {
    local name=$1
    shift
    rm -f "$TMP/rss"
    "$@" --out "$TMP/$name" 2> "$TMP/$name.err" || { cat "$TMP/$name.err"; exit 1; }
    python3 - "$name" "$TMP/$name/log.jsonl" "$TMP/rss" <<'PY'
import json, re, statistics, sys
name, log, rss_file = sys.argv[1:]
lines = [json.loads(l) for l in open(log)][1:]
ms = statistics.median(l["ms"] for l in lines)
tok = statistics.median(l["tokens_per_s"] for l in lines)
rss = [int(m) / 1024 for m in re.findall(r"^peak_rss_kb (\d+)$", open(rss_file).read(), re.M)]
out = f"{name:<22} {ms:8.0f} ms/step {tok:7.0f} tok/s  peak RSS per rank {', '.join(f'{r:.0f}' for r in rss)} MB"
if "comm_ms" in lines[0]:
    comm = statistics.median(l["comm_ms"] for l in lines)
    params = 123_702_528  # GPT-2 124M with wpe cut to n_ctx 64: the all-reduce sums every gradient
    out += f"  all-reduce {comm:.0f} ms/step ({params * 4 / 1e6:.0f} MB, {params * 4 / comm / 1e6:.2f} GB/s)"
print(out)
PY
}
# Each process appends its peak RSS to $TMP/rss.
TIME=(/usr/bin/time -a -o "$TMP/rss" -f "peak_rss_kb %M")
run "1 rank x 2 threads" "${TIME[@]}" "$GPT" --threads 2 "${ARGS[@]}" --batch-size 4
run "2 ranks x 1 thread" "${MPIRUN[@]}" -np 2 "${TIME[@]}" "$GPT" --threads 1 "${ARGS[@]}" --batch-size 2
run "2 ranks x 1, --zero 1" "${MPIRUN[@]}" -np 2 "${TIME[@]}" "$GPT" --threads 1 "${ARGS[@]}" --batch-size 2 --zero 1
