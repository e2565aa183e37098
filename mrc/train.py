"""Training and evaluation of MRC models: one entry point, ``train_mrc(config)``.

The defaults are the recipe of record (``TrainConfig``; configs only name data and outputs): an intermediate
stage on open-domain CMRC 2018 (1 epoch), then 8 epochs on the medical data, lr 1e-4 with 10% warm-up, 30% of
answerless windows kept, λ = 0.25, windows of 384 tokens with stride 128, fp32. ``intermediate.mix`` interleaves the
stage's questions with the medical ones instead (``mix_schedule``).
Data: the training files are split by passage (never by question) into train, validation and, for
cross-validation, a test fold (``SplitConfig``); the parts are written to OUT as SQuAD-layout JSON. Each epoch:
train, evaluate on validation, tune the post-processing there (the sentence weight w of the answer's rescoring,
then the support threshold τ: ``mrc.postprocess``), keep the best model (``OUT/best``) by answer F1. The test part
(a fold, or a separate ``test`` file) chose nothing: it is scored once, at the end, with the chosen model, w and τ
(``OUT/test_metrics.json``, per question in ``OUT/test_scores.json``). ``OUT/checkpoint`` allows resuming.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import random
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pydantic_core
import torch
from pydantic import BaseModel, ConfigDict, Field
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

from kgutil.distributed import Dist, setup
from kgutil.checkpoint import load_checkpoint, save_checkpoint
from kgutil.io import atomic_write_text
from mrc.categories import CategoryLabels, attach_labels, class_weights, gold_set
from mrc.data import Example, read_dataset, read_pvi
from mrc.features import FeatureConfig, prepare_features
from mrc.inference import autocast, collate, evaluate_model, evaluate_saved_model
from mrc.metrics import MetricChoice
from mrc.model import BaselineMRC, ModelConfig, build_model, load_model, save_model
from mrc.postprocess import SENTENCE_WEIGHTS
from mrc.registry import model_class

log = logging.getLogger(__name__)


class SplitConfig(BaseModel):
    """How the training files are split by passage. The split has its own seed, so every training seed and
    every variant sees the same folds; ``fold`` None trains on all non-validation passages (a final model)."""

    model_config = ConfigDict(extra="forbid")

    folds: int = Field(5, ge=2, description="K of K-fold cross-validation")
    fold: int | None = Field(None, ge=0, description="the fold held out as the test part (None: no test part)")
    validation_share: float = Field(0.1, ge=0, lt=1, description="share of the non-test passages for selection")
    seed: int = Field(0, description="shuffles the passages before they are dealt into folds")


class IntermediateConfig(BaseModel):
    """A first stage on other MRC data (open-domain CMRC 2018 by default) with the same recipe."""

    model_config = ConfigDict(extra="forbid")

    data: list[Path] = Field(default_factory=lambda: [Path("../shared/data/cmrc2018/cmrc2018_dev.json"),
                                                      Path("../shared/data/cmrc2018/cmrc2018_trial.json")])
    epochs: int = Field(1, ge=0, description="0 skips the stage")
    seed: int = Field(1, description="the stage's own seed: one intermediate model serves every training seed")
    cache: Path | None = Field(None, description="keep the stage's model under here (a subdirectory per stage "
                                                 "setting) and reuse it when the settings match (default "
                                                 "OUT/intermediate)")
    mix: bool = Field(False, description="spread the stage's questions over the medical epochs instead of training "
                                         "them first: its epochs are passes over them, cut into one share per "
                                         "medical epoch (the stage's steps, interleaved); validation and test stay "
                                         "medical")


class TrainConfig(BaseModel):
    """``scripts/train_mrc.py`` settings; the defaults are the recipe of record (see the module docstring)."""

    model_config = ConfigDict(extra="forbid")

    model: ModelConfig = Field(default_factory=ModelConfig)
    encoder: str = Field("../shared/models/m3e-small", description="Hugging Face encoder name or path")
    init_from: Path | None = Field(None, description="start from this kgmrc model directory (no intermediate stage)")
    intermediate: IntermediateConfig = Field(default_factory=IntermediateConfig)
    train: list[Path] = Field(default_factory=list)
    validation: Path | None = Field(None, description="a validation file instead of a validation share")
    test: Path | None = Field(None, description="a test file instead of a test fold (split.fold): scored once with "
                                                "the epoch and τ chosen on validation")
    split: SplitConfig = Field(default_factory=SplitConfig)
    out: Path = Path("runs/mrc")
    seed: int = 1
    features: FeatureConfig = Field(default_factory=FeatureConfig)
    epochs: int = Field(8, ge=0, description="medical epochs; the best on validation is kept (8: recipe search, "
                        "validation F1 of folds 0 and 1)")
    batch_size: int = Field(8, ge=1)
    eval_batch_size: int = Field(16, ge=1)
    grad_accum: int = Field(1, ge=1)
    lr: float = Field(1e-4, gt=0)
    head_lr: float | None = Field(None, description="learning rate of the non-encoder parameters (default lr)")
    knowledge_lr: float | None = Field(None, gt=0, description="learning rate of the layers a model family adds to "
                                       "the baseline (CMedBERT: entity projection, attentions, gate, merge, dynamic "
                                       "λ; default head_lr): new layers, some starting at zero, move little at the "
                                       "encoder's rate")
    category_lr: float | None = Field(1e-3, gt=0, description="learning rate of the answer-category head (None: "
                                      "head_lr): it starts fresh beside heads trained for spans, and at the encoder's "
                                      "rate stays at the label prior (one-fold screening, README)")
    warmup_ratio: float = Field(0.1, ge=0, lt=1)
    weight_decay: float = 0.01
    max_grad_norm: float = 1.0
    negative_windows: float = Field(0.3, ge=0, le=1, description="share of answerless windows kept for training")
    max_answer_length: int = Field(100, ge=1, description="characters")
    n_best: int = 20
    support_threshold: float = Field(0.5, ge=0, le=1, description="τ of a run without validation (tuned on "
                                                                 "validation otherwise)")
    sentence_weights: list[float] = Field(
        default_factory=lambda: list(SENTENCE_WEIGHTS), min_length=1,
        description="grid of the sentence weight w (answer = n-best candidate maximising score + w·log p̄ of its "
                    "sentence), chosen on validation before τ; [0] keeps the top-scoring span; a run without "
                    "validation takes the first value")
    max_train_examples: int | None = None
    max_eval_examples: int | None = None
    device: str = "auto"
    precision: Literal["fp32", "bf16", "fp16"] = Field(
        "fp32", description="bf16 = bfloat16 autocast of forward passes (CPUs with AVX512-BF16/AMX, Ampere+ GPUs); "
                            "fp16 = float16 autocast with a gradient scaler (CUDA)")
    resume: bool = True
    stop_after_epoch: int | None = Field(None, ge=1, description="stop after this epoch as an interruption would "
                                                                 "(a later run with resume goes on)")
    progress: bool = True
    answer_policy: Literal["repair", "strict"] = "repair"
    metric: MetricChoice = Field("auto", description="auto: CMRC 2018 for Chinese data, SQuAD for English")
    categories: Path | None = Field(None, description="answer-category labels file (scripts/label_categories.py): "
                                                      "adds the category head and scores categories")
    category_oversample: bool = Field(False, description="repeat the windows of questions in rare categories "
                                                         "round(max w_c) times (at most 4)")
    pvi: Path | None = Field(None, description="per-example PVI (scripts/pvi.py, pvi.jsonl): training questions "
                                               "below pvi_threshold are left out (likely label errors)")
    pvi_threshold: float = Field(0.0, description="bits")
    selection: Literal["f1", "support_f1", "category_macro_f1", "tasks"] = Field(
        "f1", description="validation figure that chooses the epoch (answer F1; support F1 or category macro F1 "
                          "for models trained without the span loss; tasks: the mean of the figures of every task "
                          "the model trains)")


_CATEGORY_SETTINGS = ("category_lr", "category_oversample")
_CATEGORY_MODEL_SETTINGS = ("category_weight", "category_hidden", "category_pooling", "category_class_weights",
                            "category_weighting")
FINGERPRINT_DEFAULTS = json.loads(Path(__file__).with_name("fingerprint_defaults.json").read_text(encoding="utf-8"))


def fingerprint(config: TrainConfig, exclude: set[str] = frozenset()) -> str:
    """Identity of a config's settings, minus ``exclude``: the settings that differ from the recipe frozen in
    ``fingerprint_defaults.json`` (the defaults when fingerprints began; never change an entry: a setting added
    since gets one, with its first default, when that default changes), and of settings added since, those that
    differ from their defaults; a model family's own settings (``model.fusion``) likewise, against the family's
    ``frozen_settings`` and its current defaults. Changing a default therefore changes the fingerprint of the runs
    that use the new value and of no recorded run; adding a setting with a default changes none. The category
    head's settings count only for runs that have the head."""
    data = config.model_dump(mode="json", exclude=set(exclude))
    if config.categories is None and not config.model.categories:
        for key in _CATEGORY_SETTINGS:
            data.pop(key, None)
        for key in _CATEGORY_MODEL_SETTINGS:
            data.get("model", {}).pop(key, None)
    frozen, current = FINGERPRINT_DEFAULTS, type(config)().model_dump(mode="json")
    family = model_class(config.model.model_type)
    if family.settings is not None and "model" in data:
        frozen = {**frozen, "model": {**frozen["model"], "fusion": family.frozen_settings}}
        current = {**current, "model": {**current["model"],
                                        "fusion": family.settings().model_dump(mode="json")}}
    return pydantic_core.to_json(_differences(data, frozen, current)).decode()


