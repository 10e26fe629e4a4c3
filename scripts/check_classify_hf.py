#!/usr/bin/env python3
"""Checks that transformers loads a classifier `gpt train --task classify`
wrote with the same logits: AutoModelForSequenceClassification.from_pretrained
(DIR) on each text's ids (`gpt tokenize --model DIR`), against `gpt classify
--model DIR --json`'s probabilities, one text at a time and as one
right-padded batch (each row read at its last real token). With --adapter
RUN (a LoRA run of `gpt train --task classify`), DIR is its base model and
the classifier is peft.PeftModel.from_pretrained(base classifier, RUN), its
head `score` from the adapter (peft's modules_to_save), against `gpt classify
--model DIR --adapter RUN`. Without --adapter, the tokenizer files in DIR
(tokenizer.json, or vocab.json + merges.txt) must give, through
transformers.AutoTokenizer, the ids of `gpt tokenize --model DIR`.

    ~/.cache/gpt-venv/bin/python scripts/check_classify_hf.py DIR "text" "another text" ...
    ~/.cache/gpt-venv/bin/python scripts/check_classify_hf.py --adapter RUN BASE "text" ...
"""
import json
import subprocess
import sys
from pathlib import Path

import torch
from transformers import AutoModelForSequenceClassification

TARGET = Path(__file__).resolve().parent.parent / "target"


def gpt(*args, stdin=None):
    # The newer of the release and debug builds.
    exe = max((p for p in (TARGET / "release" / "gpt", TARGET / "debug" / "gpt") if p.exists()),
              key=lambda p: p.stat().st_mtime)
    return subprocess.run([str(exe), *args], input=stdin, capture_output=True, text=True, check=True).stdout


def main():
    args = sys.argv[1:]
    adapter = None
    if args[0] == "--adapter":
        adapter, args = args[1], args[2:]
    model_dir, texts = args[0], args[1:]
    if adapter:
        from peft import PeftModel

        labels = json.loads((Path(adapter) / "run.json").read_text())["settings"]["classify"]["labels"]
        base = AutoModelForSequenceClassification.from_pretrained(
            model_dir, num_labels=len(labels), id2label=dict(enumerate(labels)))
        base.config.pad_token_id = base.config.eos_token_id
        model = PeftModel.from_pretrained(base, adapter).eval()
        extra = ["--adapter", adapter]
    else:
        model = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()
        extra = []
    labels = [model.config.id2label[i] for i in range(model.config.num_labels)]
    ours = json.loads(gpt("classify", "--model", model_dir, *extra, "--json", *texts))["predictions"]
    ids = [json.loads(gpt("tokenize", "--model", model_dir, "-", stdin=t)) for t in texts]
    if not adapter and any((Path(model_dir) / f).exists() for f in ("tokenizer.json", "vocab.json")):
        from transformers import AutoTokenizer

        # The directory's own tokenizer files, as transformers reads them, give our ids.
        tok = AutoTokenizer.from_pretrained(model_dir)
        theirs = [tok(t, add_special_tokens=True)["input_ids"] for t in texts]
        assert theirs == ids, f"AutoTokenizer's ids {theirs} are not gpt tokenize's {ids}"
        print(f"AutoTokenizer ({type(tok).__name__}) gives gpt tokenize's ids for every text")
    pad = model.config.pad_token_id
    longest = max(map(len, ids))
    batch = torch.tensor([x + [pad] * (longest - len(x)) for x in ids])
    with torch.no_grad():
        alone = [model(torch.tensor([x])).logits[0].softmax(-1) for x in ids]
        padded = model(batch).logits.softmax(-1)
    worst = 0.0
    for i, p in enumerate(ours):
        want = torch.tensor([p["probabilities"][l] for l in labels])
        worst = max(worst, (alone[i] - want).abs().max().item(), (padded[i] - want).abs().max().item())
    print(f"{len(texts)} texts, labels {labels}: max |p(transformers) - p(gpt)| = {worst:.2e}")
    assert worst <= 1e-4, worst


if __name__ == "__main__":
    main()
