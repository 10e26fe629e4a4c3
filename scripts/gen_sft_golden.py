#!/usr/bin/env python3
"""Regenerates tests/golden/sft/: instruction records rendered, tokenized and
masked as `gpt train --task sft` / `gpt eval --task sft` do it, with
`transformers`' tokenizers, and the mean loss over the response tokens only
that `transformers` computes for them (tests/sft_golden.rs holds `gpt` to it).

- gpt2/: a tiny GPT-2 (vocab 400, n_ctx 256, 32 wide, 2 layers, 4 heads,
  weights drawn by gen_gpt2_golden.draw_weights) with a byte-level BPE of 400
  ids trained here on data/instructions/train.json (`<|endoftext|>` its id
  0), as vocab.json + merges.txt; it has no chat template, so records take
  the Alpaca prompt format of *LLMs from Scratch* ch. 7: the prompt encoded
  alone, then the output, then `<|endoftext|>`, the output and its end scored.
- llama: the tiny Llama of tests/golden/llama/llama with the 64-id ChatML
  tokenizer of tests/golden/chat/tiny/ (its chat template): each assistant
  turn is scored up to the last stop id (`<|im_end|>`) of its rendered reply;
  the text between replies (system and user turns, the newline after
  `<|im_end|>`, the generation prompt) is context. Each piece is the
  difference between `apply_chat_template` of the messages up to a reply
  with the generation prompt and without it, tokenized alone.

golden.json: per model, its records file, each record's ids and scored
flags (one per id; the first id is never a target), and the mean loss
(float64 model) over the scored targets of all records and their count.

    ~/.cache/gpt-venv/bin/python scripts/gen_sft_golden.py
"""
import json
import shutil
import tempfile
from pathlib import Path

import torch
import torch.nn.functional as F
from tokenizers import ByteLevelBPETokenizer
from transformers import AutoTokenizer, GPT2Config, GPT2LMHeadModel, GPT2TokenizerFast, LlamaForCausalLM

from gen_gpt2_golden import draw_weights

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = ROOT / "tests" / "golden"
OUT = GOLDEN / "sft"
EOT = "<|endoftext|>"
SEED = 7

GPT2_RECORDS = [
    {"instruction": "Provide a synonym for 'strong'.", "input": "", "output": "A synonym for 'strong' is 'powerful'."},
    {"instruction": "Convert the following sentence into passive voice.", "input": "The chef cooked a delicious meal.",
     "output": "A delicious meal was cooked by the chef."},
    {"instruction": "Translate to French: \"thank you\"", "output": "Merci — « merci beaucoup » too."},
    {"instruction": "List three colours.", "input": None, "output": "Red,\tgreen\nand blue 🎨"},
]

LLAMA_RECORDS = [
    {"instruction": "hi", "input": "", "output": "hello!"},
    {"instruction": "add", "input": "2 and 3", "output": "5."},
    {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"},
                  {"role": "user", "content": "why"}, {"role": "assistant", "content": "no"}]},
    {"messages": [{"role": "system", "content": "be"}, {"role": "user", "content": "count"},
                  {"role": "assistant", "content": "1 2"}, {"role": "user", "content": "more"}]},
]


def alpaca_prompt(instruction, inp):
    text = ("Below is an instruction that describes a task. Write a response that appropriately completes "
            f"the request.\n\n### Instruction:\n{instruction}")
    if inp:
        text += f"\n\n### Input:\n{inp}"
    return text + "\n\n### Response:\n"


def alpaca(tok, record, eos):
    prompt = tok(alpaca_prompt(record["instruction"], record.get("input") or ""))["input_ids"]
    response = tok(record["output"])["input_ids"] + [eos]
    return prompt + response, [False] * len(prompt) + [True] * len(response)