def _differences(data: dict[str, Any], frozen: dict[str, Any], current: dict[str, Any]) -> dict[str, Any]:
    """The entries of ``data`` that differ from ``frozen`` (or, where ``frozen`` lacks the key, from ``current``),
    recursing into nested settings (dicts whose reference is a non-empty dict)."""
    out = {}
    for key, value in data.items():
        reference = frozen[key] if key in frozen else current.get(key)
        if isinstance(value, dict) and isinstance(reference, dict) and reference:
            if nested := _differences(value, frozen.get(key, {}), current.get(key, {})):
                out[key] = nested
        elif value != reference:
            out[key] = value
    return out


@dataclass
class TrainResult:
    best_metrics: dict[str, Any]
    history: list[dict[str, Any]]
    out: Path
    test_metrics: dict[str, Any] | None = None


@dataclass
class Split:
    train: list[Example]
    validation: list[Example]
    test: list[Example]
    mixed: list[Example] = field(default_factory=list)  # the intermediate stage's questions, under intermediate.mix


def split_passages(examples: list[Example], config: SplitConfig) -> Split:
    """Passages shuffled with ``config.seed`` and dealt round-robin into ``folds`` folds; fold ``fold`` is the test
    part; of the rest, the first ``validation_share`` (shuffled again, per fold) validates. Never splits a passage."""
    passages = sorted({e.passage_id for e in examples})
    random.Random(config.seed).shuffle(passages)
    if config.fold is not None and config.fold >= config.folds:
        raise ValueError(f"split.fold {config.fold} is not one of the {config.folds} folds")
    test = set() if config.fold is None else set(passages[config.fold::config.folds])
    rest = [p for p in passages if p not in test]
    random.Random(f"{config.seed}/{config.fold}").shuffle(rest)
    validation = set(rest[: round(config.validation_share * len(rest))])
    part = lambda ids: [e for e in examples if e.passage_id in ids]  # noqa: E731
    return Split(train=[e for e in examples if e.passage_id not in test | validation], validation=part(validation),
                 test=part(test))


