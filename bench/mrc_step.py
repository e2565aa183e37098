"""Shared by the MRC benchmarks: time training steps of models on one identical batch."""

from __future__ import annotations

import time
from collections.abc import Callable

import torch


def step_seconds(model: torch.nn.Module, make_inputs: Callable[[], dict[str, torch.Tensor]], steps: int = 5,
                 warmup: int = 1) -> float:
    """Median seconds of forward + backward + SGD-free update (zero_grad) over ``steps`` after ``warmup``."""
    model.train()
    times = []
    for i in range(warmup + steps):
        inputs = make_inputs()
        t0 = time.perf_counter()
        out = model(**inputs)
        loss = out.loss if hasattr(out, "loss") and out.loss is not None else out[0]
        loss.backward()
        model.zero_grad(set_to_none=True)
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2]
