"""Speaker encoders: shapes for every model x pooling, padding invariance, sizes."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from voiceprint.config import ModelConfig
from voiceprint.models import ECAPA_TDNN, ResNet34, Xvector, build_model

torch.set_num_threads(1)

FEAT_DIM = 20

# Small versions of every family, so the whole file runs in a few seconds.
SMALL: dict[str, dict[str, Any]] = {
    "xvector": {"frame_channels": (16, 16, 16, 16, 32)},
    "ecapa_tdnn": {"channels": 32, "scale": 4, "se_channels": 8, "attention_channels": 8},
    "resnet34": {"base_channels": 4},
    "resnet": {"base_channels": 4, "blocks": (1, 1, 1, 1)},
}
POOLINGS = ["gap", "stats", "asp"]


def _small(name: str, pooling: str, embedding_dim: int = 12) -> torch.nn.Module:
    torch.manual_seed(0)
    params = dict(SMALL[name])
    if pooling == "asp" and name != "ecapa_tdnn":
        params["pooling_params"] = {"attention_channels": 8}
    cfg = ModelConfig(name=name, pooling=pooling, embedding_dim=embedding_dim, params=params)
    return build_model(cfg, FEAT_DIM)


def _n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("pooling", POOLINGS)
@pytest.mark.parametrize("name", sorted(SMALL))
def test_output_shape_every_model_and_pooling(name: str, pooling: str) -> None:
    model = _small(name, pooling)
    assert model.embedding_dim == 12
    feats = torch.randn(3, 40, FEAT_DIM)
    out = model(feats)  # training mode: batch statistics
    assert out.shape == (3, 12)
    out.square().sum().backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
    model.eval()
    with torch.no_grad():
        assert model(feats, torch.tensor([40, 30, 20])).shape == (3, 12)


@pytest.mark.parametrize("pooling", POOLINGS)
@pytest.mark.parametrize("name", sorted(SMALL))
def test_padded_batch_equals_items_alone(name: str, pooling: str) -> None:
    model = _small(name, pooling).eval()
    torch.manual_seed(1)
    items = [torch.randn(1, n, FEAT_DIM) for n in (53, 37, 19)]
    padded = torch.full((3, 53, FEAT_DIM), 1e4)
    for i, item in enumerate(items):
        padded[i, : item.shape[1]] = item[0]
    lengths = torch.tensor([item.shape[1] for item in items])
    with torch.no_grad():
        batched = model(padded, lengths)
        alone = torch.cat([model(item) for item in items])
    torch.testing.assert_close(batched, alone, atol=1e-4, rtol=1e-4)


def test_xvector_lab_shapes() -> None:
    """The lab's x-vector: 30 MFCCs, 100 frames -> frame layer 5 (B, 1500, 86) -> GAP (B, 1500)."""
    model = Xvector(feat_dim=30).eval()
    seen: dict[str, tuple[int, ...]] = {}
    model.pooling.register_forward_hook(
        lambda _m, args, out: seen.update(inp=tuple(args[0].shape), out=tuple(out.shape))
    )
    with torch.no_grad():
        emb = model(torch.randn(2, 100, 30))
    assert seen == {"inp": (2, 1500, 86), "out": (2, 1500)}
    assert emb.shape == (2, 512)


def test_xvector_segment6_is_the_linear_output() -> None:
    model = _small("xvector", "stats").eval()
    feats = torch.randn(2, 30, FEAT_DIM)
    with torch.no_grad():
        pooled = model.pooling(model.frame_layers(feats.transpose(1, 2)), None)
        torch.testing.assert_close(model(feats), model.segment6(pooled))


def test_xvector_rejects_short_inputs() -> None:
    model = _small("xvector", "gap")
    with pytest.raises(ValueError, match="at least 15 frames"):
        model(torch.randn(2, 14, FEAT_DIM))
    with pytest.raises(ValueError, match="at least 15 frames"):
        model(torch.randn(2, 30, FEAT_DIM), torch.tensor([30, 10]))
    model.eval()
    with torch.no_grad():
        assert model(torch.randn(1, 15, FEAT_DIM)).shape == (1, 12)


def test_wrong_feature_dim_is_a_clear_error() -> None:
    for name in SMALL:
        with pytest.raises(ValueError, match=f"\\(B, T, {FEAT_DIM}\\)"):
            _small(name, "stats")(torch.randn(2, 40, FEAT_DIM + 1))