def sample_passages(examples: Sequence[Example], count: int, seed: int = 0) -> tuple[list[Example], list[Example]]:
    """(sample, rest): the questions of ``count`` distinct passage texts drawn with ``random.Random(seed)`` from
    the sorted texts, and the others. By text, so passages repeated under several ids fall on one side."""
    texts = sorted({e.context for e in examples})
    if not 0 < count < len(texts):
        raise ValueError(f"cannot draw {count} of {len(texts)} distinct passages (0 < count < {len(texts)})")
    chosen = set(random.Random(seed).sample(texts, count))
    return [e for e in examples if e.context in chosen], [e for e in examples if e.context not in chosen]


def write_squad(examples: Sequence[Example], path: Path) -> None:
    """Examples as a SQuAD-layout file (CMedMRC fields kept: 1-based support, question/context types)."""
    paragraphs: dict[str, dict[str, Any]] = {}
    for e in examples:
        para = paragraphs.setdefault(e.passage_id, {"id": e.passage_id, "context": e.context, "qas": []})
        qa: dict[str, Any] = {"id": e.id, "question": e.question,
                              "answers": [{"text": a.text, "answer_start": a.start} for a in e.answers]}
        if e.support is not None:
            qa["support sentence"] = ",".join(str(s + 1) for s in e.support)
        if e.is_impossible:
            qa["is_impossible"] = True
        for key, value in (("question type", e.question_type), ("context type", e.context_type)):
            if value:
                qa[key] = value
        para["qas"].append(qa)
    data = {"version": "kgmrc", "data": [{"title": pid, "paragraphs": [p]} for pid, p in paragraphs.items()]}
    atomic_write_text(path, json.dumps(data, ensure_ascii=False))


