"""Every shipped config file validates against the pydantic model of the script that reads it."""

from __future__ import annotations

from pathlib import Path

import pytest

from fusion.cmedbert import FusionConfig
from kg.build import BuildConfig
from kg.cli import read_config_file
from kg.embeddings import EmbeddingConfig
from mrc.train import TrainConfig

CONFIGS = Path(__file__).resolve().parent.parent / "configs"


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("kg/*.yaml")), ids=lambda p: p.name)
def test_kg_configs(path: Path) -> None:
    BuildConfig.model_validate(read_config_file(path))


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("emb/*.yaml")), ids=lambda p: p.name)
def test_embedding_configs(path: Path) -> None:
    config = EmbeddingConfig.model_validate({**read_config_file(path), "kg": "snapshot", "out": "emb"})
    assert config.model == path.stem


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("mrc/*.yaml")), ids=lambda p: p.name)
def test_mrc_configs(path: Path) -> None:
    config = TrainConfig.model_validate(read_config_file(path))
    assert config.model.model_type == path.stem
    FusionConfig.model_validate(config.model.fusion)


def test_every_config_is_covered() -> None:
    assert {p.parent.name for p in CONFIGS.rglob("*.yaml")} == {"kg", "emb", "mrc"}
