#!/usr/bin/env python3
"""Regenerates tests/golden/choice/: multiple-choice records and every
ending's log-likelihood under two tiny models, scored by `transformers` as
llm.c's dev/data/hellaswag.py scores HellaSwag (read by tests/choice_golden.rs).

Each ending is encoded with a leading space apart from its context; the
model reads context + ending and the ending's tokens are scored: their
log-probabilities summed (`acc`) and averaged per token (`acc_norm`), the
prediction being the ending with the largest. Where context + ending is
longer than the model's context plus the one token that is only a target,
the ending is kept with the context's last tokens (one record here is).

No new weights: the models are existing tiny fixtures.

    gpt2   tests/golden/gguf_models/gpt2.gguf: a tiny GPT-2 (context 64) with a
           300-id byte-level vocabulary (GPT-2's bytes and first merges), read
           by transformers' GGUF loader, tokenizer included
    llama  tests/golden/llama/llama (context 64) with the 64-id byte-level
           tokenizer of tests/golden/chat/tiny/ (the test copies both into one
           directory, as tests/cli_chat.rs does)

records.jsonl is written here (our field names, and HellaSwag's on two
lines); golden.json holds, per model, each record's token ids (context,
endings), each ending's summed and mean log-likelihood and whether its
context was cut, and the two predictions. Log-probabilities are taken in float64 from float32 logits.

    ~/.cache/gpt-venv/bin/python scripts/gen_choice_golden.py
"""
import json
import shutil
import tempfile
from pathlib import Path

import torch
import transformers
from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaForCausalLM, PreTrainedTokenizerFast

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = ROOT / "tests" / "golden"
OUT = GOLDEN / "choice"
GPT2_GGUF = GOLDEN / "gguf_models" / "gpt2.gguf"
LLAMA = GOLDEN / "llama" / "llama"
TINY_TOKENIZER = GOLDEN / "chat" / "tiny" / "tokenizer.json"
N_CTX = 64
# Predictions must not hang on a near tie.
MIN_MARGIN = 1e-3

# Only characters the tiny Llama's tokenizer has (lower case, digits, " .,!?'", A to R).
LONG = ("the river ran past the old mill, under the bridge and into the town, where children played "
        "by the water every morning and every evening, and the baker")
RECORDS = [
    {"context": "the cat sat on the", "endings": ["mat.", "moon, singing loudly.", "dog"], "label": 0},
    {"context": "she opened the door and", "endings": ["walked in.", "the the the", "flew away", "smiled"],
     "label": 0},
    {"ctx": "a man is standing on a roof. he", "endings": ["is fixing the roof.", "eats soup.", "sleeps"],
     "label": "0"},
    {"ctx_a": "two dogs run in a park.", "ctx_b": "they", "endings": ["chase a ball.", "read a book."], "label": 1},
    {"context": LONG, "endings": ["sold fresh bread.", "was a fish.", "went home"], "label": 0},
    {"context": "1, 2, 3, 4,", "endings": ["5", "9, 2", "cat"], "label": 2},
]


def context_of(r):
    if "context" in r:
        return r["context"]
    if "ctx" in r:
        return r["ctx"]
    return f"{r['ctx_a']} {r['ctx_b']}" if r.get("ctx_b") else r["ctx_a"]


def score(model, tok, records):
    out = []
    for r in records:
        context = tok.encode(context_of(r), add_special_tokens=False)
        endings = [tok.encode(" " + e, add_special_tokens=False) for e in r["endings"]]
        sums, means, cut = [], [], []
        for end in endings:
            keep = min(len(context), N_CTX + 1 - len(end))
            cut.append(keep < len(context))
            seq = context[len(context) - keep:] + end
            with torch.no_grad():
                logits = model(torch.tensor([seq[:-1]])).logits[0].double()
            logp = torch.log_softmax(logits, dim=-1)
            first = len(seq) - len(end) - 1  # the input that predicts the ending's first token
            s = sum(logp[i, seq[i + 1]].item() for i in range(first, len(seq) - 1))
            sums.append(s)
            means.append(s / len(end))
        for x in (sums, means):
            top = sorted(x, reverse=True)
            assert top[0] - top[1] > MIN_MARGIN, f"near tie in {r}: {x}"
        out.append({"context": context, "endings": endings, "logprobs": sums, "logprobs_norm": means,
                    "pred": max(range(len(sums)), key=sums.__getitem__),
                    "pred_norm": max(range(len(means)), key=means.__getitem__), "cut": cut})
    return out


def main():
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        shutil.copy(GPT2_GGUF, Path(tmp) / GPT2_GGUF.name)
        # transformers maps gpt2.context_length to n_ctx, not n_positions (the size of wpe): say it.
        gpt2 = AutoModelForCausalLM.from_pretrained(tmp, gguf_file=GPT2_GGUF.name, dtype=torch.float32,
                                                    n_positions=N_CTX).eval()
        gpt2_tok = AutoTokenizer.from_pretrained(tmp, gguf_file=GPT2_GGUF.name)
    llama = LlamaForCausalLM.from_pretrained(str(LLAMA), dtype=torch.float32).eval()
    llama_tok = PreTrainedTokenizerFast(tokenizer_file=str(TINY_TOKENIZER))
    for m in (gpt2, llama):
        m.config._attn_implementation = "eager"
        assert m.config.max_position_embeddings == N_CTX
    models = {
        "gpt2": {"model": "tests/golden/gguf_models/gpt2.gguf", "records": score(gpt2, gpt2_tok, RECORDS)},
        "llama": {"model": "tests/golden/llama/llama + tests/golden/chat/tiny",
                  "records": score(llama, llama_tok, RECORDS)},
    }
    for name, m in models.items():
        assert any(any(r["cut"]) for r in m["records"]), f"{name}: no record is longer than the context"
        n = len(RECORDS)
        acc = sum(r["pred"] == int(x["label"]) for r, x in zip(m["records"], RECORDS)) / n
        acc_norm = sum(r["pred_norm"] == int(x["label"]) for r, x in zip(m["records"], RECORDS)) / n
        m.update(accuracy=acc, accuracy_norm=acc_norm)
        print(f"{name}: accuracy {acc:.3f}, accuracy_norm {acc_norm:.3f}")
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "records.jsonl").write_text("".join(json.dumps(r) + "\n" for r in RECORDS))
    golden = {
        "about": "tests/choice_golden.rs reads this; regenerate with scripts/gen_choice_golden.py",
        "n_ctx": N_CTX,
        "models": models,
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__},
    }
    (OUT / "golden.json").write_text(json.dumps(golden, indent=1) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