def load_examples(config: TrainConfig) -> Split:
    """The training files split by passage (or with the separate validation file), ready to train."""
    examples = [e for path in config.train for e in read_dataset(path, answer_policy=config.answer_policy)]
    if config.validation is not None:
        split = split_passages(examples, config.split.model_copy(update={"validation_share": 0.0}))
        split.validation = read_dataset(config.validation, answer_policy=config.answer_policy)
    else:
        split = split_passages(examples, config.split)
    if config.test is not None:
        if config.split.fold is not None:
            raise ValueError(f"test file {config.test} and split.fold {config.split.fold} both name a test part; "
                             "give one")
        split.test = read_dataset(config.test, answer_policy=config.answer_policy)
        if shared := {e.context for e in split.test} & {e.context for e in examples}:
            log.warning("%d passages of the test file %s are also in the training files: their questions do not "
                        "measure unseen passages", len(shared), config.test)
    unusable = [e for e in split.train if not e.answers and not e.is_impossible]
    if unusable:  # answerable questions whose answers are not in the passage cannot be labelled
        log.warning("%d training questions have no answer inside their passage; left out of training",
                    len(unusable))
        split.train = [e for e in split.train if e.answers or e.is_impossible]
    if config.pvi is not None:
        values = read_pvi(config.pvi)
        kept = [e for e in split.train if values.get(e.id, math.inf) >= config.pvi_threshold]
        log.info("PVI filter: %d of %d training questions below %.2f bits left out", len(split.train) - len(kept),
                 len(split.train), config.pvi_threshold)
        split.train = kept
    if config.max_train_examples is not None:
        split.train = split.train[: config.max_train_examples]
    if config.max_eval_examples is not None:
        split.validation = split.validation[: config.max_eval_examples]
    stage = config.intermediate
    if stage.mix and stage.epochs and config.epochs and config.init_from is None:
        split.mixed = [e for path in _stage_data(stage) for e in read_dataset(path, answer_policy=config.answer_policy)
                       if e.answers or e.is_impossible]
        log.info("mixing %d intermediate questions into the medical epochs (%d pass(es))", len(split.mixed),
                 stage.epochs)
    if config.categories is not None:
        labels = CategoryLabels.read(config.categories)
        for part in (split.validation, split.test):
            attach_labels(part, labels)
        log.info("answer categories %s from %s; %d of %d training questions labelled", labels.categories,
                 config.categories, attach_labels(split.train, labels), len(split.train))
    return split


def with_categories(config: TrainConfig, train: Sequence[Example]) -> ModelConfig:
    """The model settings, with the categories of the labels file and class weights from the training labels."""
    if config.categories is None:
        return config.model
    names = CategoryLabels.read(config.categories).categories
    if config.model.categories and config.model.categories != names:
        raise ValueError(f"model.categories {config.model.categories} differ from those of {config.categories} "
                         f"({names})")
    vectors = [[e.categories.get(c, 0.0) for c in names] for e in train if e.categories is not None]
    return config.model.model_copy(update={"categories": names,
                                           "category_class_weights": class_weights(vectors, len(names))})


def category_repeats(example: Example, model: ModelConfig, limit: int = 4) -> int:
    """How often the windows of ``example`` are trained per epoch under oversampling: round(max_{c ∈ gold} w_c),
    between 1 and ``limit``."""
    if not example.categories:
        return 1
    weights = dict(zip(model.categories, model.category_class_weights))
    top = max((weights.get(c, 1.0) for c in gold_set(example.categories)), default=1.0)
    return int(min(limit, max(1, round(top))))


def init_from(path: Path, config: ModelConfig) -> tuple[BaselineMRC, Any]:
    """Start from a saved model. When the settings differ (another family, an added category head, other loss
    weights) a model of ``config`` is built on the saved encoder and takes every saved weight whose name and shape
    it shares (encoder, span and support heads, …); its other layers start fresh."""
    loaded, tokenizer, _ = load_model(path)
    if loaded.config == config:
        return loaded, tokenizer
    model = model_class(config.model_type)(loaded.encoder, config)
    own = model.state_dict()
    carried = {k: v for k, v in loaded.state_dict().items() if k in own and own[k].shape == v.shape}
    model.load_state_dict(carried, strict=False)
    fresh = sorted({k.split(".")[0] for k in own if k not in carried})
    log.info("initialised a %s model from %s (%s model); fresh: %s", config.model_type, path,
             loaded.config.model_type, ", ".join(fresh) or "nothing")
    return model, tokenizer


