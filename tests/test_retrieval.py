"""Entity retrieval: rules, dense synonyms, English linking, subword alignment, odd inputs, index checks."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from conftest import shared_path
from kg.records import Triple
from kg.snapshot import Snapshot, SnapshotError, snapshot_from_records
from retrieval.align import PAD_ENTITY, token_entity_ids
from retrieval.index import EntityIndex, IndexConfig, build_index
from retrieval.linker import EntityLinker, LinkerConfig

ZH_TRIPLES = [
    ("血小板无力症", "检查", "血小板计数"), ("血小板无力症", "症状", "鼻出血"), ("糖尿病", "症状", "多尿"),
    ("糖尿病", "常用药品", "二甲双胍"), ("肺癌", "检查", "CT"), ("白血病", "症状", "发热"),
    ("缺铁性贫血", "症状", "乏力"), ("肺炎", "症状", "发热"),
]


def make_index(tmp_path: Path, triples: list[tuple[str, str, str]], **config: object) -> EntityIndex:
    snapshot_from_records([Triple(head=h, relation=r, tail=t) for h, r, t in triples], tmp_path / "snap")
    return build_index(Snapshot.load(tmp_path / "snap"), IndexConfig(progress=False, **config), tmp_path / "idx")


@pytest.fixture(scope="module")
def zh_index(tmp_path_factory: pytest.TempPathFactory) -> EntityIndex:
    return make_index(tmp_path_factory.mktemp("zh"), ZH_TRIPLES)


def matched(linker: EntityLinker, text: str) -> dict[str, tuple[str, float]]:
    return {linker.index.names[i]: (rule, round(score, 4)) for i, rule, score in linker.match(text)}


def test_exact_and_overlap_rules_with_threshold_boundary(zh_index: EntityIndex) -> None:
    linker = EntityLinker(zh_index, LinkerConfig(top_k=10))
    # "血小板" shares 3 characters: > ½·5 with 血小板计数 (overlap), not > ½·6 with 血小板无力症 (boundary).
    assert matched(linker, "血小板") == {"血小板计数": ("overlap", 0.6)}
    assert matched(linker, "血小板无力症") == {"血小板无力症": ("exact", 1.0), "血小板计数": ("overlap", 0.5)}
    # A stricter threshold removes the overlap link; a looser one admits the 3-of-6 entity.
    assert matched(EntityLinker(zh_index, LinkerConfig(overlap_threshold=0.7)), "血小板") == {}
    loose = matched(EntityLinker(zh_index, LinkerConfig(overlap_threshold=0.49, top_k=10)), "血小板")
    assert loose["血小板无力症"] == ("overlap", 0.5)
    # Character multisets, not order: 尿糖 overlaps 多尿? 1 of 2 shared: not more than half.
    assert "多尿" not in matched(linker, "尿糖")
    # Without the overlap rule only the exact link is left.
    exact_only = EntityLinker(zh_index, LinkerConfig(top_k=10, overlap=False))
    assert matched(exact_only, "血小板无力症") == {"血小板无力症": ("exact", 1.0)}
    assert matched(exact_only, "血小板") == {}


def test_exact_rule_needs_no_ngram_index(zh_index: EntityIndex, tmp_path: Path) -> None:
    """The n-gram index is read on first use: without it the exact rule links as before, and the overlap rule
    says what is missing."""
    trimmed = tmp_path / "idx"
    shutil.copytree(zh_index.path, trimmed)
    (trimmed / "ngram.faiss").unlink()
    index = EntityIndex.load(trimmed, snapshot_checksum=zh_index.snapshot_checksum)
    text = "血小板无力症的患者常有鼻出血。"
    exact = LinkerConfig(top_k=10, overlap=False)
    assert EntityLinker(index, exact).match(text) == EntityLinker(zh_index, exact).match(text)
    with pytest.raises(SnapshotError, match="ngram.faiss: missing.*overlap false"):
        EntityLinker(index, LinkerConfig(top_k=10)).match("血小板")


def test_links_carry_offsets_rule_type_and_topk(zh_index: EntityIndex) -> None:
    linker = EntityLinker(zh_index, LinkerConfig(top_k=1))
    text = "血小板无力症的患者常有鼻出血，糖尿病患者多尿。"
    links = linker.link(text)
    assert {(text[l.start:l.end], l.entity, l.rule) for l in links} >= {
        ("血小板无力症", "血小板无力症", "exact"), ("鼻出血", "鼻出血", "exact"), ("糖尿病", "糖尿病", "exact")}
    assert all(text[l.start:l.end] == l.text for l in links)
    assert len({(l.start, l.end) for l in links}) == len(links)  # top_k=1: one entity per candidate


def test_full_width_and_odd_inputs(zh_index: EntityIndex) -> None:
    linker = EntityLinker(zh_index)
    text = "肺癌患者做了ＣＴ检查"
    ct = [l for l in linker.link(text) if l.entity == "CT"]
    assert ct and text[ct[0].start:ct[0].end] == "ＣＴ"
    assert linker.link("") == [] and linker.link("   \n\t ") == []
    long_text = ("糖尿病患者多尿。" * 12500)[:100_000]
    links = linker.link(long_text)
    assert len(links) >= 12_000 and all(long_text[l.start:l.end] == l.text for l in links[-50:])


def test_segmenters_agree_on_dictionary_terms(zh_index: EntityIndex) -> None:
    text = "血小板无力症的患者常有鼻出血，糖尿病患者多尿，可服用二甲双胍。"
    found = {segmenter: {(l.start, l.end, l.entity_id)
                         for l in EntityLinker(zh_index, LinkerConfig(segmenter=segmenter)).link(text)}
             for segmenter in ("fast", "hybrid", "posseg")}
    assert found["fast"] == found["hybrid"] == found["posseg"] and found["fast"]


def test_numpy_pos_hmm_decodes_exactly_like_jieba() -> None:
    import json
    import random
    import re

    import jieba.posseg
    from jieba.posseg.viterbi import viterbi

    from retrieval.pos_hmm import NumpyViterbi

    data = json.loads((Path(__file__).parent.parent / "examples" / "sample_mrc.json").read_text(encoding="utf-8"))
    text = "".join(p["context"] for d in data["data"] for p in d["paragraphs"])
    runs = [r for r in re.findall(r"[\u4e00-\u9fff]+", text)]
    rng = random.Random(0)
    samples = {r[i:i + n] for r in runs for n in (1, 2, 3, 5, 8) for i in range(0, max(1, len(r) - n), 3)}
    samples |= {"".join(rng.choice(text) for _ in range(6)) for _ in range(200)}  # unlikely strings, odd chars
    samples = {s for s in samples if re.fullmatch(r"[\u4e00-\u9fff]+", s)}
    decoder, p = NumpyViterbi(), jieba.posseg
    mismatched = [s for s in sorted(samples)
                  if decoder.decode(s) != viterbi(s, p.char_state_tab_P, p.start_P, p.trans_P, p.emit_P)[1]]
    assert len(samples) > 300 and not mismatched


def test_index_round_trip_and_wrong_snapshot_refused(zh_index: EntityIndex, tmp_path: Path) -> None:
    again = EntityIndex.load(zh_index.path, snapshot_checksum=zh_index.snapshot_checksum)
    assert again.names == zh_index.names and again.ngram.ntotal == len(zh_index.names)
    with pytest.raises(SnapshotError, match="rebuild"):
        EntityIndex.load(zh_index.path, snapshot_checksum="f" * 64)
    with pytest.raises(SnapshotError, match="not an entity index"):
        EntityIndex.load(tmp_path)


def test_typed_term_lists_fill_types(tmp_path: Path) -> None:
    terms = tmp_path / "terms_disease.txt"
    terms.write_text("糖尿病\n", encoding="utf-8")
    spo = tmp_path / "medical.spo"
    spo.write_text("多尿\t类别\t症状\n", encoding="utf-8")
    index = make_index(tmp_path, ZH_TRIPLES[2:4], dicts=[terms, spo])
    types = dict(zip(index.names, index.types))
    assert types["糖尿病"] == "disease" and types["多尿"] == "症状" and types["二甲双胍"] is None
    assert "糖尿病 100000 n" in index.userdict.read_text(encoding="utf-8")


def test_dense_index_finds_a_synonym_that_shares_one_character(tmp_path: Path) -> None:
    encoder = shared_path("models", "m3e-small")
    index = make_index(tmp_path, ZH_TRIPLES, dense_encoder=str(encoder))
    plain = EntityLinker(index)
    dense = EntityLinker(index, LinkerConfig(dense_threshold=0.85, top_k=1))
    # The paper's example: 血栓细胞衰弱 (an old name) for 血小板无力症 — one shared character of six.
    assert matched(plain, "血栓细胞衰弱") == {}
    (hit,) = dense.match("血栓细胞衰弱")
    assert (index.names[hit[0]], hit[1]) == ("血小板无力症", "dense")


def test_english_linking_on_hetionet(tmp_path: Path) -> None:
    from kg.reader import TripleReader

    records = list(TripleReader().read([shared_path("data", "kg", "hetionet_5k_triples.tsv")]))
    snapshot_from_records(records, tmp_path / "snap")
    index = build_index(Snapshot.load(tmp_path / "snap"), IndexConfig(progress=False), tmp_path / "idx")
    assert index.language == "en"
    linker = EntityLinker(index)
    text = "Breast cancer patients with BRCA1 mutations may receive tamoxifen; regulation of blood pressure matters."
    entities = {(l.entity.lower(), l.rule) for l in linker.link(text)}
    assert ("breast cancer", "exact") in entities
    assert ("brca1", "exact") in entities
    assert ("tamoxifen", "exact") in entities
    assert any(rule == "overlap" for _, rule in entities)


def test_subword_alignment_with_a_real_tokenizer(zh_index: EntityIndex) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(shared_path("models", "m3e-small")))
    linker = EntityLinker(zh_index, LinkerConfig(top_k=2))
    question, passage = "糖尿病吃什么药？", "糖尿病常用药品为二甲双胍，CT可查肺癌。"
    links = dict(zip((0, 1), linker.link_many([question, passage])))
    enc = tokenizer(question, passage, return_offsets_mapping=True)
    ids, mask = token_entity_ids(enc["offset_mapping"], enc.sequence_ids(), links, k=3)
    assert ids.shape == (len(enc["input_ids"]), 3) and (mask == (ids != PAD_ENTITY)).all()
    tokens = enc.tokens()
    diabetes = zh_index.names.index("糖尿病")
    metformin = zh_index.names.index("二甲双胍")
    q_tok = [j for j, s in enumerate(enc.sequence_ids()) if s == 0]
    p_tok = [j for j, s in enumerate(enc.sequence_ids()) if s == 1]
    assert all(ids[j, 0] == diabetes for j in q_tok[:3])          # 糖 尿 病 in the question
    assert ids[q_tok[3], 0] == PAD_ENTITY                           # 吃
    for j in p_tok:
        a, b = enc["offset_mapping"][j]
        if passage[a:b] and passage[a:b] in "二甲双胍":
            assert metformin in ids[j]
    ct = [j for j in p_tok if tokens[j].lower() == "ct"]
    assert ct and zh_index.names.index("CT") in ids[ct[0]]
    specials = [j for j, s in enumerate(enc.sequence_ids()) if s is None]
    assert not mask[specials].any()