def test_ecapa_parameter_count_matches_paper() -> None:
    # Paper (arXiv 2005.07143, Table 1): 6.2M parameters for C=512, 80 filterbanks.
    n = _n_params(ECAPA_TDNN(feat_dim=80))
    assert n == 6_191_360
    assert abs(n - 6.2e6) / 6.2e6 < 0.03
    # C=1024 with the paper's 1536-channel aggregation layer: 14.7M.
    big = _n_params(ECAPA_TDNN(feat_dim=80, channels=1024, mfa_channels=1536))
    assert abs(big - 14.7e6) / 14.7e6 < 0.03


def test_resnet34_parameter_count() -> None:
    # Thin ResNet34 with 32 base channels and 80 filterbanks: about 6.6M parameters.
    n = _n_params(ResNet34(feat_dim=80))
    assert abs(n - 6.63e6) / 6.63e6 < 0.03


@pytest.mark.parametrize("channels", [256, 1024])
def test_ecapa_other_widths(channels: int) -> None:
    model = ECAPA_TDNN(feat_dim=FEAT_DIM, embedding_dim=8, channels=channels).eval()
    assert model.mfa.out_channels == 3 * channels
    assert model.pooling.output_dim == 6 * channels
    with torch.no_grad():
        assert model(torch.randn(2, 12, FEAT_DIM)).shape == (2, 8)


@pytest.mark.parametrize(("pooling", "width"), [("asp", 192), ("stats", 192), ("gap", 96)])
def test_ecapa_head_follows_pooling(pooling: str, width: int) -> None:
    model = _small("ecapa_tdnn", pooling)
    assert model.pool_norm.num_features == width
    assert model.fc.in_features == width


def test_resnet_downsamples_frequency_and_time() -> None:
    model = _small("resnet34", "stats").eval()
    # 20 bins -> 10 -> 5 -> 3; 4 base channels * 8 = 32 channels at the last stage.
    assert model.pooling.channels == 32 * 3
    seen: dict[str, tuple[int, ...]] = {}
    model.pooling.register_forward_hook(lambda _m, args, _o: seen.update(inp=tuple(args[0].shape)))
    with torch.no_grad():
        model(torch.randn(2, 41, FEAT_DIM))
    assert seen["inp"] == (2, 96, 6)  # 41 -> 21 -> 11 -> 6 frames


def test_build_model_registry_and_params() -> None:
    assert isinstance(_small("xvector", "gap"), Xvector)
    model = build_model(ModelConfig(name="ecapa", pooling="stats", embedding_dim=16), 24)
    assert isinstance(model, ECAPA_TDNN) and model.embedding_dim == 16
    with pytest.raises(TypeError, match="no_such_option"):
        build_model(ModelConfig(name="xvector", params={"no_such_option": 1}), 24)
    with pytest.raises(KeyError, match="xvector"):
        build_model(ModelConfig(name="no-such-model"), 24)


def test_models_hold_no_classifier() -> None:
    for name in SMALL:
        out_layers = [m for m in _small(name, "stats").modules() if isinstance(m, torch.nn.Linear)]
        assert out_layers[-1].out_features == 12


@pytest.mark.parametrize(
    ("name", "layer"), [("xvector", "segment6"), ("ecapa_tdnn", "fc"), ("resnet34", "embedding")]
)
def test_bf16_autocast_ends_before_the_embedding_layer(name: str, layer: str) -> None:
    """Under bfloat16 autocast the trunk runs in bf16, the embedding layer in float32."""
    model = _small(name, "stats", 16).eval()
    seen: dict[str, torch.dtype] = {}
    first_conv = next(
        m for m in model.modules() if isinstance(m, (torch.nn.Conv1d, torch.nn.Conv2d))
    )

    def trunk_hook(module, inputs, output) -> None:
        seen.setdefault("trunk", output.dtype)

    def embedding_hook(module, inputs, output) -> None:
        seen.update(embedding_in=inputs[0].dtype, embedding_out=output.dtype)

    first_conv.register_forward_hook(trunk_hook)
    getattr(model, layer).register_forward_hook(embedding_hook)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(torch.randn(2, 120, FEAT_DIM))
    assert seen == {
        "trunk": torch.bfloat16,
        "embedding_in": torch.float32,
        "embedding_out": torch.float32,
    }
    assert out.dtype == torch.float32