def _lr_factor(step: int, total: int, warmup: int) -> float:
    """Linear warm-up to 1, then linear decay to 0."""
    if step < warmup:
        return (step + 1) / max(1, warmup)
    return max(0.0, (total - step) / max(1, total - warmup))


_RUN_ONLY = {"epochs", "resume", "progress", "out", "device", "precision", "eval_batch_size", "max_eval_examples",
             "stop_after_epoch"}


# The stage's model is the model of the frozen defaults, not of ModelConfig's current ones: a medical run's hash does not
# hold its stage, so a model default changed later (question_boundary, support_weight) must not change the stage that
# recorded runs started from.
STAGE_MODEL = ModelConfig.model_validate(FINGERPRINT_DEFAULTS["model"])


def stage_settings(config: TrainConfig) -> tuple[TrainConfig, str]:
    """The intermediate stage's training config (the recipe on the stage's data, with the plain baseline model
    ``STAGE_MODEL``: open-domain data has no support labels, so the medical run's loss weights, heads and family do
    not apply) and its fingerprint, which decides whether a kept stage model can be reused."""
    stage = config.intermediate
    stage_config = config.model_copy(update={
        "train": list(stage.data), "validation": None,
        "epochs": stage.epochs, "seed": stage.seed, "intermediate": IntermediateConfig(epochs=0),
        "model": STAGE_MODEL, "split": SplitConfig(validation_share=0.0),
        "max_train_examples": None, "categories": None, "selection": "f1", "pvi": None, "knowledge_lr": None,
        "sentence_weights": [0.0]})  # no validation: nothing to tune
    stage_id = fingerprint(stage_config, _RUN_ONLY - {"epochs"})
    # one directory per stage setting: runs whose stages differ (e.g. in lr) never overwrite each other's model
    out = (stage.cache or config.out / "intermediate") / hashlib.sha256(stage_id.encode()).hexdigest()[:12]
    return stage_config.model_copy(update={"out": out}), stage_id


def _stage_data(stage: IntermediateConfig) -> list[Path]:
    missing = [str(p) for p in stage.data if not Path(p).is_file()]
    if missing:
        raise ValueError(f"intermediate training data not found: {', '.join(missing)} "
                         "(set intermediate.data, or --intermediate-epochs 0 to skip the stage)")
    return list(stage.data)


def mix_schedule(count: int, passes: int, epochs: int, seed: int) -> list[Counter[int]]:
    """Which of ``count`` mixed-in questions each of ``epochs`` epochs trains, and how often: ``passes`` shuffled
    passes over them, concatenated and cut into ``epochs`` consecutive shares of equal size (±1). Every question is
    trained ``passes`` times in all, as in a stage of ``passes`` epochs."""
    rng, sequence = random.Random(seed), []
    for _ in range(passes):
        order = list(range(count))
        rng.shuffle(order)
        sequence += order
    bounds = [round(e * len(sequence) / epochs) for e in range(epochs + 1)]
    return [Counter(sequence[a:b]) for a, b in zip(bounds, bounds[1:])]


def intermediate_stage(config: TrainConfig, ctx: Dist) -> Path | None:
    """Train (or reuse) the intermediate model; returns its directory, or None when there is no such stage."""
    stage = config.intermediate
    if stage.epochs == 0 or stage.mix or config.init_from is not None or config.epochs == 0:
        return None
    _stage_data(stage)
    stage_config, stage_id = stage_settings(config)
    out = stage_config.out
    marker = out / "best" / "stage.json"
    if marker.exists() and json.loads(marker.read_text(encoding="utf-8")).get("fingerprint") == stage_id:
        log.info("intermediate stage: reusing %s", out / "best")
        return out / "best"
    log.info("intermediate stage: %d epoch(s) on %s", stage.epochs, ", ".join(map(str, stage.data)))
    train_mrc(stage_config)
    if ctx.main:
        atomic_write_text(marker, json.dumps({"fingerprint": stage_id}))
    ctx.barrier()
    return out / "best"


