"""One question + passage → answer, support sentence(s), scores, n-best and (CMedBERT) linked entities."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from mrc.data import Example, sentence_spans
from mrc.features import FeatureConfig, prepare_features
from mrc.model import BaselineMRC
from mrc.postprocess import postprocess
from mrc.inference import predict_features, saved_postprocessing


def predict_one(model: BaselineMRC, tokenizer: Any, saved: dict[str, Any], question: str, passage: str,
                device: torch.device) -> dict[str, Any]:
    """Prediction with per-token start/end probabilities of the window holding the answer."""
    example = Example(id="q", question=question, context=passage, passage_id="p")
    features = prepare_features([example], tokenizer, FeatureConfig.model_validate(saved.get("features", {})))
    model.attach_inputs(features, [example], tokenizer)
    outputs = predict_features(model, features, tokenizer.pad_token_id, 8, device, progress=len(features) > 16)
    starts, ends = outputs.starts, outputs.ends
    chosen = saved_postprocessing(saved)
    pred = postprocess([example], features, outputs, category_names=model.config.categories, **chosen)["q"]
    best = max(range(len(features)), key=lambda i: float(starts[i].max() + ends[i].max()))
    feat = features[best]
    tokens = tokenizer.convert_ids_to_tokens(feat.input_ids)
    result: dict[str, Any] = {
        **pred.as_dict(),
        "sentences": [passage[a:b] for a, b in sentence_spans(passage)],
        "tokens": tokens,
        "start_probs": _softmax(starts[best]).round(5).tolist(),
        "end_probs": _softmax(ends[best]).round(5).tolist(),
        "offsets": feat.offsets,
        "windows": len(features),
        "sentence_weight": chosen["sentence_weight"],
    }
    inside = [i for i, o in enumerate(feat.offsets) if o is not None and o[0] < pred.end and o[1] > pred.start]
    result["answer_tokens"] = f"{inside[0]}-{inside[-1]}" if inside else ""
    result["entities"] = model.describe_entities(feat, outputs.details[best], tokenizer, question, passage) \
        if hasattr(model, "describe_entities") else []
    return result


def _softmax(x: np.ndarray) -> np.ndarray:
    z = np.exp(x - x.max())
    return z / z.sum()


def plot_probabilities(result: dict[str, Any], path: Path) -> None:
    """Per-token start/end probabilities over the passage tokens, linked-entity tokens marked (cf. Fig. 3)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib import font_manager

    _register_packaged_cjk_font(font_manager)
    cjk = [f.name for f in font_manager.fontManager.ttflist
           if any(k in f.name for k in ("CJK SC", "CJK", "WenQuanYi", "SimHei", "Source Han", "Droid Sans Fallback",
                                        "AR PL"))]
    cjk.sort(key=lambda name: "CJK SC" not in name)  # simplified-Chinese glyph forms first
    if cjk:
        plt.rcParams["font.sans-serif"] = cjk[:1] + plt.rcParams["font.sans-serif"]
    idx = [i for i, o in enumerate(result["offsets"]) if o is not None]
    # Without a CJK font (the noto-cjk-sans-otc package, or e.g. apt-get install fonts-noto-cjk) tokens are
    # labelled by their position.
    tokens = [result["tokens"][i] if cjk else str(i) for i in idx]
    starts = [result["start_probs"][i] for i in idx]
    ends = [result["end_probs"][i] for i in idx]
    linked = {t for e in result.get("entities", []) for t in e.get("token_indexes", [])}
    fig, ax = plt.subplots(figsize=(max(8, len(idx) * 0.18), 3.6))
    ax.plot(range(len(idx)), starts, label="start", color="tab:blue")
    ax.plot(range(len(idx)), ends, label="end", color="tab:orange")
    for k, i in enumerate(idx):
        if i in linked:
            ax.axvspan(k - 0.5, k + 0.5, color="tab:green", alpha=0.15, lw=0)
    ax.set_xticks(range(len(idx)))
    ax.set_xticklabels(tokens, fontsize=6, rotation=90 if not cjk else 0)
    ax.set_ylabel("probability")
    answer = result["answer"][:40] if cjk else f"tokens {result.get('answer_tokens', '')}"
    ax.set_title(f"answer: {answer}  (green: tokens with linked KG entities)")
    ax.legend(loc="upper right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=130)
    plt.close(fig)


def _register_packaged_cjk_font(font_manager) -> None:  # type: ignore[no-untyped-def]
    """Make the Noto Sans CJK collection of the ``noto-cjk-sans-otc`` package known to matplotlib, if installed."""
    try:
        from noto_cjk_sans_otc import FONT_PATH
    except ImportError:
        return
    path = str(FONT_PATH)
    if all(f.fname != path for f in font_manager.fontManager.ttflist):
        font_manager.fontManager.addfont(path)