def chat(tok, record, stop):
    if "messages" in record:
        messages = record["messages"]
    else:
        user = record["instruction"] + (f"\n\n{record['input']}" if record.get("input") else "")
        messages = [{"role": "user", "content": user}, {"role": "assistant", "content": record["output"]}]
    last = max(i for i, m in enumerate(messages) if m["role"] == "assistant")
    messages = messages[:last + 1]
    ids, scored, done = [], [], ""
    encode = lambda text: tok(text, add_special_tokens=False)["input_ids"]
    for i, m in enumerate(messages):
        if m["role"] != "assistant":
            continue
        prompt = tok.apply_chat_template(messages[:i], add_generation_prompt=True, tokenize=False)
        full = tok.apply_chat_template(messages[:i + 1], tokenize=False)
        assert prompt.startswith(done) and full.startswith(prompt)
        context = encode(prompt[len(done):])
        reply = encode(full[len(prompt):])
        end = max(j for j, t in enumerate(reply) if t in stop)
        ids += context + reply
        scored += [False] * len(context) + [True] * (end + 1) + [False] * (len(reply) - end - 1)
        done = full
    return ids, scored


def response_loss(model, examples):
    """Summed -log p over the scored targets of every example, and their count."""
    total, count = 0.0, 0
    with torch.no_grad():
        for ids, scored in examples:
            logits = model(torch.tensor([ids])).logits[0, :-1].double()
            mask = torch.tensor(scored[1:], dtype=torch.bool)
            loss = F.cross_entropy(logits[mask], torch.tensor(ids[1:])[mask], reduction="sum")
            total += loss.item()
            count += int(mask.sum())
    return total / count, count


def gpt2():
    out = OUT / "gpt2"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    texts = [r["instruction"] + "\n" + r["input"] + "\n" + r["output"]
             for r in json.loads((ROOT / "data" / "instructions" / "train.json").read_text())]
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(texts, vocab_size=400, min_frequency=2, special_tokens=[EOT], show_progress=False)
    bpe.save_model(str(out))
    tok = GPT2TokenizerFast.from_pretrained(out)
    eos = tok.convert_tokens_to_ids(EOT)
    cfg = GPT2Config(vocab_size=len(tok), n_positions=256, n_embd=32, n_layer=2, n_head=4,
                     activation_function="gelu_new", resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
                     bos_token_id=eos, eos_token_id=eos)
    torch.manual_seed(SEED)
    model = GPT2LMHeadModel(cfg)
    draw_weights(model)
    model.float().save_pretrained(out)
    examples = [alpaca(tok, r, eos) for r in GPT2_RECORDS]
    (out.parent / "records_gpt2.json").write_text(json.dumps(GPT2_RECORDS, indent=1, ensure_ascii=False) + "\n")
    loss, tokens = response_loss(model.double().eval(), examples)
    return {"records": "records_gpt2.json", "examples": [{"ids": i, "scored": s} for i, s in examples],
            "loss": loss, "tokens": tokens}


def llama():
    tiny = GOLDEN / "chat" / "tiny"
    tok = AutoTokenizer.from_pretrained(tiny)
    config = json.loads((tiny / "config.json").read_text())
    stop = {config["eos_token_id"], tok.convert_tokens_to_ids("<|im_end|>")}
    model = LlamaForCausalLM.from_pretrained(GOLDEN / "llama" / "llama", torch_dtype=torch.float64).eval()
    examples = [chat(tok, r, stop) for r in LLAMA_RECORDS]
    assert all(len(ids) <= 65 for ids, _ in examples), ("the tiny Llama's context is 64", [len(i) for i, _ in examples])
    lines = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in LLAMA_RECORDS)
    (OUT / "records_llama.jsonl").write_text(lines)
    loss, tokens = response_loss(model, examples)
    return {"records": "records_llama.jsonl", "examples": [{"ids": i, "scored": s} for i, s in examples],
            "loss": loss, "tokens": tokens}


def main():
    torch.set_num_threads(1)
    OUT.mkdir(parents=True, exist_ok=True)
    golden = {"gpt2": gpt2(), "llama": llama()}
    (OUT / "golden.json").write_text(json.dumps(golden) + "\n")
    for name, g in golden.items():
        print(f"{name}: loss {g['loss']:.6f} over {g['tokens']} response tokens")


if __name__ == "__main__":
    main()