def train_mrc(config: TrainConfig) -> TrainResult:
    """Intermediate stage, then train, select on validation, keep the best model and score the test part once;
    resumable from ``OUT/checkpoint``. Under ``torchrun --nproc_per_node N`` the N processes train data-parallel
    (``batch_size`` per process) and only the main one evaluates, logs and writes."""
    ctx = setup(config.device)
    out = config.out
    if ctx.main:
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out / "train_config.json", config.model_dump_json(indent=2))
    elif config.progress:
        config = config.model_copy(update={"progress": False})
    split = load_examples(config)
    stage_model = intermediate_stage(config, ctx)
    random.seed(config.seed)
    np.random.seed(config.seed)
    torch.manual_seed(config.seed)
    device = ctx.device
    if config.precision == "fp16" and device.type != "cuda":
        raise ValueError("fp16 needs a CUDA device; use --precision bf16 on a CPU")
    train_examples, held_out = split.train, split.validation
    if not train_examples and config.epochs:
        raise ValueError(f"no training questions left in {', '.join(map(str, config.train))} after the split and "
                         "filters")
    if ctx.main:
        for name, part in (("train", split.train), ("validation", split.validation), ("test", split.test)):
            if part:
                write_squad(part, out / f"{name}.json")
        log.info("train: %d questions on %d passages; validation: %d; test: %d; %d process(es)",
                 len(train_examples), len({e.passage_id for e in train_examples}), len(held_out), len(split.test),
                 ctx.world)
    model_config = with_categories(config, train_examples)
    train_examples = [*train_examples, *split.mixed]
    start_from = config.init_from or stage_model
    if start_from is not None:
        model, tokenizer = init_from(start_from, model_config)
    else:
        from transformers import AutoTokenizer

        model, tokenizer = build_model(config.encoder, model_config), AutoTokenizer.from_pretrained(config.encoder)
    model.to(device)
    train_features = prepare_features(train_examples, tokenizer, config.features)
    rng = random.Random(config.seed)
    train_features = [f for f in train_features if f.has_answer or rng.random() < config.negative_windows]
    if model_config.categories:
        for f in train_features:
            soft = train_examples[f.example_index].categories
            f.category = None if soft is None else [soft.get(c, 0.0) for c in model_config.categories]
        if config.category_oversample:
            train_features = [f for f in train_features
                              for _ in range(category_repeats(train_examples[f.example_index], model_config))]
    held_features = prepare_features(held_out, tokenizer, config.features) if held_out and ctx.main else []
    model.attach_inputs(train_features, train_examples, tokenizer)
    model.attach_inputs(held_features, held_out if ctx.main else [], tokenizer)

    optimizer = _optimizer(model, config)
    base_lrs = [g["lr"] for g in optimizer.param_groups]
    micro = config.batch_size * ctx.world  # examples of one forward pass over all processes
    per_step = micro * config.grad_accum  # examples of one optimiser step
    epoch_windows = _epoch_windows(train_features, len(split.train), len(split.mixed), config)
    total_steps = sum(math.ceil(len(w) / per_step) for w in epoch_windows)
    warmup = int(config.warmup_ratio * total_steps)
    run_id = fingerprint(config, _RUN_ONLY)
    start_epoch, step, history, best = 0, 0, [], None
    if config.resume and (state := load_checkpoint(out / "checkpoint", model, optimizer, run_id)):
        start_epoch, step, history, best = state["epoch"], state["step"], state["history"], state["best"]
        log.info("resumed from epoch %d (step %d)", start_epoch, step)
    # Some parameters may get no gradient in a step (the encoder's unused pooler; the support head on batches
    # without support labels; ablated fusion parts): DDP must be told to look for them.
    trained = DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None,
                                      find_unused_parameters=True) if ctx.world > 1 else model
    scaler = torch.amp.GradScaler("cuda") if config.precision == "fp16" else None
    last_epoch = min(config.epochs, config.stop_after_epoch or config.epochs)
    for epoch in range(start_epoch + 1, last_epoch + 1):
        model.train()
        torch.manual_seed(config.seed * 10_007 + epoch * 101 + ctx.rank)  # the same stream after a resume
        order = list(epoch_windows[epoch - 1])
        random.Random(config.seed * 1000 + epoch).shuffle(order)
        steps_per_epoch = math.ceil(len(order) / per_step)
        t0 = time.perf_counter()
        losses: defaultdict[str, list[float]] = defaultdict(list)  # the losses this model family reports
        bar = tqdm(range(steps_per_epoch), desc=f"epoch {epoch}/{config.epochs}", disable=not config.progress)
        log_every = max(1, steps_per_epoch // 10)  # without a bar, a log line every tenth of an epoch
        for k in bar:
            step_indices = order[k * per_step:(k + 1) * per_step]
            chunks = [step_indices[i:i + micro] for i in range(0, len(step_indices), micro)]
            for c, chunk in enumerate(chunks):
                mine, weight = ctx.shard(chunk, len(step_indices))
                batch = collate([train_features[j] for j in mine], tokenizer.pad_token_id, with_labels=True)
                sync = trained.no_sync() if ctx.world > 1 and c + 1 < len(chunks) else contextlib.nullcontext()
                with sync:
                    with autocast(device, config.precision):
                        output = trained(**{key: v.to(device) for key, v in batch.items()})
                    loss = output.loss * weight
                    (scaler.scale(loss) if scaler else loss).backward()
                losses["loss"].append(output.loss.item())
                losses["answer"].append(output.answer_loss.item())
                losses["support"].append(output.support_loss.item())
                losses["lambda"].append(float(output.support_weight))
                if output.category_loss is not None:
                    losses["category"].append(output.category_loss.item())
                if output.auxiliary_loss is not None:
                    losses["auxiliary"].append(output.auxiliary_loss.item())
            if scaler:
                scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.max_grad_norm)
            factor = _lr_factor(step, total_steps, warmup)
            for group, base in zip(optimizer.param_groups, base_lrs):
                group["lr"] = base * factor
            if scaler:
                scaler.step(optimizer)
                scaler.update()
            else:
                optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            bar.set_postfix(loss=f"{np.mean(losses['loss'][-20:]):.3f}")
            if ctx.main and not config.progress and (k + 1) % log_every == 0:
                log.info("epoch %d: step %d/%d, loss %.3f, %.0f s", epoch, k + 1, steps_per_epoch,
                         np.mean(losses["loss"][-log_every:]), time.perf_counter() - t0)
        record: dict[str, Any] = {"epoch": epoch, "seconds": round(time.perf_counter() - t0, 1),
                                  **{f"train_{k}": round(float(np.mean(v)), 4) for k, v in losses.items() if v}}
        if ctx.main:
            best = _end_of_epoch(model, tokenizer, config, held_out, held_features, record, best)
            history.append(record)
            save_checkpoint(out / "checkpoint", model, optimizer, run_id,
                            {"epoch": epoch, "step": step, "history": history, "best": best})
            atomic_write_text(out / "metrics.json", json.dumps({"best": best, "history": history},
                                                               ensure_ascii=False, indent=2))
        ctx.barrier()
    if last_epoch < config.epochs:
        log.info("stopped after epoch %d of %d; run again to resume", last_epoch, config.epochs)
        return TrainResult(best_metrics=best or {}, history=history, out=out)
    if ctx.main and not held_out:
        save_best(model, tokenizer, config, {"support_threshold": config.support_threshold,
                                             "sentence_weight": config.sentence_weights[0]},
                  {"epoch": last_epoch, "validation": None})
    test_metrics = score_test(config, split.test) if split.test and ctx.main else None
    ctx.barrier()
    return TrainResult(best_metrics=best or {}, history=history, out=out, test_metrics=test_metrics)


