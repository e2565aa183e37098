#!/usr/bin/env python
"""The whole kgmrc pipeline on the local default store, small enough for a laptop CPU (< 15 minutes).

1. build the KG into the local ArcadeDB store and export its snapshot (xywy disease KG from ../shared, else the
   shipped sample KG), print stats and a neighbourhood;
2. train PTransE embeddings for a few epochs;
3. build the entity index (with the typed term lists when ../shared has them);
4. label the training answers with answer categories from the KG types of their linked entities;
5. train a small CMedBERT with the answer-category head briefly (m3e-small on part of CMedMRC from ../shared,
   else a tiny random encoder with a character vocabulary on the shipped question/passage pairs);
6. print one prediction with its support sentence, categories, linked entities and the start/end probability plot.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from kg.build import BuildConfig, build_kg, open_store
from kgutil.cli import ConfigError, add_common_args, add_field_args, build_config, read_config_file, setup_logging
from kg.embeddings import EmbeddingConfig, train_embeddings
from kg.snapshot import Snapshot
from mrc.category_labels import LabelConfig, label_examples
from mrc.data import read_dataset
from mrc.features import FeatureConfig
from mrc.model import ModelConfig, load_model
from mrc.predict import plot_probabilities, predict_one
from mrc.train import IntermediateConfig, SplitConfig, TrainConfig, train_mrc
from retrieval.index import IndexConfig, build_index
from retrieval.linker import EntityLinker

ROOT = Path(__file__).resolve().parent.parent
log = logging.getLogger("demo")


class DemoConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    shared: Path = Field(ROOT.parent / "shared", description="the shared data folder")
    out: Path = Field(Path("demo_run"), description="demo output directory")
    embedding_epochs: int = 3
    mrc_epochs: int = 2
    mrc_train_questions: int = Field(320, description="training questions taken from the split")
    max_seq_length: int = 256


def tiny_encoder(texts: list[str], out: Path) -> str:
    """A small random BERT with a character vocabulary of ``texts``: the offline fallback encoder."""
    import torch
    from transformers import BertConfig, BertModel, BertTokenizerFast

    out.mkdir(parents=True, exist_ok=True)
    chars = sorted({c for t in texts for c in t if not c.isspace()})
    (out / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *chars]) + "\n",
                                   encoding="utf-8")
    tokenizer = BertTokenizerFast(vocab_file=str(out / "vocab.txt"), do_lower_case=True)
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=128, num_hidden_layers=2,
                         num_attention_heads=4, intermediate_size=256, max_position_embeddings=512)).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return str(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_field_args(p, DemoConfig, ["shared", "out", "embedding_epochs", "mrc_epochs", "mrc_train_questions"])
    add_common_args(p)
    args = p.parse_args(argv)
    setup_logging(args.log_level)
    try:
        cfg = build_config(DemoConfig, args)
    except ConfigError as err:
        log.error("%s", err)
        return 2
    data, out = cfg.shared / "data", cfg.out
    xywy = data / "kg" / "xywy_triples.tsv"
    kg_file, kg_config = (xywy, "xywy.yaml") if xywy.exists() else (ROOT / "examples/sample_kg.tsv", "sample.yaml")

    print(f"\n== 1. knowledge graph from {kg_file} into the local store {out / 'store'}")
    build = BuildConfig.model_validate({**read_config_file(ROOT / "configs/kg" / kg_config), "triples": [kg_file],
                                        "store": out / "store"})
    with open_store(build) as store:
        result = build_kg(store, build)
        stats = store.stats()
        print(json.dumps({"read": result.summary, "entities": stats["entities"], "triples": stats["triples"],
                          "attributes": stats["attributes"]}, ensure_ascii=False))
        for n in store.neighbours("糖尿病", limit=5):
            print(f"   糖尿病 {'-' if n.direction == 'out' else '<-'}[{n.relation}]{'->' if n.direction == 'out' else '-'}"
                  f" {n.name}")

    print("\n== 2. PTransE entity embeddings")
    emb = train_embeddings(EmbeddingConfig(kg=build.snapshot_dir, out=out / "emb", model="ptranse", dim=64,
                                           epochs=cfg.embedding_epochs, eval_max_triples=500, resume=False))
    print(json.dumps({"mrr": round(emb.metrics["mrr"], 4), "hits@10": round(emb.metrics["hits@10"], 4),
                      "seconds_per_epoch": emb.seconds_per_epoch, "paths": emb.path_stats}))

    print("\n== 3. entity index")
    dicts = sorted((data / "dicts").glob("*.txt")) + sorted((data / "dicts").glob("*.spo")) \
        if (data / "dicts").exists() else []
    index = build_index(Snapshot.load(build.snapshot_dir), IndexConfig(dicts=dicts), out / "idx")
    print(f"   {len(index.names)} entities, {sum(t is not None for t in index.types)} typed")

    cmedmrc = data / "cmedmrc" / "dev.json"
    encoder = cfg.shared / "models" / "m3e-small"
    if cmedmrc.exists() and encoder.exists():
        train = dict(train=[cmedmrc], split=SplitConfig(validation_share=0.2), encoder=str(encoder),
                     max_train_examples=cfg.mrc_train_questions, max_eval_examples=48, negative_windows=0.2,
                     epochs=cfg.mrc_epochs)
    else:
        sample = ROOT / "examples/sample_mrc.json"
        texts = [t for e in read_dataset(sample) for t in (e.question, e.context)]
        train = dict(train=[sample], validation=sample, encoder=tiny_encoder(texts, out / "tiny_encoder"), lr=3e-3,
                     epochs=20 * cfg.mrc_epochs)
    print("\n== 4. answer categories from the KG types of the linked answers")
    labels, report = label_examples(read_dataset(train["train"][0]), EntityLinker(index), LabelConfig(sample=5))
    labels.write(out / "categories.json")
    print("   " + ", ".join(f"{c} {v['questions']}" for c, v in report["coverage"].items()))
    for row in report["sample"]:
        print(f"   {'+'.join(row['categories']):<20} {row['answer'][:30]}")

    print(f"\n== 5. CMedBERT with the answer-category head on {train['train'][0]} with encoder {train['encoder']}")
    mrc = train_mrc(TrainConfig(
        model=ModelConfig(model_type="cmedbert", fusion={"index": str(out / "idx"), "embeddings": str(out / "emb")}),
        out=out / "cmedbert", resume=False, intermediate=IntermediateConfig(epochs=0),  # the demo skips CMRC 2018
        categories=out / "categories.json",
        features=FeatureConfig(max_seq_length=cfg.max_seq_length, doc_stride=96), **train))
    print(json.dumps(mrc.best_metrics.get("overall", {}), ensure_ascii=False))

    print("\n== 6. one prediction")
    model, tokenizer, saved = load_model(out / "cmedbert" / "best")
    example = read_dataset(ROOT / "examples/sample_mrc.json")[0]
    import torch

    pred = predict_one(model, tokenizer, saved, example.question, example.context, torch.device("cpu"))
    plot_probabilities(pred, out / "prediction.png")
    print(f"   question: {example.question}\n   answer:   {pred['answer']}   (gold: {example.answers[0].text})")
    print(f"   support:  {pred['support']}")
    print("   categories: " + ", ".join(f"{c} {p:.2f}" for c, p in sorted(pred["categories"].items(),
                                                                          key=lambda kv: -kv[1])))
    for e in pred["entities"][:12]:
        print(f"   entity:   [{e['segment']}] {e['span']} → {e['entity']} ({e['type'] or '-'}, {e['rule']}), "
              f"local attention {e['attention']:.2f}")
    print(f"   plot:     {out / 'prediction.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
