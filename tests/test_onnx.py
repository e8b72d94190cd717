"""ONNX export: torch and onnxruntime agree on random lengths; metadata; the ONNX embedder."""

from __future__ import annotations

import atexit
import functools
import shutil
import tempfile
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from voiceprint.artifact import inference_of, write_model
from voiceprint.config import ExperimentConfig
from voiceprint.embedder import (
    Embedder,
    InferenceSpec,
    OnnxEmbedder,
    SpeakerEncoder,
    load_embedder,
)
from voiceprint.features import build_frontend
from voiceprint.models import build_model
from voiceprint.onnx_export import export_onnx
from voiceprint.runners import OnnxRunner, TorchRunner
from voiceprint.scoring import Backend, Decision


def tiny_config() -> ExperimentConfig:
    """A small ECAPA-TDNN on 24 log-Mel bands: fast to build, export and run."""
    cfg = ExperimentConfig(name="tiny_ecapa")
    cfg.features.kind = "fbank"
    cfg.features.n_mels = 24
    cfg.model.name = "ecapa"
    cfg.model.pooling = "asp"
    cfg.model.embedding_dim = 32
    cfg.model.params = {
        "channels": 16,
        "scale": 2,
        "se_channels": 8,
        "attention_channels": 8,
        "dilations": [2, 3],
    }
    return cfg


def make_tiny_checkpoint(
    path: Path,
    seed: int = 0,
    decision: Decision | None = None,
    config: ExperimentConfig | None = None,
    state: dict[str, torch.Tensor] | None = None,
) -> Path:
    """Save a random (or given ``state``) tiny encoder as a voiceprint model file."""
    cfg = config or tiny_config()
    torch.manual_seed(seed)
    frontend = build_frontend(cfg.features)
    model = build_model(cfg.model, frontend.dim)
    if state is not None:
        model.load_state_dict(state)
    else:
        # Non-trivial BatchNorm statistics, so eval-mode normalisation is exercised too.
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm1d):
                module.running_mean.uniform_(-0.2, 0.2)
                module.running_var.uniform_(0.5, 2.0)
    return write_model(
        path,
        encoder=model.state_dict(),
        inference=inference_of(cfg, frontend.dim),
        backend=Backend(decision=decision),
        provenance={"recipe": cfg.to_dict()},
    )


