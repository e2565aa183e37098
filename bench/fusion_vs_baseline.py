#!/usr/bin/env python
"""CMedBERT vs the baseline and three ablations on the 80/20 passage split of the CMedMRC dev file.

Variants, same settings and seeds (the seed also draws the split): baseline, cmedbert, cmedbert_zero_start
(output merge o = h + tanh(W[h; hᴸ]) starting at zero; not in the paper), and the ablations cmedbert
--no-local, --no-global, --no-dynamic-lambda. The main comparison runs first over all seeds, then the ablations
seed by seed. Results are written after every run, keyed by variant and seed; a later invocation with the same
settings skips the runs the results file already holds (``--fresh`` starts over).

Reports answer and support EM/F1 as mean ± std over seeds (a table like the paper's Table 5), link coverage
and attention statistics, the training-step time of CMedBERT vs the baseline on one batch (target ≤ 1.3×) and
the CPU latency of one question+passage prediction. Target: CMedBERT answer EM ≥ baseline + 1.5.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from transformers import AutoTokenizer

from bench.common import RESULTS, SHARED, write_result
from bench.mrc_step import step_seconds
from kg.cli import setup_logging
from mrc.data import read_dataset
from mrc.features import FeatureConfig, prepare_features
from mrc.model import ModelConfig, build_model, load_model
from mrc.predict import predict_one
from mrc.inference import collate, predict_features
from mrc.train import TrainConfig, load_examples, train_mrc

VARIANTS = {
    "baseline": ("baseline", {}),
    "cmedbert": ("cmedbert", {}),
    "no_local": ("cmedbert", {"local": False}),
    "no_global": ("cmedbert", {"global_": False}),
    "no_dynamic_lambda": ("cmedbert", {"dynamic_lambda": False}),
    "cmedbert_zero_start": ("cmedbert", {"merge_residual": True}),  # stabilising variant, not in the paper
}
RUN_ONLY = {"seeds", "variants", "step_only", "fresh"}  # settings that do not change a run's result
METRICS = ("em", "f1", "support_em", "support_f1")


def step_and_latency(encoder: str, fusion: dict, max_len: int, batch_size: int) -> dict[str, float]:
    tokenizer = AutoTokenizer.from_pretrained(encoder)
    examples = read_dataset(SHARED / "data/cmedmrc/dev.json")[:64]
    features = [f for f in prepare_features(examples, tokenizer, FeatureConfig(max_seq_length=max_len))
                if len(f.input_ids) == max_len][:batch_size]
    torch.manual_seed(0)
    baseline = build_model(encoder, ModelConfig())
    cmedbert = build_model(encoder, ModelConfig(model_type="cmedbert", fusion=fusion))
    cmedbert.attach_inputs(features, examples, tokenizer)
    batch = collate(features, tokenizer.pad_token_id, with_labels=True)
    plain_batch = {k: v for k, v in batch.items() if k != "entity_ids"}
    t_base = step_seconds(baseline, lambda: plain_batch)
    t_cmed = step_seconds(cmedbert, lambda: batch)
    return {"batch": f"{len(features)}x{max_len}", "baseline_step_seconds": round(t_base, 3),
            "cmedbert_step_seconds": round(t_cmed, 3), "ratio": round(t_cmed / t_base, 3), "target_ratio_max": 1.3}


def latency(model_dir: Path, example) -> float:  # type: ignore[no-untyped-def]
    model, tokenizer, saved = load_model(model_dir)
    predict_one(model, tokenizer, saved, example.question, example.context, torch.device("cpu"))  # warm-up
    times = []
    for _ in range(5):
        t0 = time.perf_counter()
        predict_one(model, tokenizer, saved, example.question, example.context, torch.device("cpu"))
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def attention_statistics(model_dir: Path, held_out: list, precision: str) -> dict[str, float]:
    """Link coverage of the held-out windows and how peaked the trained model's entity attentions are."""
    model, tokenizer, saved = load_model(model_dir)
    features = prepare_features(held_out, tokenizer, FeatureConfig.model_validate(saved["features"]))
    model.attach_inputs(features, held_out, tokenizer)
    *_, details = predict_features(model, features, tokenizer.pad_token_id, 16, torch.device("cpu"),
                                   precision=precision)
    context = linked = 0
    per_token, local_max, global_max, window_entities = [], [], [], []
    for f, d in zip(features, details):
        ids = np.asarray(f.extra["entity_ids"])
        in_context = np.array([o is not None for o in f.offsets])
        counts = (ids >= 0).sum(-1)
        context += int(in_context.sum())
        linked += int((in_context & (counts > 0)).sum())
        per_token.extend(counts[counts > 0].tolist())
        if "local_attention" in d:
            alpha = d["local_attention"][: len(f.input_ids)]
            local_max.extend(alpha[counts >= 2].max(-1).tolist())
        if "global_attention" in d:
            beta = d["global_attention"]
            n = int((beta > 0).sum())
            window_entities.append(n)
            if n >= 2:
                global_max.append(float(beta.max()))
    mean = lambda xs: round(float(np.mean(xs)), 3) if xs else None  # noqa: E731
    return {"context_tokens_with_entity": round(linked / max(1, context), 3),
            "entities_per_linked_token": mean(per_token),
            "local_max_alpha_tokens_with_2plus": mean(local_max),
            "uniform_local_alpha_would_be": mean([1 / c for c in per_token if c >= 2]),
            "global_entities_per_window": mean(window_entities), "global_max_beta": mean(global_max)}


