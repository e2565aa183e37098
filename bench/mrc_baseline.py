#!/usr/bin/env python
"""Baseline multi-task MRC on the CMedMRC dev file: 80/20 split by passage, m3e-small.

Optionally first trains on open-domain CMRC 2018 (intermediate training), then fine-tunes on the medical
split. Reports answer and support EM/F1 on the held-out 20% (best epoch), seconds per epoch, peak memory, and
the training-step time of the baseline vs a plain ``AutoModelForQuestionAnswering`` on the same batch
(target: within 10%). Targets for answers: ≥ 20 EM / ≥ 40 F1.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from transformers import AutoModelForQuestionAnswering, AutoTokenizer

from bench.common import SHARED, peak_rss_mb, write_result
from bench.mrc_step import step_seconds
from kg.cli import setup_logging
from mrc.data import read_dataset
from mrc.features import FeatureConfig, prepare_features
from mrc.model import ModelConfig, build_model
from mrc.inference import collate
from mrc.train import TrainConfig, train_mrc


def step_comparison(encoder: str, max_len: int, batch_size: int) -> dict[str, float]:
    tokenizer = AutoTokenizer.from_pretrained(encoder)
    examples = read_dataset(SHARED / "data/cmedmrc/dev.json")[:64]
    features = [f for f in prepare_features(examples, tokenizer, FeatureConfig(max_seq_length=max_len))
                if len(f.input_ids) == max_len][:batch_size]
    batch = collate(features, tokenizer.pad_token_id, with_labels=True)
    torch.manual_seed(0)
    baseline = build_model(encoder, ModelConfig())
    plain = AutoModelForQuestionAnswering.from_pretrained(encoder)
    hf_inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "token_type_ids", "start_positions",
                                       "end_positions")}
    t_plain = step_seconds(plain, lambda: hf_inputs)
    t_base = step_seconds(baseline, lambda: batch)
    return {"batch": f"{len(features)}x{max_len}", "plain_hf_qa_seconds": round(t_plain, 3),
            "baseline_seconds": round(t_base, 3), "ratio": round(t_base / t_plain, 3), "target_ratio_max": 1.10}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--encoder", default=str(SHARED / "models/m3e-small"))
    p.add_argument("--out", type=Path, default=Path("runs/bench_mrc_baseline"))
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--max-seq-length", type=int, default=384)
    p.add_argument("--doc-stride", type=int, default=128)
    p.add_argument("--negative-windows", type=float, default=0.3)
    p.add_argument("--support-weight", type=float, default=0.5)
    p.add_argument("--intermediate-epochs", type=int, default=1, help="epochs on CMRC 2018 first (0: skip)")
    p.add_argument("--step-only", action="store_true", help="only the step-time comparison")
    args = p.parse_args()
    setup_logging("INFO")
    figures: dict[str, object] = {"step_time": step_comparison(args.encoder, args.max_seq_length, args.batch_size)}
    if not args.step_only:
        common = dict(seed=args.seed, lr=args.lr, batch_size=args.batch_size, negative_windows=args.negative_windows,
                      features=FeatureConfig(max_seq_length=args.max_seq_length, doc_stride=args.doc_stride),
                      model=ModelConfig(support_weight=args.support_weight), progress=False)
        init_from, stages = None, {}
        if args.intermediate_epochs:
            cmrc = train_mrc(TrainConfig(encoder=args.encoder, train=[SHARED / "data/cmrc2018/cmrc2018_dev.json",
                                                                        SHARED / "data/cmrc2018/cmrc2018_trial.json"],
                                         out=args.out / "cmrc", epochs=args.intermediate_epochs, **common))
            init_from = args.out / "cmrc" / "best"
            stages["intermediate"] = {"epochs": args.intermediate_epochs,
                                      "seconds_per_epoch": [h["seconds"] for h in cmrc.history]}
        result = train_mrc(TrainConfig(encoder=args.encoder, init_from=init_from,
                                       train=[SHARED / "data/cmedmrc/dev.json"], split_by_passage=0.8,
                                       out=args.out / "medical", epochs=args.epochs, **common))
        stages["medical"] = [{"epoch": h["epoch"], "seconds": h["seconds"], "train_loss": h["train_loss"],
                              **{k: v for k, v in h["validation"]["overall"].items()}} for h in result.history]
        figures.update({"settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
                        "best": result.best_metrics.get("overall"), "stages": stages,
                        "by_question_type": result.best_metrics.get("by_question_type"),
                        "peak_rss_mb": round(peak_rss_mb()), "targets": {"em": 20, "f1": 40}})
    write_result("mrc_baseline" if not args.step_only else "mrc_baseline_step", json.loads(json.dumps(figures)))


if __name__ == "__main__":
    main()
