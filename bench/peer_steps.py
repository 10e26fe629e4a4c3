"""Shared by the PyTorch peers of the training benches: the timed step loop."""
import time

import torch


def time_steps(model, trainable, opt, x, y, steps, bf16=False):
    """One warm-up step (it allocates the optimizer state), then `steps` timed
    ones of forward, cross-entropy, backward, clipping `trainable` at 1.0 and
    `opt`: each step's seconds. With `bf16` the forward and the loss run under
    bf16 autocast (mixed precision), as PyTorch recommends."""

    def step():
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            logits = model(input_ids=x).logits
            loss = torch.nn.functional.cross_entropy(logits.view(-1, logits.size(-1)), y.view(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        opt.step()
        return loss.item()

    step()
    times = []
    for _ in range(steps):
        t = time.perf_counter()
        step()
        times.append(time.perf_counter() - t)
    return times
