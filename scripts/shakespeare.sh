#!/usr/bin/env bash
# Train a small GPT on tinyshakespeare with GPT-2's tokenizer, generate from
# it, then fine-tune it on a new text (names) and compare the loss on held-out
# names before and after. Prints the figures of issue 5's Shakespeare item.
#
# usage: scripts/shakespeare.sh [OUT_DIR]      (STEPS=N to change the length)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-runs/shakespeare}
steps=${STEPS:-1500}
cargo build --release --quiet
gpt=target/release/gpt

echo "== train on data/tinyshakespeare.txt ($steps steps)"
/usr/bin/time -f "train: %e s wall, %M KB peak RSS" "$gpt" train --tokenizer gpt2 \
    --data data/tinyshakespeare.txt --out "$out" --steps "$steps" \
    --n-layer 4 --n-embd 128 --n-head 4 --n-ctx 128 --batch-size 16 \
    --lr 2e-3 --warmup 100 --dropout 0.1 --eval-every 250 --save-every 500 --num-samples 1

echo "== generate"
"$gpt" generate --model "$out" --temperature 0.8 --top-k 40 --seed 1 -n 120 "ROMEO:"

echo "== fine-tune on a new text: names (last 10% held out)"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
n=$(wc -l < data/names.txt)
head -n $((n * 9 / 10)) data/names.txt > "$tmp/names_train.txt"
tail -n +$((n * 9 / 10 + 1)) data/names.txt > "$tmp/names_heldout.txt"
before=$("$gpt" eval --model "$out" --data "$tmp/names_heldout.txt" --json)
"$gpt" train --init "$out" --data "$tmp/names_train.txt" --out "$out-names" \
    --steps 300 --batch-size 16 --n-ctx 128 --lr 1e-3 --warmup 30 --eval-every 100 --num-samples 3
after=$("$gpt" eval --model "$out-names" --data "$tmp/names_heldout.txt" --json)
echo "held-out names, before fine-tuning: $before"
echo "held-out names, after fine-tuning:  $after"
