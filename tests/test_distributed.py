"""Training mechanics that must not change the result: gradient accumulation, resuming, and data-parallel
training under torchrun (2 CPU processes, gloo) — each compared with the plain run it stands for."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from conftest import ROOT, make_tiny_encoder
from mrc.train import TrainConfig, train_mrc

SAMPLE = ROOT / "examples" / "sample_mrc.json"


@pytest.fixture(scope="module")
def still_encoder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny encoder without dropout: runs that see the same examples must compute the same gradients. (The
    support loss is off in these comparisons: it is a mean over a batch's tokens, not over its examples.)"""
    return make_tiny_encoder(tmp_path_factory.mktemp("still_encoder"), dropout=0.0)


def _config(encoder: Path, out: Path, **update: object) -> TrainConfig:
    base = dict(encoder=str(encoder), train=[SAMPLE], out=out, epochs=2, batch_size=4, lr=2e-3, warmup_ratio=0.0,
                progress=False, seed=5, intermediate={"epochs": 0}, negative_windows=1.0,
                split={"validation_share": 0.0}, model={"dropout": 0.0, "support_weight": 0.0},
                features={"max_seq_length": 160, "doc_stride": 64})
    return TrainConfig.model_validate({**base, **update})


def _weights(run: Path) -> dict[str, torch.Tensor]:
    return load_file(str(run / "best" / "model.safetensors"))


def _distance(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    """Euclidean distance between two weight sets (Adam turns float noise in near-zero gradients into ±lr
    steps, so single weights may differ by ~lr while the whole stays put)."""
    assert a.keys() == b.keys()
    return float(torch.sqrt(sum(((a[k].double() - b[k].double()) ** 2).sum() for k in a)))


def test_gradient_accumulation_equals_the_larger_batch(still_encoder: Path, tmp_path: Path) -> None:
    train_mrc(_config(still_encoder, tmp_path / "big", batch_size=4))
    train_mrc(_config(still_encoder, tmp_path / "accum", batch_size=2, grad_accum=2))
    train_mrc(_config(still_encoder, tmp_path / "small", batch_size=2))
    big, accum, small = (_weights(tmp_path / n) for n in ("big", "accum", "small"))
    print("accumulated vs big batch", _distance(big, accum), "small vs big batch", _distance(big, small))
    assert _distance(big, accum) < 0.02 * _distance(big, small)  # twice the steps land elsewhere


def test_two_epochs_equal_one_epoch_and_a_resume(tiny_encoder: Path, tmp_path: Path) -> None:
    """With dropout on: the random stream is re-seeded per epoch, the optimiser and step restored."""
    straight = _config(tiny_encoder, tmp_path / "straight", model={"dropout": 0.1, "support_weight": 0.5})
    train_mrc(straight)
    resumed = straight.model_copy(update={"out": tmp_path / "resumed"})
    train_mrc(resumed.model_copy(update={"stop_after_epoch": 1}))
    assert not (tmp_path / "resumed" / "best").exists()
    train_mrc(resumed)
    assert _distance(_weights(tmp_path / "straight"), _weights(tmp_path / "resumed")) < 1e-5


def test_two_processes_under_torchrun_equal_one_with_the_doubled_batch(still_encoder: Path, tmp_path: Path) -> None:
    single = _config(still_encoder, tmp_path / "single", batch_size=4)
    train_mrc(single)
    (tmp_path / "ddp.json").write_text(_config(still_encoder, tmp_path / "ddp", batch_size=2).model_dump_json())
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                           "--master_port", "29517", str(ROOT / "scripts" / "train_mrc.py"), "--config",
                           str(tmp_path / "ddp.json"), "--log-level", "INFO"],
                          capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    train_mrc(_config(still_encoder, tmp_path / "halved", batch_size=2))
    single, ddp, halved = (_weights(tmp_path / n) for n in ("single", "ddp", "halved"))
    print("2 processes vs doubled batch", _distance(single, ddp), "halved batch", _distance(single, halved))
    assert _distance(single, ddp) < 0.02 * _distance(single, halved)
    assert proc.stderr.count("2 process(es)") == 1  # only the main process logs …
    assert proc.stdout.count('"out"') == 2  # (each process prints its summary)
    names = sorted(p.name for p in (tmp_path / "ddp").iterdir())  # … and writes, once, atomically
    assert names == ["best", "checkpoint", "metrics.json", "train.json", "train_config.json"]
