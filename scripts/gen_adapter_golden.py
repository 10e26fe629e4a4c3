#!/usr/bin/env python3
"""Regenerates tests/golden/adapter/: ten AdamW steps of bottleneck adapters
(Houlsby et al. 2019) in plain PyTorch, the reference that
tests/train_golden.rs holds `gpt train --adapter-size` to.

The adapters are written here from the definition (src/model/bottleneck.rs):
in every block, one on the output of the attention module (GPT-2's `attn`,
Llama's `self_attn`: after its output projection and dropout, before the
residual add) and one on the MLP module's output, each

    h + up(relu(down(h)))    down: nn.Linear(C, H), up: nn.Linear(H, C)

put there by a forward hook on that module, and registered as its submodule
`adapter`, so that their parameter names are the file names gpt writes
(`transformer.h.0.attn.adapter.down.weight`, `model.layers.0.mlp.adapter.up.bias`).
They start as gpt starts them (the `adapters` library's "mam_adapter" init):
`down` kaiming-uniform (nn.Linear's own draw, seeded), its bias, `up` and its
bias zero, so the model starts exactly as its base.

Two runs, each from a start of scripts/gen_train_golden.py on that golden's
`rows16` batches (B=4 rows of T=16) with its optimizer (AdamW lr 1e-3, betas
0.9/0.95, eps 1e-8, weight decay 0.1 on 2-D tensors that are not embeddings,
here the adapters' two matrices; constant lr), the base frozen
(requires_grad off), in float64 on the float32 start, one thread, no
gradient clipping:

    gpt2    init (GPT-2: n_ctx 32, n_embd 32, 2 layers, 4 heads, vocab 64, tied), H = 4
    llama   llama_init (Llama: hidden 32, 2 layers, 4 heads, untied), H = 4

Written:

    RUN_init/     the adapters before training, as gpt saves them (adapter_config.json
                  + adapter_model.safetensors, float32)
    RUN/          the adapters after ten steps, the same way
    RUN_grads0.safetensors   the adapters' gradients at step 0 (our parameter names)
    golden.json   each run's losses and gradient norms (the data: the train golden's)

    ~/.cache/gpt-venv/bin/python scripts/gen_adapter_golden.py
"""
import json
import shutil

import torch
import transformers
from safetensors.torch import load_file, save_file
from torch import nn

from gen_train_golden import MODELS, OUT as TRAIN, ROOT, SEED, adamw, build_model, ours, rows_loss, tensors

OUT = ROOT / "tests" / "golden" / "adapter"
DATA = "rows16"
SIZE = 4
RUNS = {"gpt2": "init", "llama": "llama_init"}


class Bottleneck(nn.Module):
    """h + up(relu(down(h))), up zero at the start."""

    def __init__(self, width, size):
        super().__init__()
        self.down = nn.Linear(width, size)
        self.up = nn.Linear(size, width)
        nn.init.zeros_(self.down.bias)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, h):
        return h + self.up(torch.relu(self.down(h)))


def adapt_output(module, args, output):
    """A forward hook: the module's output (the first of a tuple) through its adapter."""
    if isinstance(output, tuple):
        return (module.adapter(output[0]),) + output[1:]
    return module.adapter(output)


def base(init):
    """The train golden's start `init` as a transformers model in float32."""
    model = build_model(init)
    state = load_file(TRAIN / init / "model.safetensors")
    if init in MODELS:
        state = {f"transformer.{k}": v for k, v in state.items()}
    missing, unexpected = model.load_state_dict(state, strict=False)
    assert not unexpected and set(missing) <= {"lm_head.weight"}, (missing, unexpected)
    return model


def with_adapters(model):
    """`model`, frozen, with a fresh adapter on every block's attention and MLP (drawn in that order)."""
    for p in model.parameters():
        p.requires_grad = False
    if hasattr(model, "transformer"):
        blocks, sites = model.transformer.h, ("attn", "mlp")
    else:
        blocks, sites = model.model.layers, ("self_attn", "mlp")
    width = model.config.hidden_size
    torch.manual_seed(SEED)
    for block in blocks:
        for site in sites:
            module = getattr(block, site)
            module.adapter = Bottleneck(width, SIZE)
            module.register_forward_hook(adapt_output)
    assert all((".adapter." in n) == p.requires_grad for n, p in model.named_parameters())
    return model


def save_adapters(model, dir):
    """The adapters as gpt saves them: the config, and the tensors under the model's own module names."""
    dir.mkdir(parents=True)
    named = {n: p.detach().to(torch.float32).contiguous() for n, p in model.named_parameters() if ".adapter." in n}
    save_file(named, dir / "adapter_model.safetensors", metadata={"format": "pt"})
    config = {
        "adapter_type": "bottleneck", "adapter_size": SIZE, "non_linearity": "relu",
        "base_model_name_or_path": "tiny", "task_type": "CAUSAL_LM", "hidden_size": model.config.hidden_size,
        "num_hidden_layers": model.config.num_hidden_layers, "mh_adapter": True, "output_adapter": True,
        "init_weights": "mam_adapter", "modules_to_save": None,
    }
    (dir / "adapter_config.json").write_text(json.dumps(config, indent=2) + "\n")


def train(model, batches):
    """Ten AdamW steps of the adapters: losses, gradient norms, step-0 gradients."""
    model = model.to(torch.float64).train()
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    opt = adamw(named)
    losses, norms, grads0 = [], [], None
    for step, batch in enumerate(batches):
        opt.zero_grad(set_to_none=False)
        loss = rows_loss(model, batch)
        loss.backward()
        norms.append(torch.sqrt(sum((p.grad**2).sum() for _, p in named)).item())
        if step == 0:
            grads0 = {ours(n): p.grad.detach().to(torch.float32).clone() for n, p in named}
        opt.step()
        losses.append(loss.item())
    return losses, norms, grads0, model.float()


def main():
    torch.set_num_threads(1)
    golden = json.loads((TRAIN / "golden.json").read_text())
    batches = golden["data"][DATA]
    if OUT.exists():
        shutil.rmtree(OUT)
    OUT.mkdir(parents=True)
    runs = {}
    for name, init in RUNS.items():
        model = with_adapters(base(init))
        start = tensors(model)
        # The adapters start with up = 0: the model's logits are its base's.
        x = torch.tensor(batches[0])[:, :-1]
        with torch.no_grad():
            assert torch.equal(model(x).logits, base(init)(x).logits)
        save_adapters(model, OUT / f"{name}_init")
        losses, norms, grads0, model = train(model, batches)
        end = tensors(model)
        moved = sorted(k for k in end if not torch.equal(end[k], start[k]))
        assert moved == sorted(k for k in end if ".adapter." in k), moved
        save_adapters(model, OUT / name)
        save_file(grads0, OUT / f"{name}_grads0.safetensors")
        runs[name] = {"init": init, "data": DATA, "packed_rows": None, "grad_clip": None,
                      "adapter_init": f"{name}_init", "adapter": name, "grads0": f"{name}_grads0.safetensors",
                      "losses": losses, "grad_norms": norms}
        print(f"{name}: losses {losses}\n  norms {norms}")
    out = {
        "about": "tests/train_golden.rs reads this (with ../train/golden.json's data); regenerate with "
                 "scripts/gen_adapter_golden.py",
        "adapter_size": SIZE,
        "runs": runs,
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__},
    }
    (OUT / "golden.json").write_text(json.dumps(out, indent=1) + "\n")
    total = sum(f.stat().st_size for f in OUT.rglob("*") if f.is_file())
    print(f"wrote {OUT} ({total / 1e3:.0f} kB)")


if __name__ == "__main__":
    main()
