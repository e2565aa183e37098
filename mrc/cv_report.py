"""What a cross-validation summary (``mrc.crossval.summarize``) says, for people: one verdict line per paired
comparison, and the comparison as a Markdown table in the form of the CMedBERT paper's Table 5 — a row per variant
(its mean scores over questions, ×100) with its paired difference to the reference, then a row per extra pair.

A difference cell reads ``d [lo, hi]`` (95% bootstrap CI over questions) and, where both sides have two or more
seeds, ``d [lo, hi] [lo′, hi′]`` (the second: the multi-bootstrap CI over seeds × questions, which the rules fixed
so far read; the verdict lines also give the variance-components interval).
"""

from __future__ import annotations

from typing import Any

TABLE_SCORES = (("em", "EM"), ("f1", "F1"), ("support_em", "support EM"), ("category_macro_f1", "category macro F1"))


def _side(low: float, high: float) -> str:
    return "above" if low > 0 else "below" if high < 0 else "not distinguishable from"


def verdicts(summary: dict[str, Any]) -> list[str]:
    """One line per paired comparison and score: answer EM (with its per-fold differences and its sign test), and
    category macro F1 where both sides have categories."""
    lines = []
    for name, p in summary["paired"].items():
        for score, label in (("em", "EM"), ("category_macro_f1", "category macro F1")):
            if f"{score}_ci95" not in p:
                continue
            low, high = p[f"{score}_ci95"]
            line = (f"{name.split('-vs-')[0]}: {label} {p[f'{score}_diff']:+.2f} [{low:+.2f}, {high:+.2f}] vs "
                    f"{p['against']} on {p['questions']} questions × {p['runs']} run{'s' * (p['runs'] != 1)} — "
                    f"{_side(low, high)} {p['against']}")
            for kind, what in (("seeds", "over seeds × questions"), ("components", "by variance components")):
                if f"{score}_ci95_{kind}" in p:
                    low, high = p[f"{score}_ci95_{kind}"]
                    line += f"; {what} [{low:+.2f}, {high:+.2f}] — {_side(low, high)} {p['against']}"
            if (folds := p.get("per_fold")) and all(f"{score}_diff" in f for f in folds.values()):
                line += "; per fold " + ", ".join(f"{f[f'{score}_diff']:+.2f}" for f in folds.values())
                if test := p.get("fold_heterogeneity", {}).get(score):
                    line += (f" (folds agree? Cochran's Q p = {test['p']:.3g}, "
                             f"permutation p = {test['p_permutation']:.3g})")
            if sign := p.get(f"{score}_sign_test"):
                line += f"; {sign['better']} questions better, {sign['worse']} worse, sign test p = {sign['p']:.3g}"
            lines.append(line)
    return lines


def _signed(x: float) -> str:
    return f"{x:+.2f}".replace("-", "−")


def _difference(paired: dict[str, Any], score: str) -> str:
    if f"{score}_diff" not in paired:
        return ""
    intervals = [paired[f"{score}_ci95"], *([paired[f"{score}_ci95_seeds"]] if f"{score}_ci95_seeds" in paired else [])]
    return " ".join([_signed(paired[f"{score}_diff"]), *(f"[{_signed(lo)}, {_signed(hi)}]" for lo, hi in intervals)])


def _row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def markdown_table(summary: dict[str, Any], reference: str) -> str:
    """The summary as a Markdown table and its caption: the scores any variant has, each as a mean and as a
    difference Δ to ``reference`` (variant rows) or between the two sides of a pair (rows ``A − B``)."""
    variants, paired = summary["variants"], summary["paired"]
    scores = [(key, label) for key, label in TABLE_SCORES if any(key in v for v in variants.values())]
    lines = [_row(["variant", "questions × runs", *(label for _, label in scores),
                   *(f"Δ {label}" for _, label in scores)]),
             _row(["---"] * (2 + 2 * len(scores)))]
    for name, figures in variants.items():
        lines.append(_row([f"`{name}`", f"{figures['questions']} × {figures['runs']}",
                           *(f"{figures[key]:.2f}" if key in figures else "" for key, _ in scores),
                           *(_difference(paired.get(name, {}), key) for key, _ in scores)]))
    for key, p in paired.items():
        if key not in variants:
            lines.append(_row([f"`{key.split('-vs-')[0]}` − `{p['against']}`", f"{p['questions']} × {p['runs']}",
                               *("" for _ in scores), *(_difference(p, score) for score, _ in scores)]))
    caption = (f"Scores ×100, averaged over seeds per question. Δ: the variant − `{reference}` on the questions "
               "and runs both have (rows A − B: between the two), with its 95% bootstrap CI over questions and, with "
               "two or more seeds on both sides, its multi-bootstrap CI over seeds × questions.")
    return "\n".join(lines) + "\n\n" + caption
