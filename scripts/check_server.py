#!/usr/bin/env python3
"""Checks `gpt serve` with the official `openai` Python client: completions,
chat, streaming (the streamed text equals the whole text of the same seeded
request), n > 1, stop strings, log-probabilities, and errors surfacing as the
client's typed exceptions (BadRequestError, AuthenticationError,
NotFoundError, RateLimitError).

    ~/.cache/gpt-venv/bin/pip install openai
    cargo build --release
    ~/.cache/gpt-venv/bin/python scripts/check_server.py MODEL [--gpt target/debug/gpt]

MODEL is anything `gpt serve --model` takes; a model without a chat template
must refuse chat with a 400 that says so.
"""
import argparse
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import openai

ROOT = Path(__file__).resolve().parent.parent
KEY = "check-server-key"


def start(gpt, model):
    """`gpt serve` on a free port: two slots and four places in the queue, so sixteen choices are refused."""
    proc = subprocess.Popen(
        [gpt, "serve", "--model", model, "--port", "0", "--api-key", KEY, "--max-batch", "2", "--max-queue", "4", "-q"],
        stdout=subprocess.PIPE, text=True)
    url = proc.stdout.readline().strip().removeprefix("listening on ")
    deadline = time.time() + 300
    while True:
        try:
            urllib.request.urlopen(url + "/health")
            return proc, url
        except urllib.error.HTTPError as e:
            if e.code != 503 or time.time() > deadline:
                raise
        if proc.poll() is not None:
            sys.exit(f"gpt serve ended with status {proc.returncode}")
        time.sleep(0.1)


def expect(exc, call):
    try:
        call()
    except exc as e:
        return str(e)
    raise AssertionError(f"expected {exc.__name__}")


def run(client, model, has_chat):
    results = []

    def check(name, fn):
        try:
            detail = fn()
            results.append(True)
            print(f"ok    {name}" + (f": {detail}" if detail else ""))
        except Exception as e:  # every failure is reported, the others still run
            results.append(False)
            print(f"FAIL  {name}: {type(e).__name__}: {e}")

    prompt = "Once upon a time"

    def completion():
        c = client.completions.create(model=model, prompt=prompt, max_tokens=16, seed=1)
        u = c.usage
        assert c.object == "text_completion" and c.id.startswith("cmpl-"), c
        assert c.choices[0].finish_reason in ("stop", "length") and u.total_tokens == u.prompt_tokens + u.completion_tokens
        return repr(c.choices[0].text)

    def streamed_equals_whole():
        kw = dict(model=model, prompt=prompt, max_tokens=24, seed=7, temperature=1.0)
        whole = client.completions.create(**kw).choices[0]
        chunks = list(client.completions.create(stream=True, **kw))
        text = "".join(ch.choices[0].text for ch in chunks if ch.choices)
        finish = [ch.choices[0].finish_reason for ch in chunks if ch.choices and ch.choices[0].finish_reason]
        assert text == whole.text and finish == [whole.finish_reason], (text, whole.text, finish)
        return f"{len(chunks)} chunks"

    def n_choices():
        c = client.completions.create(model=model, prompt=[prompt, "The sea"], n=2, max_tokens=8, seed=3)
        assert [ch.index for ch in c.choices] == [0, 1, 2, 3], c.choices
        return None

    def stop():
        greedy = dict(model=model, prompt=prompt, max_tokens=32, temperature=0)
        text = client.completions.create(**greedy).choices[0].text
        if len(text) < 8:
            return f"skipped: the greedy text {text!r} is too short to cut"
        s = text[4:7]
        c = client.completions.create(stop=["\x00never", s], **greedy).choices[0]
        assert c.text == text[:text.index(s)] and c.finish_reason == "stop", (c.text, s)
        return f"cut at {s!r}"

    def logprobs():
        c = client.completions.create(model=model, prompt=prompt, max_tokens=6, temperature=0, logprobs=2).choices[0]
        lp = c.logprobs
        assert "".join(lp.tokens) == c.text and len(lp.token_logprobs) == len(lp.tokens)
        assert all(1 <= len(t) <= 2 and abs(max(t.values()) - l) < 1e-5 for t, l in zip(lp.top_logprobs, lp.token_logprobs))
        return f"{list(zip(lp.tokens, [round(x, 3) for x in lp.token_logprobs]))}"

    def chat():
        messages = [{"role": "user", "content": "What is the capital of France?"}]
        kw = dict(model=model, messages=messages, max_tokens=24, temperature=0)
        if not has_chat:
            msg = expect(openai.BadRequestError, lambda: client.chat.completions.create(**kw))
            assert "chat template" in msg, msg
            return "refused: no chat template"
        c = client.chat.completions.create(logprobs=True, top_logprobs=3, **kw)
        reply = c.choices[0].message
        assert reply.role == "assistant" and c.object == "chat.completion"
        content = c.choices[0].logprobs.content
        assert len(content) >= c.usage.completion_tokens - 1 and all(len(e.top_logprobs) == 3 for e in content)
        chunks = list(client.chat.completions.create(stream=True, stream_options={"include_usage": True}, **kw))
        assert chunks[0].choices[0].delta.role == "assistant"
        text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
        assert text == reply.content, (text, reply.content)
        assert chunks[-1].usage.completion_tokens == c.usage.completion_tokens
        return repr(reply.content)

    def errors():
        bad = expect(openai.BadRequestError, lambda: client.completions.create(model=model, prompt="x", temperature=5))
        assert "temperature" in bad
        expect(openai.BadRequestError, lambda: client.completions.create(model=model, prompt="x " * 100000))
        expect(openai.NotFoundError, lambda: client.completions.create(model="no-such-model", prompt="x"))
        wrong = openai.OpenAI(base_url=client.base_url, api_key="wrong", max_retries=0)
        expect(openai.AuthenticationError, lambda: wrong.completions.create(model=model, prompt="x"))
        expect(openai.RateLimitError, lambda: client.completions.create(model=model, prompt="x", n=16, max_tokens=64))
        return "BadRequestError, NotFoundError, AuthenticationError, RateLimitError"

    for name, fn in [("completion", completion), ("stream equals whole", streamed_equals_whole),
                     ("n > 1 over two prompts", n_choices), ("stop", stop), ("logprobs", logprobs),
                     ("chat", chat), ("errors", errors)]:
        check(name, fn)
    return all(results)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model", help="a model `gpt serve --model` takes")
    ap.add_argument("--gpt", type=Path, default=ROOT / "target/release/gpt", help="the gpt binary")
    a = ap.parse_args()
    if not a.gpt.is_file():
        sys.exit(f"{a.gpt} not found: run `cargo build --release` first or pass --gpt")
    proc, url = start(a.gpt, a.model)
    try:
        client = openai.OpenAI(base_url=url + "/v1", api_key=KEY, max_retries=0)
        models = client.models.list().data
        model = models[0].id
        print(f"{url}: serving {model}")
        try:
            has_chat = True
            client.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}], max_tokens=1)
        except openai.BadRequestError:
            has_chat = False
        ok = run(client, model, has_chat)
    finally:
        proc.terminate()
        status = proc.wait(timeout=60)
    print(f"gpt serve ended with status {status} after SIGTERM")
    sys.exit(0 if ok and status == 0 else 1)


if __name__ == "__main__":
    main()