def _epoch_windows(features: Sequence[Any], medical: int, mixed: int, config: TrainConfig) -> list[list[int]]:
    """The training windows of each epoch (indexes into ``features``): every medical question's windows, and under
    ``intermediate.mix`` the windows of the epoch's share of the ``mixed`` questions (``mix_schedule``), which follow
    the ``medical`` ones in the example order."""
    every = list(range(len(features)))
    if not mixed:
        return [every] * config.epochs
    shares = mix_schedule(mixed, config.intermediate.epochs, config.epochs, config.intermediate.seed)
    question = [features[j].example_index - medical for j in every]  # < 0: a medical question's window
    return [[j for j in every for _ in range(1 if question[j] < 0 else share[question[j]])] for share in shares]


def _optimizer(model: BaselineMRC, config: TrainConfig) -> torch.optim.Optimizer:
    """AdamW over encoder weights (decayed), encoder biases and norms (not decayed), the span and support heads,
    the category head (``category_lr``) and the layers the model family adds to the baseline (``knowledge_lr``)."""
    head_lr = config.head_lr or config.lr
    added = tuple(f"{name}." for name in model.added_modules)
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    groups = [
        {"params": [p for n, p in named if n.startswith("encoder.") and p.ndim > 1], "lr": config.lr,
         "weight_decay": config.weight_decay},
        {"params": [p for n, p in named if n.startswith("encoder.") and p.ndim <= 1], "lr": config.lr,
         "weight_decay": 0.0},
        {"params": [p for n, p in named if not n.startswith(("encoder.", "category.", *added))], "lr": head_lr,
         "weight_decay": config.weight_decay},
        {"params": [p for n, p in named if n.startswith("category.")], "lr": config.category_lr or head_lr,
         "weight_decay": config.weight_decay},
        {"params": [p for n, p in named if n.startswith(added)], "lr": config.knowledge_lr or head_lr,
         "weight_decay": config.weight_decay},
    ]
    return torch.optim.AdamW([g for g in groups if g["params"]])


