"""Loss heads: hand-computed values, accuracy, margins, and a tiny overfit run."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from voiceprint.config import LossConfig
from voiceprint.losses import AAMSoftmax, AMSoftmax, Amsoftmax, Softmax, build_loss
from voiceprint.models import Xvector

torch.set_num_threads(1)

# A 2 x 3 example: unit class weights along x, y and the diagonal; embeddings of
# different norms (heads normalise them). Cosines: [[1, 0, r], [0, 1, r]], r = 1/sqrt(2).
WEIGHTS = torch.tensor([[1.0, 0.0], [0.0, 3.0], [1.0, 1.0]])
EMBEDDINGS = torch.tensor([[2.0, 0.0], [0.0, 0.5]])
LABELS = torch.tensor([0, 2])
R = 1 / math.sqrt(2)


def _cross_entropy(rows: list[list[float]], labels: list[int]) -> float:
    """Mean of log(sum_j exp z_j) - z_label, written out."""
    total = 0.0
    for row, label in zip(rows, labels, strict=True):
        total += math.log(sum(math.exp(z) for z in row)) - row[label]
    return total / len(rows)


def _with_weights(head: torch.nn.Module) -> torch.nn.Module:
    with torch.no_grad():
        head.weight.copy_(WEIGHTS)
    return head


def test_amsoftmax_hand_computed() -> None:
    s, m = 10.0, 0.2
    head = _with_weights(AMSoftmax(2, 3, scale=s, margin=m))
    loss, acc = head(EMBEDDINGS, LABELS)
    expected = _cross_entropy([[s * (1 - m), 0.0, s * R], [0.0, s * 1.0, s * (R - m)]], [0, 2])
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    assert acc.item() == pytest.approx(0.5)  # row 2's nearest class is 1, not 2


def test_aamsoftmax_hand_computed() -> None:
    s, m = 10.0, 0.2
    head = _with_weights(AAMSoftmax(2, 3, scale=s, margin=m))
    loss, acc = head(EMBEDDINGS, LABELS)
    target_0 = math.cos(math.acos(1.0) + m)  # theta = 0
    target_1 = math.cos(math.pi / 4 + m)  # theta = 45 degrees
    expected = _cross_entropy([[s * target_0, 0.0, s * R], [0.0, s, s * target_1]], [0, 2])
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    assert acc.item() == pytest.approx(0.5)


def test_aamsoftmax_beyond_pi_uses_the_linear_fallback() -> None:
    m = 0.3
    head = AAMSoftmax(2, 2, scale=1.0, margin=m)
    cos = torch.tensor([[-0.99, 0.5], [0.9, 0.0]])
    target = head.target_logit(cos)
    # theta = acos(-0.99) > pi - m: cos(theta) - m * sin(pi - m) instead of cos(theta + m).
    assert target[0, 0].item() == pytest.approx(-0.99 - m * math.sin(math.pi - m), rel=1e-6)
    assert target[1, 0].item() == pytest.approx(math.cos(math.acos(0.9) + m), rel=1e-6)
    # The target logit never increases as the angle grows.
    grid = torch.linspace(1.0, -1.0, 201)[:, None]
    assert (head.target_logit(grid).diff(dim=0) <= 1e-6).all()


def test_aamsoftmax_easy_margin() -> None:
    head = AAMSoftmax(2, 2, margin=0.2, easy_margin=True)
    cos = torch.tensor([[-0.5, 0.5]])
    target = head.target_logit(cos)
    assert target[0, 0].item() == pytest.approx(-0.5)
    assert target[0, 1].item() == pytest.approx(math.cos(math.acos(0.5) + 0.2), rel=1e-6)


def test_accuracy_ignores_the_margin() -> None:
    # Target cosine 0.9 beats 0.8, but not after a 0.2 margin: still counted correct.
    head = AMSoftmax(2, 2, scale=30.0, margin=0.2)
    with torch.no_grad():
        head.weight.copy_(torch.tensor([[0.9, math.sqrt(1 - 0.81)], [0.8, math.sqrt(1 - 0.64)]]))
    loss, acc = head(torch.tensor([[1.0, 0.0]]), torch.tensor([0]))
    assert acc.item() == 1.0
    assert loss.item() > math.log(2)  # with the margin the target logit is the lower one


def test_softmax_matches_cross_entropy() -> None:
    torch.manual_seed(0)
    head = Softmax(5, 4)
    emb, labels = torch.randn(6, 5), torch.tensor([0, 1, 2, 3, 0, 1])
    loss, acc = head(emb, labels)
    logits = head.fc(emb)
    torch.testing.assert_close(loss, F.cross_entropy(logits, labels))
    assert acc.item() == pytest.approx((logits.argmax(1) == labels).float().mean().item())


@pytest.mark.parametrize("head_cls", [AMSoftmax, AAMSoftmax])
def test_margin_increases_loss(head_cls: type) -> None:
    torch.manual_seed(0)
    emb, labels = torch.randn(8, 6), torch.randint(0, 5, (8,))
    head = head_cls(6, 5, margin=0.0)
    without, _ = head(emb, labels)
    head.set_margin(0.3)
    with_margin, _ = head(emb, labels)
    assert with_margin.item() > without.item()


def test_set_margin_equals_a_fresh_head() -> None:
    torch.manual_seed(0)
    emb, labels = torch.randn(8, 6), torch.randint(0, 5, (8,))
    head = AAMSoftmax(6, 5, margin=0.0)
    zero, _ = head(emb, labels)
    # Margin 0: plain scaled-cosine cross entropy, the same for both margin heads.
    plain = F.cross_entropy(30.0 * head.cosine(emb), labels)
    torch.testing.assert_close(zero, plain)
    head.set_margin(0.25)
    fresh = AAMSoftmax(6, 5, margin=0.25)
    fresh.load_state_dict(head.state_dict())
    torch.testing.assert_close(head(emb, labels)[0], fresh(emb, labels)[0])


def test_aam_gradient_finite_at_zero_angle() -> None:
    head = AAMSoftmax(3, 2, margin=0.2)
    emb = head.weight.detach()[:1].clone().requires_grad_(True)
    loss, _ = head(emb, torch.tensor([0]))
    loss.backward()
    assert torch.isfinite(emb.grad).all() and torch.isfinite(head.weight.grad).all()


def test_build_loss_passes_scale_and_margin_only_where_taken() -> None:
    assert isinstance(build_loss(LossConfig(name="softmax"), 8, 3), Softmax)
    head = build_loss(LossConfig(name="amsoftmax", scale=20.0, margin=0.3), 8, 3)
    assert isinstance(head, AMSoftmax) and (head.scale, head.margin) == (20.0, 0.3)
    head = build_loss(LossConfig(name="arcface", scale=32.0, margin=0.1), 8, 3)
    assert isinstance(head, AAMSoftmax) and (head.scale, head.margin) == (32.0, 0.1)
    assert head.weight.shape == (3, 8)
    with pytest.raises(KeyError, match="softmax"):
        build_loss(LossConfig(name="no-such-loss"), 8, 3)


def test_lab_alias() -> None:
    assert Amsoftmax is AMSoftmax


def test_tiny_xvector_overfits_four_speakers() -> None:
    torch.manual_seed(0)
    speakers, per_speaker, frames, feat_dim = 4, 8, 30, 16
    centres = torch.randn(speakers, 1, feat_dim)
    feats = centres.repeat_interleave(per_speaker, dim=0) + 1.5 * torch.randn(
        speakers * per_speaker, frames, feat_dim
    )
    labels = torch.arange(speakers).repeat_interleave(per_speaker)
    model = Xvector(feat_dim, embedding_dim=16, frame_channels=(32, 32, 32, 32, 64))
    head = Softmax(16, speakers)
    params = list(model.parameters()) + list(head.parameters())
    optimiser = torch.optim.Adam(params, lr=1e-2)
    first_loss = None
    for _ in range(30):
        loss, acc = head(model(feats), labels)
        first_loss = first_loss if first_loss is not None else loss.item()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    assert acc.item() > 0.9
    assert loss.item() < 0.25 * first_loss
