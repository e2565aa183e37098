"""Triples readers: formats, normalisation, literal routing, filters and every kind of bad input."""

from __future__ import annotations

import gc
import gzip
import json
import warnings
from pathlib import Path

import pytest

from kg.reader import KGInputError, TripleReader
from kg.records import Attribute, ReaderConfig, Rejected, Triple
from kgutil.io import open_binary


def read_all(paths: list[Path], config: ReaderConfig | None = None) -> tuple[list, list[Rejected], TripleReader]:
    reader = TripleReader(config)
    rejects: list[Rejected] = []
    records = list(reader.read(paths, rejects.append))
    return records, rejects, reader


def test_tsv_csv_jsonl_gz_and_bom_read_the_same(tmp_path: Path) -> None:
    rows = [("糖尿病", "症状", "多尿", "疾病", "症状"), ("高血压", "并发症", "脑卒中", "", "")]
    tsv = tmp_path / "a.tsv"
    tsv.write_bytes(b"\xef\xbb\xbf" + "\n".join("\t".join(r) for r in rows).encode() + b"\n")
    csv_gz = tmp_path / "b.csv.gz"
    csv_gz.write_bytes(gzip.compress(("head,relation,tail,head_type,tail_type\n" +
                                      "\n".join(",".join(r) for r in rows) + "\n").encode()))
    jsonl = tmp_path / "c.jsonl"
    jsonl.write_text("\n".join(json.dumps(dict(zip(["head", "relation", "tail", "head_type", "tail_type"], r)),
                                          ensure_ascii=False) for r in rows) + "\n", encoding="utf-8")
    for path in (tsv, csv_gz, jsonl):
        records, rejects, _ = read_all([path])
        assert rejects == []
        assert records == [Triple(head="糖尿病", relation="症状", tail="多尿", head_type="疾病", tail_type="症状"),
                           Triple(head="高血压", relation="并发症", tail="脑卒中")]


def test_normalisation_folds_width_and_whitespace(tmp_path: Path) -> None:
    path = tmp_path / "w.tsv"
    path.write_text("  ＣＴ检查 \t检查\tＸ线　 胸片\n", encoding="utf-8")
    (rec,), _, _ = read_all([path])
    assert (rec.head, rec.tail) == ("CT检查", "X线 胸片")
    (raw,), _, _ = read_all([path], ReaderConfig(nfkc=False, strip=False))
    assert raw.head == "  ＣＴ检查 "


def test_literals_filters_stopwords_and_duplicates(tmp_path: Path) -> None:
    path = tmp_path / "k.tsv"
    path.write_text("\n".join([
        "糖尿病\t治愈率\t30%",                       # numeric literal
        "二甲双胍\t用法用量\t口服，一次0.5g，一日2次。",  # sentence punctuation
        "二甲双胍\t规格\t0.25g",                      # dose with unit
        "糖尿病\t症状\t无",                            # stop-word tail
        "糖尿病\t症状\t多尿",
        "糖尿病\t症状\t多尿",                          # duplicate
        "糖尿病\t禁忌\t酮症",                          # denied relation
        "糖尿病\t别名\t" + "消" * 80,                  # too long for an entity: attribute
        "糖尿病\t易感人群\t中老年人",                   # literal by relation
    ]) + "\n", encoding="utf-8")
    cfg = ReaderConfig(relation_deny=["禁忌"], literal_relations=["易感人群"])
    records, rejects, reader = read_all([path], cfg)
    triples = [r for r in records if isinstance(r, Triple)]
    attributes = [r for r in records if isinstance(r, Attribute)]
    assert [(t.head, t.tail) for t in triples] == [("糖尿病", "多尿")]
    assert {a.key for a in attributes} == {"治愈率", "用法用量", "规格", "别名", "易感人群"}
    assert sorted(r.reason for r in rejects) == ["relation '禁忌' filtered by allow/deny list", "tail: stop-word entity"]
    assert reader.summary.as_dict() == {"read": 9, "triples": 1, "attributes": 5, "rejected": 2, "duplicates": 1}


def test_relation_types_fill_missing_types(tmp_path: Path) -> None:
    path = tmp_path / "t.tsv"
    path.write_text("糖尿病\t症状\t多尿\n", encoding="utf-8")
    (rec,), _, _ = read_all([path], ReaderConfig(relation_types={"症状": ("疾病", "症状")}))
    assert (rec.head_type, rec.tail_type) == ("疾病", "症状")


def test_bad_lines_are_rejected_with_file_line_and_reason(tmp_path: Path) -> None:
    path = tmp_path / "bad.tsv"
    path.write_bytes(
        "糖尿病\t症状\t多尿\n".encode()
        + b"only\ttwo\n"                                   # wrong column count
        + b"\xff\xfe bad\tutf\t8\n"                        # invalid UTF-8
        + "a\tb\t".encode() + b"x" * 1_000_000 + b"\n"   # 1 MB line
        + "\t症状\t多尿\n".encode()                        # empty head
        + "高血压\t症状".encode()                           # truncated last line
    )
    records, rejects, reader = read_all([path])
    assert len(records) == 1
    by_line = {r.line: r for r in rejects}
    assert set(by_line) == {2, 3, 4, 5, 6}
    assert all(r.file == str(path) for r in rejects)
    assert by_line[2].reason.startswith("wrong column count")
    assert by_line[3].reason == "invalid UTF-8 at byte 0"
    assert "over max_line_bytes" in by_line[4].reason
    assert by_line[5].reason == "empty head, relation or tail"
    assert "truncated" in by_line[6].reason
    assert by_line[6].location() == f"{path}:6"
    assert reader.summary.as_dict()["rejected"] == 5


def test_bad_jsonl_lines(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"head": "a", "relation": "r"}\n[1, 2]\n{not json\n', encoding="utf-8")
    _, rejects, _ = read_all([path])
    assert [r.reason.split(":")[0] for r in rejects] == [
        "JSON object lacks string field(s) tail", "JSON line is not an object", "invalid JSON"]


@pytest.mark.parametrize("content, message", [(b"", "file is empty"),
                                              (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "looks binary")])
def test_unreadable_files_raise(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "x.tsv"
    path.write_bytes(content)
    with pytest.raises(KGInputError, match=message):
        read_all([path])
    with pytest.raises(KGInputError, match="no such file"):
        read_all([tmp_path / "missing.tsv"])


def test_a_gzipped_file_is_closed_with_its_reader(tmp_path: Path) -> None:
    path = tmp_path / "t.tsv.gz"
    path.write_bytes(gzip.compress("糖尿病\t症状\t多饮\n".encode()))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with open_binary(path) as f:
            assert f.read().decode() == "糖尿病\t症状\t多饮\n"
        del f
        gc.collect()
    assert not [w for w in caught if issubclass(w.category, ResourceWarning)]