def _end_of_epoch(model: BaselineMRC, tokenizer: Any, config: TrainConfig, held_out: list[Example],
                  held_features: list[Any], record: dict[str, Any], best: dict[str, Any] | None
                  ) -> dict[str, Any] | None:
    """Evaluate on validation, tune w and τ there, and keep the model when its ``config.selection`` figure is the
    best so far."""
    if not held_out:
        return best
    metrics, predictions, tuned = evaluate_model(
        model, tokenizer, held_out, held_features, device=next(model.parameters()).device,
        batch_size=config.eval_batch_size, precision=config.precision, n_best=config.n_best,
        max_answer_length=config.max_answer_length, metric=config.metric,
        sentence_weights=config.sentence_weights, progress=config.progress)
    record["validation"] = metrics
    log.info("epoch %d: EM %.2f F1 %.2f support EM %.2f F1 %.2f (w=%g, τ=%.2f)", record["epoch"],
             metrics["overall"].get("em", 0), metrics["overall"].get("f1", 0),
             metrics["overall"].get("support_em", 0), metrics["overall"].get("support_f1", 0),
             tuned["sentence_weight"], tuned["support_threshold"])
    if best is not None and selection_score(metrics, config) <= selection_score(best, config):
        return best
    save_best(model, tokenizer, config, tuned, {"epoch": record["epoch"], "validation": metrics["overall"]})
    atomic_write_text(config.out / "predictions.json", json.dumps(
        {k: p.as_dict() for k, p in predictions.items()}, ensure_ascii=False, indent=1))
    return metrics


def save_best(model: BaselineMRC, tokenizer: Any, config: TrainConfig, tuned: dict[str, float],
              trained: dict[str, Any]) -> None:
    """``OUT/best``: the model with what inference reads (``tuned``: τ and w; windows, answer length) and how it
    was trained
    (``trained``: the epoch kept and its validation figures, plus the whole TrainConfig and the kgmrc version), so a
    copied model directory still says where it came from."""
    provenance = {**trained, "train_config": json.loads(config.model_dump_json()), "kgmrc": version("kgmrc")}
    save_model(model, tokenizer, config.out / "best", {
        **tuned, "features": json.loads(config.features.model_dump_json()),
        "max_answer_length": config.max_answer_length, "trained": provenance})


def selection_score(metrics: dict[str, Any], config: TrainConfig) -> float:
    """The validation figure that chooses the epoch: ``config.selection``, or for ``tasks`` the mean of answer F1
    (λ_A > 0), support F1 (λ > 0) and category macro F1 (with categories) — the figures of the tasks trained."""
    names = [config.selection]
    if config.selection == "tasks":
        names = [name for name, trained in (("f1", config.model.answer_weight > 0),
                                            ("support_f1", config.model.support_weight > 0),
                                            ("category_macro_f1", config.categories is not None)) if trained]
    return sum(_figure(metrics, name) for name in names) / max(len(names), 1)


def _figure(metrics: dict[str, Any], name: str) -> float:
    if name == "category_macro_f1":
        return metrics.get("categories", {}).get("macro_f1", 0.0)
    return metrics["overall"].get(name, 0.0)


def score_test(config: TrainConfig, test: list[Example]) -> dict[str, Any]:
    """Score ``OUT/best`` (chosen on validation, with its τ and w) once on the test part; per-question scores too."""
    metrics, predictions = evaluate_saved_model(config.out / "best", test, metric=config.metric,
                                                batch_size=config.eval_batch_size, device=config.device,
                                                per_question=True)
    scores = metrics.pop("questions")
    atomic_write_text(config.out / "test_metrics.json", json.dumps(metrics, ensure_ascii=False, indent=2))
    atomic_write_text(config.out / "test_scores.json", json.dumps(scores, ensure_ascii=False))
    atomic_write_text(config.out / "test_predictions.json", json.dumps(predictions, ensure_ascii=False, indent=1))
    log.info("test (chose nothing): EM %.2f F1 %.2f support EM %.2f F1 %.2f on %d questions",
             metrics["overall"].get("em", 0), metrics["overall"].get("f1", 0),
             metrics["overall"].get("support_em", 0), metrics["overall"].get("support_f1", 0), len(test))
    return {**metrics, "questions": scores}
