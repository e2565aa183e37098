"""Every shipped config file validates against the pydantic model of the script that reads it."""

from __future__ import annotations

from pathlib import Path

import pytest

from fusion.cmedbert import FusionConfig
from kg.build import BuildConfig
from kgutil.cli import read_config_file
from kg.embeddings import EmbeddingConfig
from mrc.crossval import CVConfig, run_config
from mrc.train import TrainConfig

CONFIGS = Path(__file__).resolve().parent.parent / "configs"


def named_for(path: Path, model: str) -> bool:
    """A KG-embedding config is named MODEL.yaml or MODEL_VARIANT.yaml."""
    return path.stem == model or path.stem.startswith(f"{model}_")


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("kg/*.yaml")), ids=lambda p: p.name)
def test_kg_configs(path: Path) -> None:
    BuildConfig.model_validate(read_config_file(path))


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("emb/*.yaml")), ids=lambda p: p.name)
def test_embedding_configs(path: Path) -> None:
    config = EmbeddingConfig.model_validate({**read_config_file(path), "kg": "snapshot", "out": "emb"})
    assert named_for(path, config.model)


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("tune/*.yaml")), ids=lambda p: p.name)
def test_tuning_configs(path: Path) -> None:
    from kg.embeddings.tune import TuneConfig

    config = TuneConfig.model_validate({**read_config_file(path), "kg": "snapshot", "out": "study"})
    assert named_for(path, config.embedding_config().model)


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("mrc/*.yaml")), ids=lambda p: p.name)
def test_mrc_configs(path: Path) -> None:
    config = TrainConfig.model_validate(read_config_file(path))
    assert config.model.model_type == path.stem
    FusionConfig.model_validate(config.model.fusion)


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("cv/*.yaml")), ids=lambda p: p.name)
def test_cross_validation_configs(path: Path) -> None:
    config = CVConfig.model_validate(read_config_file(path))
    assert config.reference in config.variants
    for variant in config.variants:  # every run's training config validates before anything trains
        run = run_config(config, variant, fold=config.folds - 1, seed=config.seeds[0])
        FusionConfig.model_validate(run.model.fusion)
        if config.test is not None:  # a held-out test file instead of folds
            assert run.test == config.test and run.split.fold is None
        else:
            assert run.split.fold == config.folds - 1 and run.split.folds == config.folds


def test_recipe_of_record_is_the_default() -> None:
    config = TrainConfig()
    assert (config.epochs, config.lr, config.negative_windows, config.model.support_weight) == (8, 1e-4, 0.3, 0.25)
    assert (config.features.max_seq_length, config.features.doc_stride, config.intermediate.epochs) == (384, 128, 1)
    assert config.split.fold is None and config.split.validation_share > 0  # selection never on reported data
    # naming any other model setting keeps the recipe's λ (it once fell back to 1.0 when a variant set model.x)
    for model in ({"model_type": "cmedbert"}, {"category_weighting": "positive"}):
        assert TrainConfig.model_validate({"model": model}).model.support_weight == 0.25
    # naming one window setting keeps the recipe's others (a stride alone once brought 512-token windows)
    assert TrainConfig.model_validate({"features": {"doc_stride": 64}}).features.max_seq_length == 384


def test_one_intermediate_stage_serves_every_variant() -> None:
    """Open-domain data has no support labels: the stage's identity ignores the medical run's model settings."""
    from mrc.train import stage_settings

    config = CVConfig.model_validate(read_config_file(CONFIGS / "cv" / "answer_categories.yaml"))
    assert len({stage_settings(run_config(config, v, 0, 1))[1] for v in config.variants}) == 1


def test_every_config_is_covered() -> None:
    assert {p.parent.name for p in CONFIGS.rglob("*.yaml")} == {"kg", "emb", "tune", "mrc", "cv"}


def test_family_settings_are_validated_when_the_config_is_read() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="loopz"):
        TrainConfig.model_validate({"model": {"model_type": "cmedbert", "fusion": {"loopz": 3}}})
    with pytest.raises(ValidationError, match="unknown model type 'bert'; registered: baseline, cmedbert"):
        TrainConfig.model_validate({"model": {"model_type": "bert"}})
    with pytest.raises(ValidationError, match="takes no fusion settings"):
        TrainConfig.model_validate({"model": {"model_type": "baseline", "fusion": {"loops": 2}}})
    assert TrainConfig.model_validate({"model": {"model_type": "cmedbert", "fusion": {"loops": 3}}}).model.fusion[
        "loops"] == 3


def test_mrc_imports_neither_fusion_nor_pykeen() -> None:
    import subprocess
    import sys

    code = ("import sys, mrc.train, mrc.inference, mrc.predict, mrc.crossval, mrc.html\n"
            "from mrc.registry import family_names\nassert family_names() == ['baseline', 'cmedbert']\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('fusion', 'pykeen')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
