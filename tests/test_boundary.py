"""The boundary head (mrc.boundary): offsets from the anchor, the text anchor, and the baseline's
question-anchored head."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import AutoTokenizer

from mrc.boundary import BOUNDARY_RATE, anchor_offsets, shared_bigram_tokens
from mrc.model import ModelConfig, build_model, load_model, save_model


def test_anchor_offsets_bucket_each_token_by_its_distance_from_the_nearest_mention() -> None:
    anchor = torch.zeros(2, 12, dtype=torch.bool)
    anchor[0, 3:5] = True   # one mention: tokens 3–4
    anchor[0, 9] = True     # another: token 9
    got = anchor_offsets(anchor, radius=2)
    # from the first tokens 3 and 9: d = i − j, bucket d + R + 2 within ±2, 1 beyond; token 6 ties: the earlier
    assert got[0, :, 0].tolist() == [1, 2, 3, 4, 5, 6, 1, 2, 3, 4, 5, 6]
    # from the last tokens 4 and 9: token 6 is 2 after 4 (bucket 6); token 7 is nearer 9
    assert got[0, :, 1].tolist() == [1, 1, 2, 3, 4, 5, 6, 2, 3, 4, 5, 6]
    assert got[1].eq(0).all()  # no anchor in the window


def test_shared_bigram_tokens_mark_passage_tokens_in_a_bigram_the_question_holds() -> None:
    ids = torch.tensor([[1, 5, 6, 7, 2, 9, 5, 6, 8, 6, 7, 5, 2]])
    question = torch.zeros(1, 13, dtype=torch.bool)
    question[0, 1:4] = True   # bigrams (5, 6), (6, 7)
    passage = torch.zeros(1, 13, dtype=torch.bool)
    passage[0, 5:12] = True   # 9 5 6 8 6 7 5: (5, 6) at 6–7, (6, 7) at 9–10; (7, 5) is not the question's
    got = shared_bigram_tokens(ids, question, passage)[0]
    assert got.nonzero().flatten().tolist() == [6, 7, 9, 10]


def window_batch() -> dict[str, torch.Tensor]:
    """Two windows of 12 tokens (question 0–5, passage 6–11); window 0's passage repeats the question bigram
    (11, 12) at tokens 8–9, window 1's does not."""
    torch.manual_seed(1)
    ids = torch.cat([torch.randint(20, 30, (2, 6)), torch.randint(30, 40, (2, 6))], dim=1)   # no chance bigram
    ids[:, 0], ids[:, 5] = 1, 2
    ids[:, 1:3] = torch.tensor([11, 12])
    ids[0, 8:10] = torch.tensor([11, 12])
    context = torch.zeros(2, 12, dtype=torch.bool)
    context[:, 6:] = True
    return {"input_ids": ids, "attention_mask": torch.ones(2, 12, dtype=torch.long),
            "token_type_ids": context.long(), "context_mask": context,
            "start_positions": torch.tensor([9, 10]), "end_positions": torch.tensor([10, 11])}


def test_question_boundary_starts_as_the_baseline_learns_and_survives_a_save(tiny_encoder: Path,
                                                                               tmp_path: Path) -> None:
    torch.manual_seed(0)
    plain = build_model(tiny_encoder, ModelConfig()).eval()
    head = build_model(tiny_encoder, ModelConfig(question_boundary=True, boundary_radius=2))
    missing, unexpected = head.load_state_dict(plain.state_dict(), strict=False)
    assert not unexpected and sorted(missing) == ["boundary.U.weight", "boundary.offset_bias.weight"]
    b = window_batch()
    ref = plain(**b)
    assert torch.allclose(head.eval()(**b).start_logits, ref.start_logits)   # β = U = 0: the baseline
    head.train()(**b).loss.backward()
    grad = head.boundary.offset_bias.weight.grad.abs().sum(dim=1)
    assert grad[0] == 0 and grad[2:].sum() > 0 and head.boundary.U.weight.grad.abs().sum() > 0
    with torch.no_grad():
        head.boundary.offset_bias.weight[5] = torch.tensor([0.01, -0.02])   # d = +1
    out = head.eval()(**b)
    # window 0's anchor is tokens 8–9: token 9 starts 1 after its first token, token 10 ends 1 after its last
    assert (out.start_logits[0, 9] - ref.start_logits[0, 9]).item() == pytest.approx(0.01 * BOUNDARY_RATE, rel=1e-4)
    assert (out.end_logits[0, 10] - ref.end_logits[0, 10]).item() == pytest.approx(-0.02 * BOUNDARY_RATE, rel=1e-4)
    assert torch.equal(out.start_logits[1], ref.start_logits[1])   # no shared bigram in window 1: untouched
    save_model(head, AutoTokenizer.from_pretrained(str(tiny_encoder)), tmp_path / "model")
    loaded, _, payload = load_model(tmp_path / "model")
    assert payload["config"]["question_boundary"] and torch.equal(loaded.eval()(**b).start_logits, out.start_logits)


def test_boundary_dropout_leaves_the_head_out_of_some_training_windows_and_none_at_inference(
        tiny_encoder: Path) -> None:
    torch.manual_seed(0)
    plain = build_model(tiny_encoder, ModelConfig(dropout=0.0)).eval()
    head = build_model(tiny_encoder, ModelConfig(dropout=0.0, question_boundary=True, boundary_radius=2,
                                                 boundary_dropout=0.5))
    head.load_state_dict(plain.state_dict(), strict=False)
    for module in head.encoder.modules():   # the encoder's own dropout off: only the head's is random
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    with torch.no_grad():
        head.boundary.offset_bias.weight[5] = torch.tensor([0.01, -0.02])
    b = {k: v[:1].repeat(400, *[1] * (v.dim() - 1)) for k, v in window_batch().items()}   # 400 copies of window 0
    ref, kept = plain(**b).start_logits, head.eval()(**b).start_logits
    assert not torch.allclose(kept[:, 9], ref[:, 9])   # at inference every window has the head
    trained = head.train()(**b).start_logits[:, 9]
    dropped = torch.isclose(trained, ref[:, 9], atol=1e-5)
    assert torch.isclose(trained[~dropped], kept[~dropped, 9], atol=1e-5).all()   # kept: not rescaled
    assert 160 < int(dropped.sum()) < 240   # ≈ half of 400 (p = 0.5)
    with pytest.raises(ValueError, match="needs question_boundary"):
        ModelConfig(boundary_dropout=0.5)
