"""Token-level entity ids: links (character spans) projected onto a fast tokenizer's subword offsets."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from retrieval.linker import Link

PAD_ENTITY = -1


def token_entity_ids(offsets: Sequence[tuple[int, int]], sequence_ids: Sequence[int | None],
                     links: dict[int, list[Link]], k: int) -> tuple[np.ndarray, np.ndarray]:
    """``ids [seq_len, k]`` (PAD_ENTITY where empty) and ``mask [seq_len, k]`` for one encoded sequence.

    Token j of segment ``sequence_ids[j]`` with character span ``offsets[j]`` receives the entities of every
    link of that segment whose span overlaps it, best score first, without repeats. Special tokens
    (sequence id None) and empty offsets get none.
    """
    n = len(offsets)
    ids = np.full((n, k), PAD_ENTITY, dtype=np.int64)
    per_char: dict[int, dict[int, list[tuple[float, int]]]] = {}
    for segment, seg_links in links.items():
        chars: dict[int, list[tuple[float, int]]] = {}
        for link in seg_links:
            for c in range(link.start, link.end):
                chars.setdefault(c, []).append((link.score, link.entity_id))
        per_char[segment] = chars
    for j, ((a, b), seg) in enumerate(zip(offsets, sequence_ids)):
        if seg is None or b <= a or seg not in per_char:
            continue
        found: list[tuple[float, int]] = []
        chars = per_char[seg]
        for c in range(a, b):
            found.extend(chars.get(c, ()))
        if not found:
            continue
        seen: list[int] = []
        for _, entity in sorted(found, key=lambda x: (-x[0], x[1])):
            if entity not in seen:
                seen.append(entity)
                if len(seen) == k:
                    break
        ids[j, : len(seen)] = seen
    return ids, ids != PAD_ENTITY
