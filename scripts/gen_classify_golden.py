#!/usr/bin/env python3
"""Regenerates tests/golden/classify/: tiny sequence classifiers made by
`transformers` (GPT2ForSequenceClassification, LlamaForSequenceClassification),
their logits on padded texts, and ten AdamW steps of training them in PyTorch,
the reference tests/classify_golden.rs holds `gpt` to.

The bodies are gen_train_golden.py's `init` (GPT-2: vocab 64, n_ctx 32, 32
wide, 2 layers, 4 heads) and `llama_init` (Llama, 32 wide, untied), with a
`score` head [3, 32] drawn from N(0, 0.3²) (larger than transformers' init,
so every logit differs visibly); labels "neg", "neu", "pos"; padding id 63.
Texts are random token ids below 63, 1 to 24 long; each batch of 4 is padded
on the right to its longest, and transformers reads each row at its last
token that is not padding (as `gpt` does). The optimizer is gen_train_golden's:
AdamW, two groups (weight decay on matrices that are not embeddings, `score`
included), constant lr. PyTorch runs in float64 on the float32 start, with
gen_train_golden's float64 patches of Llama's RMSNorm and attention. Written:

    gpt2/, llama/                 the float32 starts, as save_pretrained writes them
    gpt2_trained/, llama_trained/ the weights after ten steps (float32)
    golden.json                   texts and labels, logits of the start on the
                                  first batch (float32 transformers), each run's losses

    ~/.cache/gpt-venv/bin/python scripts/gen_classify_golden.py
"""
import json
import shutil
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import transformers
from transformers import GPT2ForSequenceClassification, LlamaForSequenceClassification

from gen_train_golden import BOS, EPS, BETAS, LR, WEIGHT_DECAY, adamw, build_model

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "golden" / "classify"
LABELS = ["neg", "neu", "pos"]
PAD = BOS
STEPS, ROWS, LONGEST = 10, 4, 24
SEED = 11


def classifier(init):
    """The `init` body of gen_train_golden.py with a fresh `score` head, float32."""
    lm = build_model(init)
    cfg = lm.config
    cfg.num_labels = len(LABELS)
    cfg.id2label = dict(enumerate(LABELS))
    cfg.label2id = {l: i for i, l in enumerate(LABELS)}
    cfg.pad_token_id = PAD
    cls = GPT2ForSequenceClassification if init == "init" else LlamaForSequenceClassification
    model = cls(cfg)
    missing, unexpected = model.load_state_dict(lm.state_dict(), strict=False)
    assert missing == ["score.weight"] and unexpected == ["lm_head.weight"], (missing, unexpected)
    torch.manual_seed(SEED)
    with torch.no_grad():
        model.score.weight.copy_(torch.randn(model.score.weight.shape) * 0.3)
    return model.float().eval()


def padded(texts):
    t = max(map(len, texts))
    return torch.tensor([x + [PAD] * (t - len(x)) for x in texts])


def run(start, batches, dtype=torch.float64):
    model = type(start)(start.config)
    model.load_state_dict(start.state_dict())
    model = model.to(dtype).train()
    opt = adamw(model.named_parameters())
    losses = []
    for batch in batches:
        opt.zero_grad(set_to_none=False)
        logits = model(padded([b["ids"] for b in batch])).logits
        loss = F.cross_entropy(logits, torch.tensor([b["label"] for b in batch]))
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses, model.float()


def main():
    torch.set_num_threads(1)
    gen = np.random.default_rng(SEED)
    text = lambda: gen.integers(0, PAD, gen.integers(1, LONGEST + 1)).tolist()
    batches = [[{"ids": text(), "label": int(gen.integers(0, len(LABELS)))} for _ in range(ROWS)]
               for _ in range(STEPS)]
    if OUT.exists():
        shutil.rmtree(OUT)
    OUT.mkdir(parents=True)
    runs = {}
    for name, init in [("gpt2", "init"), ("llama", "llama_init")]:
        start = classifier(init)
        start.save_pretrained(OUT / name)
        with torch.no_grad():
            logits = start(padded([b["ids"] for b in batches[0]])).logits
        losses, trained = run(start, batches)
        trained.save_pretrained(OUT / f"{name}_trained")
        f32_losses, _ = run(start, batches, torch.float32)
        runs[name] = {
            "logits": logits.tolist(),
            "losses": losses,
            "pytorch_f32_loss_max_rel": max(abs(a - b) / abs(b) for a, b in zip(f32_losses, losses)),
        }
        print(f"{name}: losses {losses}")
    for f in OUT.rglob("generation_config.json"):
        f.unlink()
    golden = {
        "about": "tests/classify_golden.rs reads this; regenerate with scripts/gen_classify_golden.py",
        "labels": LABELS,
        "pad_token_id": PAD,
        "optimizer": {"lr": LR, "beta1": BETAS[0], "beta2": BETAS[1], "eps": EPS, "weight_decay": WEIGHT_DECAY},
        "batches": batches,
        "runs": runs,
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__},
    }
    (OUT / "golden.json").write_text(json.dumps(golden, indent=1) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
