#!/usr/bin/env python
"""Training-step time and latency: the baseline against a plain Hugging Face QA model (target ≤ 1.10×) and, with
an entity index and KG embeddings, CMedBERT against the baseline (target ≤ 1.3×), on one identical batch of
CMedMRC windows; CPU latency of one question + passage for each (median of 5, fp32, fresh weights).

  python bench/step_time.py                                              # baseline vs plain HF QA
  python bench/step_time.py --index /tmp/cmekg_idx --embeddings /tmp/cmekg_emb   # + CMedBERT
Writes bench/results/step_time.json. Accuracy figures come from bench/mrc_cv.py.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
from transformers import AutoModelForQuestionAnswering, AutoTokenizer

from bench.common import SHARED, write_result
from bench.mrc_step import step_seconds
from kgutil.cli import setup_logging
from mrc.data import read_dataset
from mrc.features import FeatureConfig, prepare_features
from mrc.inference import collate
from mrc.model import BaselineMRC, ModelConfig, build_model
from mrc.predict import predict_one


def latency(model: BaselineMRC, tokenizer, example) -> float:  # type: ignore[no-untyped-def]
    saved = {"features": FeatureConfig(max_seq_length=384).model_dump()}
    cpu = torch.device("cpu")
    predict_one(model, tokenizer, saved, example.question, example.context, cpu)  # warm-up
    times = []
    for _ in range(5):
        t0 = time.perf_counter()
        predict_one(model, tokenizer, saved, example.question, example.context, cpu)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--encoder", default=str(SHARED / "models/m3e-small"))
    p.add_argument("--index", type=Path, help="entity index (with --embeddings: also time CMedBERT)")
    p.add_argument("--embeddings", type=Path)
    p.add_argument("--max-seq-length", type=int, default=384)
    p.add_argument("--batch-size", type=int, default=8)
    args = p.parse_args()
    setup_logging("INFO")
    tokenizer = AutoTokenizer.from_pretrained(args.encoder)
    examples = read_dataset(SHARED / "data/cmedmrc/dev.json")[:64]
    features = [f for f in prepare_features(examples, tokenizer, FeatureConfig(max_seq_length=args.max_seq_length))
                if len(f.input_ids) == args.max_seq_length][:args.batch_size]
    torch.manual_seed(0)
    models = {"baseline": build_model(args.encoder, ModelConfig())}
    if args.index and args.embeddings:
        models["cmedbert"] = build_model(args.encoder, ModelConfig(model_type="cmedbert", fusion={
            "index": str(args.index), "embeddings": str(args.embeddings)}))
        models["cmedbert"].attach_inputs(features, examples, tokenizer)
    batch = collate(features, tokenizer.pad_token_id, with_labels=True)
    plain = AutoModelForQuestionAnswering.from_pretrained(args.encoder)
    hf_inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "token_type_ids", "start_positions",
                                       "end_positions")}
    seconds = {"plain_hf_qa": step_seconds(plain, lambda: hf_inputs),
               "baseline": step_seconds(models["baseline"], lambda: {k: v for k, v in batch.items()
                                                                     if k != "entity_ids"})}
    if "cmedbert" in models:
        seconds["cmedbert"] = step_seconds(models["cmedbert"], lambda: batch)
    figures: dict[str, object] = {
        "batch": f"{len(features)}x{args.max_seq_length}",
        "step_seconds": {k: round(v, 3) for k, v in seconds.items()},
        "baseline_vs_plain_hf": round(seconds["baseline"] / seconds["plain_hf_qa"], 3),
        "cpu_latency_seconds": {k: round(latency(m, tokenizer, examples[0]), 3) for k, m in models.items()},
        "targets": {"baseline_vs_plain_hf_max": 1.10, "cmedbert_vs_baseline_max": 1.3}}
    if "cmedbert" in seconds:
        figures["cmedbert_vs_baseline"] = round(seconds["cmedbert"] / seconds["baseline"], 3)
    write_result("step_time", figures)


if __name__ == "__main__":
    main()
