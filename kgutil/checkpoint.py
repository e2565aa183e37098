"""Resumable training state without pickle: tensors in safetensors, everything else in JSON.

A checkpoint directory holds ``state.safetensors`` (model parameters ``model.*`` and optimizer tensors
``optim.<param>.<name>``) and ``state.json`` (optimizer param groups and scalars, a ``fingerprint`` of the run's
configuration, and caller state such as the epoch). It is written atomically.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from kgutil.io import atomic_path

log = logging.getLogger(__name__)


def _flatten(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    tensors = {f"model.{k}": v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    opt = optimizer.state_dict()
    scalars: dict[str, Any] = {}
    for pid, state in opt["state"].items():
        for name, value in state.items():
            if torch.is_tensor(value):
                tensors[f"optim.{pid}.{name}"] = value.detach().contiguous().cpu()
            else:
                scalars[f"{pid}.{name}"] = value
    return tensors, {"param_groups": opt["param_groups"], "scalars": scalars}


def save_checkpoint(directory: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer, fingerprint: str,
                    state: dict[str, Any]) -> None:
    """Write model, optimizer and the JSON-able ``state`` to ``directory`` atomically."""
    tensors, rest = _flatten(model, optimizer)
    with atomic_path(directory) as tmp:
        tmp.mkdir()
        save_file(tensors, str(tmp / "state.safetensors"))
        (tmp / "state.json").write_text(json.dumps({"fingerprint": fingerprint, "state": state, **rest}),
                                        encoding="utf-8")


def load_checkpoint(directory: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                    fingerprint: str) -> dict[str, Any] | None:
    """Restore model and optimizer; returns the saved ``state``, or None when absent or from another config."""
    meta_path = Path(directory) / "state.json"
    if not meta_path.exists():
        return None
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    if meta["fingerprint"] != fingerprint:
        log.warning("checkpoint in %s was made with another configuration; starting afresh", directory)
        return None
    device = next(model.parameters()).device
    tensors = load_file(str(Path(directory) / "state.safetensors"), device=str(device))
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")}, strict=False)
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, pid, name = key.split(".", 2)
            state.setdefault(int(pid), {})[name] = value
    for key, value in meta["scalars"].items():
        pid, name = key.split(".", 1)
        state.setdefault(int(pid), {})[name] = value
    optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
    return meta["state"]
