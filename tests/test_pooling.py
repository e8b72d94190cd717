"""Pooling layers: shapes, reference values, and padding invariance."""

from __future__ import annotations

import pytest
import torch

from voiceprint.pooling import (
    AttentiveStatisticsPooling,
    GlobalAveragePooling,
    StatisticsPooling,
    build_pooling,
    length_mask,
)

torch.set_num_threads(1)

POOLINGS = ["gap", "stats", "asp"]


def _make(name: str, channels: int) -> torch.nn.Module:
    kwargs = {"attention_channels": 8} if name == "asp" else {}
    torch.manual_seed(0)
    return build_pooling(name, channels, **kwargs).eval()


def test_gap_lab_shape() -> None:
    """The lab builds it without arguments: GlobalAveragePooling()."""
    x = torch.randn(64, 1500, 86)
    out = GlobalAveragePooling()(x)
    assert out.shape == (64, 1500)
    torch.testing.assert_close(out, x.mean(dim=-1))
    assert GlobalAveragePooling(1500).output_dim == 1500


def test_stats_matches_torch_reference() -> None:
    x = torch.randn(4, 6, 30)
    out = StatisticsPooling(6)(x)
    assert out.shape == (4, 12)
    torch.testing.assert_close(out[:, :6], x.mean(dim=-1))
    torch.testing.assert_close(out[:, 6:], x.std(dim=-1, unbiased=False))


def test_stats_with_lengths_matches_slices() -> None:
    x = torch.randn(2, 3, 10)
    out = StatisticsPooling(3)(x, torch.tensor([10, 4]))
    torch.testing.assert_close(out[1, :3], x[1, :, :4].mean(dim=-1))
    torch.testing.assert_close(out[1, 3:], x[1, :, :4].std(dim=-1, unbiased=False))


@pytest.mark.parametrize("name", POOLINGS)
def test_output_dim_and_shape(name: str) -> None:
    pool = _make(name, 16)
    out = pool(torch.randn(3, 16, 25))
    assert out.shape == (3, pool.output_dim)
    assert pool.output_dim == (16 if name == "gap" else 32)


@pytest.mark.parametrize("garbage", [1e6, float("nan"), float("inf")])
@pytest.mark.parametrize("name", POOLINGS)
def test_padding_never_changes_the_output(name: str, garbage: float) -> None:
    pool = _make(name, 8)
    torch.manual_seed(1)
    items = [torch.randn(1, 8, n) for n in (31, 17, 5)]
    padded = torch.full((3, 8, 31), garbage)
    for i, item in enumerate(items):
        padded[i, :, : item.shape[-1]] = item[0]
    lengths = torch.tensor([item.shape[-1] for item in items])
    with torch.no_grad():
        batched = pool(padded, lengths)
        alone = torch.cat([pool(item) for item in items])
    assert torch.isfinite(batched).all()
    torch.testing.assert_close(batched, alone, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", POOLINGS)
def test_no_lengths_equals_full_lengths(name: str) -> None:
    pool = _make(name, 4)
    x = torch.randn(2, 4, 12)
    with torch.no_grad():
        torch.testing.assert_close(pool(x), pool(x, torch.tensor([12, 12])))


def test_asp_with_uniform_attention_equals_stats() -> None:
    pool = AttentiveStatisticsPooling(5, attention_channels=4)
    final = pool.attention[-1]
    torch.nn.init.zeros_(final.weight)
    torch.nn.init.zeros_(final.bias)
    x = torch.randn(3, 5, 20)
    lengths = torch.tensor([20, 9, 3])
    torch.testing.assert_close(pool(x, lengths), StatisticsPooling(5)(x, lengths))


def test_asp_attention_is_per_channel_and_trainable() -> None:
    torch.manual_seed(0)
    pool = AttentiveStatisticsPooling(6, attention_channels=4, global_context=False)
    x = torch.randn(2, 6, 15, requires_grad=True)
    out = pool(x)
    assert out.shape == (2, 12)
    # Attention moves the weighted mean away from the plain mean.
    assert not torch.allclose(out[:, :6], x.mean(dim=-1), atol=1e-4)
    out.sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    assert all(p.grad is not None for p in pool.parameters())


def test_asp_global_context_changes_input_width() -> None:
    with_context = AttentiveStatisticsPooling(6, attention_channels=4)
    without = AttentiveStatisticsPooling(6, attention_channels=4, global_context=False)
    assert with_context.attention[0].in_channels == 18
    assert without.attention[0].in_channels == 6


def test_length_mask() -> None:
    mask = length_mask(torch.tensor([3, 1]), 2, 4, torch.device("cpu"))
    assert mask.shape == (2, 1, 4)
    assert mask[:, 0].tolist() == [[True, True, True, False], [True, False, False, False]]
    with pytest.raises(ValueError, match="lengths"):
        length_mask(torch.tensor([3, 1, 2]), 2, 4, torch.device("cpu"))


def test_constant_input_keeps_finite_gradient() -> None:
    x = torch.ones(2, 3, 10, requires_grad=True)
    StatisticsPooling(3)(x).sum().backward()
    assert torch.isfinite(x.grad).all()


def test_unknown_pooling_lists_valid_names() -> None:
    with pytest.raises(KeyError, match="gap"):
        build_pooling("no-such-pooling", 4)


@pytest.mark.parametrize("name", POOLINGS)
def test_pooling_stays_float32_under_bfloat16_autocast(name: str) -> None:
    pool = _make(name, 8)
    x = (5.0 + torch.randn(2, 8, 40)).bfloat16()  # offset: a variance prone to cancellation
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = pool(x, torch.tensor([40, 23]))
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, pool(x.float(), torch.tensor([40, 23])))
