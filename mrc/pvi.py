"""Pointwise V-usable information (Ethayarajh et al. 2022) per task and example, held out by passage.

For a task, g is trained on (input → label) and g′ on (null input → label) with the same model family, recipe and
budget; for an example, PVI(x → y) = −log₂ g′(∅)[y] + log₂ g(x)[y], and the task's V-information is the mean PVI.
Every example's PVI is out of fold: the passages are dealt into K folds; g and g′ trained on K−1 folds estimate the
K-th.

Tasks (the MRC model with only that loss switched on):
  * span      g(x)[y] = p_start(s)·p_end(e) of the gold answer's first and last token, best over the gold answers and
              the windows holding them; null input: the question replaced by a content-free placeholder (the
              labels are positions in the passage, so the passage stays).
  * support   per sentence, p(label) with p = the mean support probability of its tokens (as in prediction); the
              question's PVI is the mean over its sentences; null input as for span.
  * category  log₂ g(x)[y] = Σ_c log₂ p_c^{y_c}(1 − p_c)^{1 − y_c} over the gold set y (``mrc.categories``), p the mean
              over the windows; null input: question and passage replaced by the placeholder.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field

from kgutil.cli import set_dotted
from kgutil.device import resolve_device
from kgutil.io import atomic_write_text
from kgutil.stats import t_interval
from mrc.categories import CategoryLabels, attach_labels, gold_set
from mrc.data import Example, read_dataset, sentence_spans
from mrc.features import FeatureConfig, answer_tokens, prepare_features
from mrc.inference import predict_features
from mrc.model import load_model
from mrc.postprocess import WindowOutputs
from mrc.train import SplitConfig, TrainConfig, split_passages, train_mrc, write_squad

log = logging.getLogger(__name__)

Task = Literal["span", "support", "category"]
NULL = "？"  # the content-free placeholder of a null input
FLOOR = 1e-12  # probabilities are clipped here before the log


class PVIConfig(BaseModel):
    """``scripts/pvi.py`` settings: the task, the data, the folds and the training recipe of g and g′."""

    model_config = ConfigDict(extra="forbid")

    task: Task
    data: list[Path] = Field(min_length=1)
    categories: Path | None = Field(None, description="category labels (the category task)")
    out: Path = Path("pvi")
    folds: int = Field(5, ge=2, description="every example is estimated by models that did not see its passage")
    run_folds: list[int] | None = Field(None, description="only these folds (one process per fold: they share OUT); "
                                                          "the figures are written once every fold is estimated")
    split_seed: int = 0
    training: dict[str, Any] = Field(default_factory=dict, description="TrainConfig fields of g and g′ (the "
                                                                       "recipe of record by default)")
    eval_batch_size: int = Field(16, ge=1)


def task_settings(task: Task) -> dict[str, Any]:
    """The loss weights (and selection) that train only ``task``; the category task trains on every window (its
    null inputs hold no answer)."""
    return {"span": {"model.answer_weight": 1.0, "model.support_weight": 0.0, "selection": "f1"},
            "support": {"model.answer_weight": 0.0, "model.support_weight": 1.0, "selection": "support_f1"},
            "category": {"model.answer_weight": 0.0, "model.support_weight": 0.0, "negative_windows": 1.0,
                         "selection": "category_macro_f1"}}[task]


def null_examples(examples: Sequence[Example], task: Task) -> list[Example]:
    """The null inputs: the question (and, for categories, the passage) replaced by the placeholder."""
    if task != "category":
        return [e.model_copy(update={"question": NULL}) for e in examples]
    return [e.model_copy(update={"question": NULL, "context": NULL, "answers": [], "gold_texts": [], "support": None,
                                 "is_impossible": True}) for e in examples]


def label_log2_probs(model: Any, tokenizer: Any, examples: Sequence[Example], task: Task, features: FeatureConfig,
                     batch_size: int = 16, device: torch.device | None = None) -> dict[str, list[float]]:
    """log₂ g(x)[y] per example (one value; per sentence for support); examples without a label are left out."""
    device = device or next(model.parameters()).device
    feats = prepare_features(list(examples), tokenizer, features)
    model.attach_inputs(feats, list(examples), tokenizer)
    out = predict_features(model, feats, tokenizer.pad_token_id, batch_size, device)
    windows: dict[int, list[int]] = {}
    for i, f in enumerate(feats):
        windows.setdefault(f.example_index, []).append(i)
    found: dict[str, list[float]] = {}
    for k, ex in enumerate(examples):
        value = _SCORERS[task](ex, [feats[i] for i in windows.get(k, [])], out, windows.get(k, []), model)
        if value is not None:
            found[ex.id] = value
    return found


def _span(ex: Example, feats: list[Any], out: WindowOutputs, ids: list[int], model: Any) -> list[float] | None:
    best = -math.inf
    for f, i in zip(feats, ids):
        log_start = torch.log_softmax(torch.from_numpy(out.starts[i]), -1).numpy()
        log_end = torch.log_softmax(torch.from_numpy(out.ends[i]), -1).numpy()
        for a in ex.answers:
            s, e = answer_tokens(f.offsets, a.start, a.end)
            if s > 0:
                best = max(best, float(log_start[s] + log_end[e]))
    return None if best == -math.inf else [best / math.log(2)]


def _support(ex: Example, feats: list[Any], out: WindowOutputs, ids: list[int], model: Any) -> list[float] | None:
    if ex.support is None:
        return None
    spans = sentence_spans(ex.context)
    probs: dict[int, list[float]] = {}
    for f, i in zip(feats, ids):
        for j, o in enumerate(f.offsets):
            if o is not None and o[1] > o[0]:
                probs.setdefault(o[0], []).append(float(out.supports[i][j]))
    values = []
    for s, (a, b) in enumerate(spans):
        chars = [p for c in range(a, b) for p in probs.get(c, ())]
        if not chars:
            continue
        p = float(np.clip(np.mean(chars), FLOOR, 1 - FLOOR))
        values.append(math.log2(p if s in ex.support else 1 - p))
    return values or None


def _category(ex: Example, feats: list[Any], out: WindowOutputs, ids: list[int], model: Any) -> list[float] | None:
    if not ex.categories or out.categories is None or not ids:
        return None
    p = np.clip(np.mean([out.categories[i] for i in ids], axis=0), FLOOR, 1 - FLOOR)
    gold = gold_set(ex.categories)
    y = np.array([c in gold for c in model.config.categories], dtype=float)
    return [float(np.sum(y * np.log2(p) + (1 - y) * np.log2(1 - p)))]


_SCORERS = {"span": _span, "support": _support, "category": _category}


def pvi_values(with_input: dict[str, list[float]], null: dict[str, list[float]]) -> dict[str, float]:
    """PVI per example: the mean over its parts (sentences) of log₂ g(x)[y] − log₂ g′(∅)[y]."""
    return {q: float(np.mean(np.array(v) - np.array(null[q]))) for q, v in with_input.items()
            if q in null and len(null[q]) == len(v)}


def v_information(values: Sequence[float]) -> dict[str, Any]:
    """Mean PVI with its 95% t-interval."""
    arr = np.asarray(values, dtype=float)
    return {"examples": len(arr), "v_information": round(float(arr.mean()), 4),
            "ci95": [round(x, 4) for x in t_interval(arr)], "std": round(float(arr.std(ddof=1)), 4)
            if len(arr) > 1 else 0.0}


def compute_pvi(config: PVIConfig) -> dict[str, Any]:
    """Train g and g′ per fold, estimate every example out of fold; write ``OUT/pvi.jsonl`` (id, pvi, log₂ g,
    log₂ g′), ``OUT/summary.json`` and ``OUT/histogram.png``. A fold's estimates are kept
    (``OUT/runs/{g,null}_fold{k}/log2.json``, with the training settings) and reused while the settings match; the
    figures wait until every fold has them (the summary then says which folds are missing)."""
    examples = [e for path in config.data for e in read_dataset(path)]
    if config.task == "category":
        if config.categories is None:
            raise ValueError("the category task needs categories (a labels file from scripts/label_categories.py)")
        attach_labels(examples, CategoryLabels.read(config.categories))
    out = config.out
    out.mkdir(parents=True, exist_ok=True)
    for fold in config.run_folds if config.run_folds is not None else range(config.folds):
        if not 0 <= fold < config.folds:
            raise ValueError(f"fold {fold} is not one of the {config.folds} folds")
        part = split_passages(examples, SplitConfig(folds=config.folds, fold=fold, validation_share=0.0,
                                                    seed=config.split_seed))
        for kind, train_part, held in (("g", part.train, part.test),
                                       ("null", null_examples(part.train, config.task),
                                        null_examples(part.test, config.task))):
            run = out / "runs" / f"{kind}_fold{fold}"
            train_config = _training(config, run)
            settings = train_config.model_dump(mode="json")
            if _kept_estimates(run, settings) is not None:
                continue
            write_squad(train_part, run / "train_data.json")
            train_mrc(train_config)
            model, tokenizer, _ = load_model(run / "model" / "best")
            model.to(resolve_device(train_config.device))
            logs = label_log2_probs(model, tokenizer, held, config.task, train_config.features,
                                    config.eval_batch_size)
            atomic_write_text(run / "log2.json", json.dumps({"training": settings, "log2": logs}))
        log.info("PVI fold %d/%d done", fold + 1, config.folds)
    rows: dict[str, dict[str, Any]] = {}
    missing = []
    for fold in range(config.folds):
        for kind in ("g", "null"):
            run = out / "runs" / f"{kind}_fold{fold}"
            logs = _kept_estimates(run, _training(config, run).model_dump(mode="json"))
            if logs is None:
                missing.append(f"{kind}_fold{fold}")
                continue
            for q, v in logs.items():
                rows.setdefault(q, {"id": q, "fold": fold})["log2_g" if kind == "g" else "log2_g_null"] = v
    if missing:
        log.info("PVI: waiting for %s", ", ".join(missing))
        return {"task": config.task, "folds": config.folds, "missing": missing}
    pvi = pvi_values({q: r["log2_g"] for q, r in rows.items() if "log2_g" in r},
                     {q: r["log2_g_null"] for q, r in rows.items() if "log2_g_null" in r})
    lines = [json.dumps({**rows[q], "pvi": round(v, 5)}, ensure_ascii=False) for q, v in pvi.items()]
    atomic_write_text(out / "pvi.jsonl", "\n".join(lines) + "\n")
    summary = {"task": config.task, "folds": config.folds, **v_information(list(pvi.values())),
               "data": [str(p) for p in config.data]}
    atomic_write_text(out / "summary.json", json.dumps(summary, ensure_ascii=False, indent=2))
    plot_histogram(list(pvi.values()), f"PVI, task {config.task}", out / "histogram.png")
    return summary


def _kept_estimates(run: Path, settings: dict[str, Any]) -> dict[str, list[float]] | None:
    """The log₂-probabilities a fold's model left in ``run/log2.json``, if it was trained with ``settings``."""
    file = run / "log2.json"
    if not file.exists():
        return None
    kept = json.loads(file.read_text(encoding="utf-8"))
    return kept["log2"] if kept.get("training") == settings else None


def _training(config: PVIConfig, run: Path) -> TrainConfig:
    """g's (or g′'s) training config: the recipe with only the task's loss, on the fold's training passages."""
    data = json.loads(json.dumps(config.training, default=str))
    for key, value in task_settings(config.task).items():
        set_dotted(data, key, value)
    data.update(train=[str(run / "train_data.json")], out=str(run / "model"), validation=None)
    set_dotted(data, "split.validation_share", 0.0)
    set_dotted(data, "split.fold", None)
    if config.task == "category":
        data["categories"] = str(config.categories)
    return TrainConfig.model_validate(data)


def plot_histogram(values: Sequence[float], title: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.hist(values, bins=40, color="tab:blue", alpha=0.8)
    ax.axvline(float(np.mean(values)), color="tab:red", lw=1, label=f"mean {np.mean(values):.3f}")
    ax.set_xlabel("PVI (bits)")
    ax.set_ylabel("examples")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