def summarise(runs: dict[str, dict[str, dict[str, float]]]) -> dict[str, object]:
    """Mean ± std over seeds per variant from ``runs[variant][seed]``, and answer EM − baseline per seed."""
    table = {name: {k: [r[k] for _, r in sorted(by_seed.items(), key=lambda kv: int(kv[0]))] for k in METRICS}
             for name, by_seed in runs.items()}
    figures: dict[str, object] = {
        "table": {name: {"seeds": len(row["em"]), **{k: f"{np.mean(v):.2f} ± {np.std(v):.2f}" for k, v in row.items()}}
                  for name, row in table.items()}}
    # A seed draws the split, so each variant is compared with the baseline seed by seed on the same held-out
    # questions; the target is on the mean of these differences for cmedbert.
    baseline = runs.get("baseline", {})
    paired: dict[str, object] = {}
    for name, by_seed in runs.items():
        seeds = sorted(set(by_seed) & set(baseline), key=int)
        if name == "baseline" or not seeds:
            continue
        diffs = [round(by_seed[s]["em"] - baseline[s]["em"], 2) for s in seeds]
        paired[name] = {"seeds": len(diffs), "mean": round(float(np.mean(diffs)), 2),
                        "std": round(float(np.std(diffs)), 2), "per_seed": dict(zip(seeds, diffs))}
    figures["em_minus_baseline"] = paired
    return figures


def previous_figures(settings: dict[str, object]) -> dict[str, object]:
    """The results file's figures if it was written with the same training settings (seeds and variants aside)."""
    path = RESULTS / "fusion_vs_baseline.json"
    if not path.exists():
        return {}
    previous = json.loads(path.read_text())
    same = {k: v for k, v in settings.items() if k not in RUN_ONLY}
    if {k: v for k, v in previous.get("settings", {}).items() if k not in RUN_ONLY} != same:
        logging.getLogger(__name__).warning("%s has other settings: starting over", path)
        return {}
    return previous


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--encoder", default=str(SHARED / "models/m3e-small"))
    p.add_argument("--index", type=Path, required=True)
    p.add_argument("--embeddings", type=Path, required=True)
    p.add_argument("--init-from", type=Path, help="baseline model after intermediate training (encoder source)")
    p.add_argument("--out", type=Path, default=Path("runs/bench_fusion"))
    p.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--max-seq-length", type=int, default=384)
    p.add_argument("--negative-windows", type=float, default=0.3)
    p.add_argument("--precision", choices=["fp32", "bf16"], default="fp32", help="training/evaluation autocast")
    p.add_argument("--step-only", action="store_true", help="only step time and latency")
    p.add_argument("--fresh", action="store_true", help="ignore the runs already in the results file")
    args = p.parse_args()
    setup_logging("INFO")
    fusion = {"index": str(args.index), "embeddings": str(args.embeddings)}
    figures: dict[str, object] = {"step_time": step_and_latency(args.encoder, fusion, args.max_seq_length,
                                                                args.batch_size)}
    if args.step_only:
        write_result("fusion_step", figures)
        return
    settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    previous = {} if args.fresh else previous_figures(settings)
    runs: dict[str, dict[str, dict[str, float]]] = previous.get("runs", {})  # type: ignore[assignment]
    for key in ("links_and_attention", "cpu_latency_seconds"):
        if key in previous:
            figures[key] = previous[key]
    figures["settings"] = settings
    main = [v for v in ("baseline", "cmedbert", "cmedbert_zero_start") if v in args.variants]
    order = [(seed, name) for name in main for seed in args.seeds] + \
            [(seed, name) for seed in args.seeds for name in args.variants if name not in main]
    # The comparison the target is about runs first, then the ablations seed by seed; results are written after
    # every run, so a run stopped at a deadline keeps what it finished and the next invocation goes on from there.
    def save() -> None:
        figures.update(summarise(runs), runs=runs)
        write_result("fusion_vs_baseline", figures)

    for seed, name in order:
        if str(seed) in runs.get(name, {}):
            continue
        model_type, flags = VARIANTS[name]
        config = TrainConfig(
            encoder=args.encoder, init_from=args.init_from, train=[SHARED / "data/cmedmrc/dev.json"],
            split_by_passage=0.8, seed=seed, out=args.out / f"{name}_seed{seed}", epochs=args.epochs,
            lr=args.lr, batch_size=args.batch_size, negative_windows=args.negative_windows, progress=False,
            precision=args.precision, features=FeatureConfig(max_seq_length=args.max_seq_length),
            model=ModelConfig(model_type=model_type, support_weight=0.5,
                              fusion={**fusion, **flags} if model_type == "cmedbert" else {}))
        result = train_mrc(config)
        best = result.best_metrics["overall"]
        runs.setdefault(name, {})[str(seed)] = {
            **{k: best.get(k, 0.0) for k in METRICS},
            "train_lambda_last_epoch": result.history[-1]["train_lambda"],
            "train_seconds": round(sum(h["seconds"] for h in result.history), 1)}
        if name == "cmedbert" and seed == args.seeds[0]:
            _, held_out = load_examples(config)
            figures["links_and_attention"] = attention_statistics(result.out / "best", held_out,
                                                                  args.precision)
            example = read_dataset(SHARED / "data/cmedmrc/dev.json")[0]
            figures["cpu_latency_seconds"] = {  # fp32, one question + passage, median of 5
                variant: round(latency(args.out / f"{variant}_seed{seed}" / "best", example), 3)
                for variant in ("baseline", "cmedbert") if variant in args.variants}
        save()
    save()  # also when every run was already there: a fresh summary


if __name__ == "__main__":
    main()