@functools.cache
def tiny_exported() -> tuple[Path, Path]:
    """(checkpoint, ONNX file) of the tiny model, exported once per test session.

    Export traces the model (seconds), so the tests that only need an ONNX file share it.
    The checkpoint's decision: threshold 0.25, FAR calibration on 1001 even scores.
    """
    folder = Path(tempfile.mkdtemp(prefix="voiceprint-onnx-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    decision = Decision.from_scores(0.25, np.linspace(-0.5, 0.5, 1001))
    checkpoint = make_tiny_checkpoint(folder / "tiny_checkpoint.pth", decision=decision)
    return checkpoint, export_onnx(checkpoint, folder / "tiny.onnx")


@pytest.fixture(scope="module")
def exported() -> tuple[Embedder, Embedder, Path]:
    checkpoint, path = tiny_exported()
    torch_emb, onnx_emb = Embedder.from_checkpoint(checkpoint), OnnxEmbedder(path)
    # the waves here are noise: no speech check
    return torch_emb.with_policy(check=False), onnx_emb.with_policy(check=False), path


def _waves(rng: np.random.Generator, lengths: list[int]) -> list[np.ndarray]:
    return [(0.1 * rng.standard_normal(n)).astype(np.float32) for n in lengths]


def test_torch_and_onnxruntime_agree_on_random_lengths(exported) -> None:
    torch_emb, onnx_emb, _ = exported
    rng = np.random.default_rng(7)
    for _ in range(3):  # batch of 1, several random lengths (0.03 s .. 4 s)
        waves = _waves(rng, [int(rng.integers(torch_emb.min_samples, 64000))])
        diff = np.abs(torch_emb.embed_batch(waves) - onnx_emb.embed_batch(waves)).max()
        assert diff < 1e-4
    lengths = [int(n) for n in rng.integers(torch_emb.min_samples, 48000, size=5)]
    waves = _waves(rng, lengths)
    batched = onnx_emb.embed_batch(waves)  # padded batch of 5
    assert batched.shape == (5, 32)
    assert np.abs(torch_emb.embed_batch(waves) - batched).max() < 1e-4
    # Padding does not leak: each item alone gives the same embedding as in the batch.
    alone = np.concatenate([onnx_emb.embed_batch([w]) for w in waves])
    assert np.abs(alone - batched).max() < 1e-4


def test_graph_has_dynamic_axes_and_metadata(exported) -> None:
    torch_emb, _, path = exported
    model = onnx.load(str(path))
    wave, lengths = model.graph.input
    assert [d.dim_param != "" for d in wave.type.tensor_type.shape.dim] == [True, True]
    assert lengths.type.tensor_type.elem_type == onnx.TensorProto.INT64
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta["voiceprint.model_id"] == torch_emb.model_id
    assert meta["voiceprint.sample_rate"] == "16000"
    assert meta["voiceprint.embedding_dim"] == "32"
    assert meta["voiceprint.threshold"] == "0.250000"
    assert int(meta["voiceprint.min_samples"]) == torch_emb.min_samples == 400
    assert path.stat().st_size < 10 * 2**20


def test_onnx_embedder_carries_the_model_settings(exported, tmp_path: Path) -> None:
    torch_emb, onnx_emb, path = exported
    assert onnx_emb.runtime == "onnxruntime" and torch_emb.runtime == "torch"
    assert onnx_emb.model_id == torch_emb.model_id
    assert onnx_emb.embedding_dim == 32 and onnx_emb.sample_rate == 16000
    assert onnx_emb.decision == torch_emb.decision
    assert onnx_emb.config.model.name == "ecapa"
    # The API of the torch embedder: embed at another rate, embed_file(s).
    rng = np.random.default_rng(3)
    wave = (0.2 * rng.standard_normal(24000)).astype(np.float32)
    np.testing.assert_allclose(onnx_emb.embed(wave, 8000), torch_emb.embed(wave, 8000), atol=1e-4)
    import soundfile as sf

    sf.write(tmp_path / "a.wav", wave, 16000, subtype="FLOAT")
    sf.write(tmp_path / "b.wav", wave[:9000], 16000, subtype="FLOAT")
    files = [tmp_path / "a.wav", tmp_path / "b.wav"]
    np.testing.assert_allclose(
        onnx_emb.embed_files(files, progress=False),
        torch_emb.embed_files(files, progress=False),
        atol=1e-4,
    )
    assert isinstance(load_embedder(path).runner, OnnxRunner)
    assert isinstance(Embedder.from_onnx(path).runner, OnnxRunner)
    assert isinstance(load_embedder(path.parent).runner, TorchRunner)  # folder -> checkpoint
    assert load_embedder(path.parent).runtime == "torch"


def test_too_short_input_is_a_clear_error(exported) -> None:
    from voiceprint.audio import AudioError

    _, onnx_emb, _ = exported
    with pytest.raises(AudioError, match="clip: 0.020 s is shorter than this model's minimum"):
        onnx_emb.embed_batch([np.ones(320, dtype=np.float32)], ["clip"])


def test_decision_at_a_false_accept_rate() -> None:
    nontarget = np.arange(1000) / 1000.0  # FAR(t) = fraction of these >= t
    decision = Decision.from_scores(0.3, nontarget)
    # FAR 1e-3 allows one false accept (0.999): the threshold sits just above 0.998.
    assert decision.far_points[0] == (1e-3, pytest.approx(0.998, abs=1e-9))
    assert len(decision.far_points) == 10  # 1e-4 .. 5e-4 cannot be measured on 1000 trials
    assert decision.at_far(0.01).threshold == pytest.approx(0.989, abs=1e-9)
    between = decision.at_far(0.03).threshold  # interpolated in log(far) between 0.02 and 0.05
    assert 0.949 < between < 0.979
    assert decision.at_far(0.1).rule == "far" and decision.at_far(0.1).far == 0.1
    again = Decision.from_dict(decision.to_dict())
    assert again == decision
    with pytest.raises(ValueError, match="outside the calibrated range"):
        decision.at_far(1e-4)
    with pytest.raises(ValueError, match="no false-accept calibration"):
        Decision(0.3).at_far(0.01)
    # What evaluation stores: the EER threshold and thresholds at a few rates.
    stored = {"threshold": 0.3, "rule": "eer", "far_thresholds": {"0.1": 0.5, "0.01": 0.7}}
    loaded = Decision.from_dict(stored)
    assert loaded.far_points == [(0.01, 0.7), (0.1, 0.5)]
    assert loaded.at_far(0.1).threshold == pytest.approx(0.5)
    assert loaded.at_far(10**-1.5).threshold == pytest.approx(0.6)  # halfway in log(far)


def test_metadata_refuses_a_back_end_of_another_dimension() -> None:
    """A projection (or mean, or cohort) fitted for 6-dim embeddings in the metadata of a
    model that gives 8: refused with the two dimensions named."""
    from voiceprint.onnx_metadata import onnx_metadata, parse_onnx_metadata
    from voiceprint.scoring import Backend

    def metadata(backend: Backend, dim: int) -> dict[str, str]:
        return onnx_metadata(
            model_id="x",
            sample_rate=16000,
            embedding_dim=dim,
            min_samples=400,
            max_seconds=30.0,
            vad=False,
            config=None,
            backend=backend,
            evaluation=None,
        )

    projection = Backend(projection=np.eye(6, dtype=np.float32))
    assert parse_onnx_metadata(metadata(projection, 6), "m.onnx")["backend"].dim == 6
    with pytest.raises(ValueError, match="m.onnx: back-end is for 6-dim embeddings.* gives 8"):
        parse_onnx_metadata(metadata(projection, 8), "m.onnx")
    with pytest.raises(ValueError, match="6-dim"):
        parse_onnx_metadata(metadata(Backend(mean=np.zeros(6, np.float32)), 8), "m.onnx")


def test_not_an_onnx_model(tmp_path: Path) -> None:
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    with pytest.raises(ValueError, match="is not a usable ONNX model"):
        OnnxEmbedder(bad)
    with pytest.raises(FileNotFoundError):
        load_embedder(tmp_path / "missing.onnx")


class _ValueBranching(torch.nn.Module):
    """A toy encoder that branches on tensor values, which export cannot trace."""

    embedding_dim = 24

    def forward(self, feats: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        if lengths is not None and int(lengths.min()) < 1:
            raise ValueError("empty item")
        return feats.mean(dim=1)


def test_export_failure_names_the_code(tmp_path: Path) -> None:
    cfg = tiny_config()
    frontend = build_frontend(cfg.features)
    toy = Embedder(
        TorchRunner(SpeakerEncoder(frontend, _ValueBranching())), InferenceSpec(16000, "toy")
    )
    with pytest.raises(ValueError, match="cannot export model toy to ONNX") as info:
        export_onnx(toy, tmp_path / "toy.onnx")
    assert "test_onnx.py, line" in str(info.value)
    assert "torch.compiler.is_exporting()" in str(info.value)
    assert not (tmp_path / "toy.onnx").exists()


def test_lab_xvector_exports_and_agrees(tmp_path: Path) -> None:
    """The lab's x-vector (MFCC, GAP) exports too; torch and onnxruntime agree."""
    cfg = ExperimentConfig(name="tiny_xvector")
    cfg.model.params = {"frame_channels": [16, 16, 16, 16, 32]}
    cfg.model.embedding_dim = 16
    checkpoint = make_tiny_checkpoint(tmp_path / "x.pth", config=cfg)
    path = export_onnx(checkpoint, tmp_path / "x.onnx")
    torch_emb, onnx_emb = Embedder.from_checkpoint(checkpoint), OnnxEmbedder(path)
    waves = _waves(np.random.default_rng(3), [8000, 20000, 31000])
    assert np.abs(torch_emb.embed_batch(waves) - onnx_emb.embed_batch(waves)).max() < 1e-4
