"""Trainer: schedules, checkpoint averaging, a tiny run that learns, resume, and DDP."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from voiceprint.artifact import load_checkpoint
from voiceprint.config import ExperimentConfig, TrainConfig, load_config
from voiceprint.data.protocol import prepare
from voiceprint.training.trainer import average_states, learning_rate, margin_at, train

TINY = [
    "model.params={frame_channels: [48, 48, 48, 48, 96]}",
    "model.embedding_dim=32",
    "train.batch_size=8",
    "train.crop_seconds=1.0",
    "train.lr=0.005",
    "eval.bootstrap=50",
]


def tiny_config(root: Path, exp: Path, *extra: str) -> ExperimentConfig:
    return load_config(None, [f"data.root={root}", f"exp_dir={exp}", *TINY, *extra])


def test_learning_rate_schedule() -> None:
    cfg = TrainConfig(epochs=10, lr=1e-3, min_lr=1e-5, warmup_epochs=2, scheduler="cosine")
    assert learning_rate(cfg, 1.0) == pytest.approx(5e-4)
    assert learning_rate(cfg, 2.0) == pytest.approx(1e-3)
    assert learning_rate(cfg, 6.0) == pytest.approx(1e-5 + 0.5 * (1e-3 - 1e-5))
    assert learning_rate(cfg, 10.0) == pytest.approx(1e-5)
    step = TrainConfig(
        epochs=30,
        lr=1e-2,
        warmup_epochs=0,
        scheduler="step",
        step_every=10,
        step_gamma=0.1,
        min_lr=1e-6,
    )
    assert learning_rate(step, 25) == pytest.approx(1e-4)
    with pytest.raises(ValueError, match="unknown scheduler"):
        learning_rate(TrainConfig(scheduler="linear", warmup_epochs=0), 3)


def test_margin_warmup() -> None:
    config = load_config(
        None,
        [
            "loss.margin=0.2",
            "loss.margin_warmup_epochs=4",
            "train.epochs=10",
            "train.finetune_margin=0.4",
        ],
    )
    assert [round(margin_at(config, e), 3) for e in (0, 1, 3, 9, 10)] == [0.05, 0.1, 0.2, 0.2, 0.4]


def test_average_states() -> None:
    a = {"w": torch.zeros(2), "n": torch.tensor(1)}
    b = {"w": torch.ones(2) * 2, "n": torch.tensor(5)}
    avg = average_states([a, b])
    assert torch.equal(avg["w"], torch.ones(2)) and int(avg["n"]) == 5


def test_train_learns_and_resumes(synthetic_root: Path, tmp_path: Path) -> None:
    config = tiny_config(synthetic_root, tmp_path, "train.epochs=6", "train.average_last=2")
    prepared = prepare(config, progress=False)
    path = train(config, prepared, progress=False)
    assert path.name == "xvector_gap_softmax_checkpoint.pth"
    state = load_checkpoint(path)
    history = state["history"]
    assert [h["epoch"] for h in history] == [1, 2, 3, 4, 5, 6]
    assert history[-1]["loss"] < 0.8 * history[0]["loss"]
    assert state["averaged_epochs"] == 2
    assert (tmp_path / config.name / "training.png").stat().st_size > 1000
    more = tiny_config(synthetic_root, tmp_path, "train.epochs=7", "train.average_last=2")
    train(more, prepared, resume=True, progress=False)
    resumed = load_checkpoint(path)
    assert [h["epoch"] for h in resumed["history"]] == [1, 2, 3, 4, 5, 6, 7]
    assert resumed["history"][:6] == history


@pytest.mark.slow
def test_torchrun_two_cpu_processes(synthetic_root: Path, tmp_path: Path) -> None:
    """DDP with gloo: 2 CPU processes train one epoch and rank 0 writes the checkpoint."""
    torchrun = Path(sys.executable).with_name("torchrun")
    overrides = [
        f"data.root={synthetic_root}",
        f"exp_dir={tmp_path}",
        *TINY,
        "train.epochs=1",
        "train.threads=1",
    ]
    env = {**os.environ, "VOICEPRINT_CPU": "1", "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [
            str(torchrun),
            "--standalone",
            "--nproc_per_node=2",
            "-m",
            "voiceprint",
            "train",
            "--quiet",
            *overrides,
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "2 process(es)" in result.stderr
    assert "epoch 1/1" in result.stderr
    state = load_checkpoint(tmp_path / "xvector_gap_softmax" / "xvector_gap_softmax_checkpoint.pth")
    assert state["epoch"] == 1


def test_bfloat16_training_graph_matches_float32() -> None:
    """train.precision=bf16: same loss as float32 to bf16 accuracy, float32 gradients."""
    from voiceprint.training.trainer import TrainingGraph

    base = ["model.name=ecapa_tdnn", "model.pooling=asp", "model.params.channels=32"]
    base += ["model.embedding_dim=16", "loss.name=aamsoftmax", "features.kind=fbank"]
    waves = 0.1 * torch.randn(4, 8000, generator=torch.Generator().manual_seed(0))
    labels = torch.tensor([0, 1, 2, 1])
    losses = {}
    for precision in ("fp32", "bf16"):
        torch.manual_seed(0)
        graph = TrainingGraph(load_config(None, [*base, f"train.precision={precision}"]), 3)
        loss, _ = graph.eval()(waves, labels)
        loss.backward()
        grads = [p.grad for p in graph.model.parameters()]
        assert all(g is not None and g.dtype == torch.float32 for g in grads)
        assert all(bool(torch.isfinite(g).all()) for g in grads)
        losses[precision] = float(loss.detach())
    assert losses["bf16"] != losses["fp32"]  # the trunk did run in bfloat16
    assert losses["bf16"] == pytest.approx(losses["fp32"], rel=0.03)


def test_unknown_precision_is_refused() -> None:
    from voiceprint.training.trainer import TrainingGraph

    with pytest.raises(ValueError, match="train.precision"):
        TrainingGraph(load_config(None, ["train.precision=fp8"]), 3)


def test_cpu_has_native_bf16_reads_the_flags(tmp_path: Path) -> None:
    from voiceprint.training.trainer import cpu_has_native_bf16

    with_bf16, without = tmp_path / "a", tmp_path / "b"
    with_bf16.write_text("processor : 0\nflags : fpu sse2 avx512f avx512_bf16\n")
    without.write_text("processor : 0\nflags : fpu sse2 avx2\n")
    assert cpu_has_native_bf16(with_bf16) is True
    assert cpu_has_native_bf16(without) is False
    assert cpu_has_native_bf16(tmp_path / "missing") is None
