"""Trainer: schedules, checkpoint averaging, a tiny run that learns, resume, and DDP."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from voiceprint.artifact import load_train_state, read_model
from voiceprint.config import ExperimentConfig, TrainConfig, load_config
from voiceprint.experiment import Experiment
from voiceprint.release import release
from voiceprint.training.trainer import average_states, learning_rate, margin_at, train

TINY = [
    "model.params={frame_channels: [48, 48, 48, 48, 96]}",
    "model.embedding_dim=32",
    "train.batch_size=8",
    "train.crop_seconds=1.0",
    "train.lr=0.005",
    "eval.bootstrap=50",
    # The lab recipe's augmentation off: tiny runs stay fast and deterministic to assert on.
    "augment.speed_perturb=false",
    "augment.noise_prob=0.0",
    "augment.reverb_prob=0.0",
    "augment.specaugment=false",
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
    prepared = Experiment(config).prepare(progress=False)
    path = train(config, prepared, progress=False)
    assert path.name == "train_state.pth"
    state = load_train_state(path)
    history = state["history"]
    assert [h["epoch"] for h in history] == [1, 2, 3, 4, 5, 6]
    assert history[-1]["loss"] < 0.8 * history[0]["loss"]
    assert len(state["recent"]) == 2  # the averaging window ends with the last weights
    assert all(torch.equal(state["recent"][-1][k], v) for k, v in state["model"].items())
    assert (tmp_path / config.name / "training.png").stat().st_size > 1000
    # training writes no model: the release does, with the average of the last 2 epochs
    assert not Experiment(config).model_file.exists()
    model_path, _ = release(config, progress=False)
    shipped = read_model(model_path)
    assert shipped["provenance"]["averaged_epochs"] == 2
    averaged = average_states(state["recent"])
    assert all(torch.equal(shipped["encoder"][k], v) for k, v in averaged.items())
    assert not {"head", "optimizer", "recent", "rng"} & set(shipped)
    more = tiny_config(synthetic_root, tmp_path, "train.epochs=7", "train.average_last=2")
    train(more, prepared, resume=True, progress=False)
    resumed = load_train_state(path)
    assert [h["epoch"] for h in resumed["history"]] == [1, 2, 3, 4, 5, 6, 7]
    assert resumed["history"][:6] == history


def torchrun_train(overrides: list[str], processes: int = 2) -> str:
    """``voiceprint train --quiet`` under torchrun on CPU processes; returns its stderr."""
    torchrun = Path(sys.executable).with_name("torchrun")
    env = {**os.environ, "VOICEPRINT_CPU": "1", "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [
            str(torchrun),
            "--standalone",
            f"--nproc_per_node={processes}",
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
    return result.stderr


@pytest.mark.slow
def test_torchrun_two_cpu_processes(synthetic_root: Path, tmp_path: Path) -> None:
    """DDP with gloo: 2 CPU processes train one epoch and rank 0 writes the checkpoint."""
    overrides = [
        f"data.root={synthetic_root}",
        f"exp_dir={tmp_path}",
        *TINY,
        "train.epochs=1",
        "train.threads=1",
    ]
    stderr = torchrun_train(overrides)
    assert "2 process(es)" in stderr
    assert "epoch 1/1" in stderr
    state = load_train_state(tmp_path / "xvector_gap_softmax" / "train_state.pth")
    assert state["epoch"] == 1
    assert read_model(tmp_path / "xvector_gap_softmax" / "model.pth")["provenance"]["epochs"] == 1


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


def test_compiled_encoder_trains_as_the_eager_one() -> None:
    """train.compile: the inductor-compiled encoder gives the eager losses and gradients
    (float32, to kernel rounding) over three steps, and its state_dict keys do not change,
    so checkpoints, averaging and export read it as before."""
    from voiceprint.training.trainer import TrainingGraph, compile_encoder

    base = ["model.name=ecapa_tdnn", "model.pooling=asp", "model.params.channels=32"]
    base += ["model.embedding_dim=16", "loss.name=aamsoftmax", "features.kind=fbank"]
    base += ["augment.noise_prob=0", "augment.reverb_prob=0"]
    waves = 0.1 * torch.randn(4, 8000, generator=torch.Generator().manual_seed(0))
    labels = torch.tensor([0, 1, 2, 1])
    runs = {}
    for compiled in (False, True):
        torch.manual_seed(0)
        graph = TrainingGraph(load_config(None, base), 3).train()
        keys = list(graph.model.state_dict())
        if compiled:
            assert compile_encoder(graph.model)
        assert list(graph.model.state_dict()) == keys
        optimizer = torch.optim.SGD(graph.parameters(), lr=0.01)
        losses = []
        for _ in range(3):
            loss, _ = graph(waves, labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(float(loss.detach()))
        runs[compiled] = losses, [p.detach().clone() for p in graph.model.parameters()]
    assert runs[True][0] == pytest.approx(runs[False][0], rel=1e-4)
    for compiled_weight, eager_weight in zip(runs[True][1], runs[False][1], strict=True):
        torch.testing.assert_close(compiled_weight, eager_weight, rtol=1e-2, atol=1e-3)


def test_compile_without_a_compiler_trains_eagerly(monkeypatch: pytest.MonkeyPatch) -> None:
    from voiceprint.training import trainer

    monkeypatch.setattr(trainer.shutil, "which", lambda name: None)
    model = torch.nn.Linear(2, 2)
    assert trainer.compile_encoder(model) is False
    assert model._compiled_call_impl is None  # not compiled


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


AUGMENTED = ["augment.noise_prob=0.5", "augment.reverb_prob=0.3", "augment.specaugment=true"]


class KilledError(Exception):
    """Stands in for a kill -9 between two epochs."""


@pytest.mark.parametrize("source", ["memory", "shards"])
def test_resume_equals_an_uninterrupted_run(
    synthetic_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, source: str
) -> None:
    """3 epochs in one go == 2 epochs, a kill, then --resume for the last: same weights,
    from memory and from shards read by 2 DataLoader workers that augment."""
    from voiceprint.training import trainer

    streamed = []
    if source == "shards":
        pytest.importorskip("webdataset")
        from voiceprint.data.corpus import scan_split
        from voiceprint.data.shards import write_shards

        write_shards(scan_split(synthetic_root, "train"), tmp_path / "sh", progress=False)
        streamed = [f"data.shards={tmp_path / 'sh'}", "train.workers=2"]

    def run(exp: Path, kill_at: int | None = None) -> dict:
        config = tiny_config(synthetic_root, exp, "train.epochs=3", *AUGMENTED, *streamed)
        prepared = Experiment(config).prepare(progress=False)
        if kill_at is not None:
            real = trainer.Trainer._epoch

            def epoch_or_kill(self, model_graph, graph, optimizer, batches, epoch, total):
                if epoch == kill_at:
                    raise KilledError
                return real(self, model_graph, graph, optimizer, batches, epoch, total)

            with monkeypatch.context() as patch:
                patch.setattr(trainer.Trainer, "_epoch", epoch_or_kill)
                with pytest.raises(KilledError):
                    train(config, prepared, progress=False)
            assert load_train_state(Experiment(config).train_state)["epoch"] == 2
            train(config, prepared, resume=True, progress=False)
        else:
            train(config, prepared, progress=False)
        return load_train_state(Experiment(config).train_state)

    whole = run(tmp_path / "whole")
    resumed = run(tmp_path / "resumed", kill_at=2)
    assert resumed["epoch"] == whole["epoch"] == 3
    for name in ("model", "head"):
        for key, value in whole[name].items():
            assert torch.equal(value, resumed[name][key]), f"{name}.{key} differs"
    assert [h["loss"] for h in resumed["history"]] == [h["loss"] for h in whole["history"]]
    assert resumed["rng"]["world_size"] == 1
    for key, state in whole["rng"]["rank0_state"].items():
        assert torch.equal(state, resumed["rng"]["rank0_state"][key])


def test_each_rank_draws_its_own_augmentation() -> None:
    from voiceprint.data.dataset import stream_seed
    from voiceprint.training.trainer import TrainingGraph

    config = load_config(None, [*TINY, *AUGMENTED, "augment.noise_prob=1.0"])
    waves = 0.1 * torch.randn(4, 16000, generator=torch.Generator().manual_seed(0))
    labels = torch.tensor([0, 1, 2, 3])
    graph = TrainingGraph(config, 4).train()
    drawn = {}
    for rank, epoch in ((0, 0), (1, 0), (0, 1), (0, 0)):
        graph.reseed(config.seed, rank, epoch)
        drawn[(rank, epoch)] = graph.wave_augment(waves, labels=labels)
    assert not torch.equal(drawn[(0, 0)], drawn[(1, 0)])  # ranks differ
    assert not torch.equal(drawn[(0, 0)], drawn[(0, 1)])  # epochs differ
    graph.reseed(config.seed, 0, 0)
    assert torch.equal(graph.wave_augment(waves, labels=labels), drawn[(0, 0)])  # reproducible
    seeds = {stream_seed(42, r, e, s) for r in range(2) for e in range(3) for s in range(3)}
    assert len(seeds) == 18


def test_a_kill_during_a_checkpoint_write_keeps_the_previous_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from voiceprint import artifact

    path = tmp_path / "ckpt.pth"
    artifact.save_train_state(path, {"model": {"w": torch.ones(3)}, "epoch": 1})

    def dies_halfway(payload, target, *args, **kwargs):
        Path(target).write_bytes(b"PK\x03\x04 half a zip")
        raise KeyboardInterrupt  # the process is killed mid-write

    monkeypatch.setattr(torch, "save", dies_halfway)  # artifact imports torch when saving
    with pytest.raises(KeyboardInterrupt):
        artifact.save_train_state(path, {"model": {"w": torch.zeros(3)}, "epoch": 2})
    monkeypatch.undo()
    state = load_train_state(path)
    assert state["epoch"] == 1 and torch.equal(state["model"]["w"], torch.ones(3))
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.pth"]  # no partial file left


def test_train_notices_changed_data_settings(synthetic_root: Path, tmp_path: Path) -> None:
    config = tiny_config(synthetic_root, tmp_path, "data.train_utts=4")
    assert Experiment(config).prepared()[0] is None
    Experiment(config).prepare(progress=False)
    reused, reason = Experiment(config).prepared()
    assert reused is not None and reason == ""
    changed = tiny_config(synthetic_root, tmp_path, "data.train_utts=5")
    again, reason = Experiment(changed).prepared()
    assert again is None and "data.train_utts: 4 -> 5" in reason


def test_optimizer_names_say_what_they_build() -> None:
    from voiceprint.training.trainer import _optimizer

    graph = torch.nn.Linear(2, 2)
    assert type(_optimizer(graph, TrainConfig(optimizer="adamw"))) is torch.optim.AdamW
    assert type(_optimizer(graph, TrainConfig(optimizer="adam"))) is torch.optim.Adam
    assert type(_optimizer(graph, TrainConfig(optimizer="sgd"))) is torch.optim.SGD
    with pytest.raises(ValueError, match="valid: adamw, adam, sgd"):
        _optimizer(graph, TrainConfig(optimizer="lamb"))


def _ddp_step(rank: int, world: int, init_file: str, out_dir: str) -> None:
    """One DDP step of the trainer's graph on this rank's own batch; saves what it saw."""
    import torch.distributed as dist

    from voiceprint.training.trainer import TrainingGraph, _optimizer

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    config = load_config(None, [*TINY, *AUGMENTED, "augment.noise_prob=1.0"])
    torch.manual_seed(config.seed)  # the same initial weights on every rank
    graph = TrainingGraph(config, 4)
    ddp = torch.nn.parallel.DistributedDataParallel(graph)
    optimizer = _optimizer(graph, config.train)
    graph.reseed(config.seed, rank, 0)
    waves = 0.1 * torch.randn(4, 16000, generator=torch.Generator().manual_seed(100 + rank))
    labels = torch.tensor([0, 1, 2, 3])
    ddp.train()
    augmented = graph.wave_augment(torch.zeros(4, 16000) + 0.05, labels=labels)
    loss, _ = ddp(waves, labels)
    loss.backward()
    optimizer.step()
    torch.save(
        {
            # Parameters (BatchNorm running statistics are per-rank buffers, synchronised
            # from rank 0 at the start of each forward, so they differ after a step).
            "weights": {k: v.detach().clone() for k, v in graph.named_parameters()},
            "augmented": augmented,
        },
        Path(out_dir) / f"rank{rank}.pt",
    )
    dist.destroy_process_group()


@pytest.mark.slow
def test_ddp_ranks_share_weights_and_draw_their_own_augmentation(tmp_path: Path) -> None:
    """2 gloo processes: gradients are averaged (equal weights after a step on different
    batches), while each rank's augmentation differs."""
    import torch.multiprocessing as mp

    mp.spawn(_ddp_step, args=(2, str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    assert not torch.equal(ranks[0]["augmented"], ranks[1]["augmented"])
    for key, value in ranks[0]["weights"].items():
        torch.testing.assert_close(value, ranks[1]["weights"][key], rtol=0, atol=1e-6)
    single = initial_graph_weights()
    moved = [
        k for k, v in ranks[0]["weights"].items() if k in single and not torch.equal(v, single[k])
    ]
    assert moved, "the step changed no weight"


def initial_graph_weights() -> dict[str, torch.Tensor]:
    from voiceprint.training.trainer import TrainingGraph

    config = load_config(None, [*TINY, *AUGMENTED, "augment.noise_prob=1.0"])
    torch.manual_seed(config.seed)
    return dict(TrainingGraph(config, 4).named_parameters())


HALF_BATCH_STEPS = 5


def _frozen_batchnorm(graph: torch.nn.Module) -> None:
    """Normalise with the running statistics: what ranks would otherwise not share."""
    for module in graph.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.eval()


def _half_batch_data() -> tuple[torch.Tensor, torch.Tensor]:
    waves = 0.1 * torch.randn(8, 16000, generator=torch.Generator().manual_seed(7))
    return waves, torch.tensor([0, 1, 2, 3, 0, 1, 2, 3])


def _half_batch_steps(graph: torch.nn.Module, waves: torch.Tensor, labels: torch.Tensor) -> None:
    from voiceprint.training.trainer import _optimizer

    config = load_config(None, TINY)
    optimizer = _optimizer(graph.module if hasattr(graph, "module") else graph, config.train)
    graph.train()
    _frozen_batchnorm(graph)
    for _ in range(HALF_BATCH_STEPS):
        loss, _ = graph(waves, labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()


def _tiny_graph() -> torch.nn.Module:
    from voiceprint.training.trainer import TrainingGraph

    config = load_config(None, TINY)
    torch.manual_seed(config.seed)
    return TrainingGraph(config, 4)


def _half_batch_rank(rank: int, world: int, init_file: str, out_dir: str) -> None:
    """This rank's half of the batch, DDP-averaged; saves its final weights."""
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    graph = _tiny_graph()
    waves, labels = _half_batch_data()
    half = slice(rank * 4, rank * 4 + 4)
    _half_batch_steps(torch.nn.parallel.DistributedDataParallel(graph), waves[half], labels[half])
    weights = {k: v.detach().clone() for k, v in graph.named_parameters()}
    torch.save(weights, Path(out_dir) / f"half{rank}.pt")
    dist.destroy_process_group()


@pytest.mark.slow
def test_two_processes_with_half_the_batch_equal_one_with_the_whole(tmp_path: Path) -> None:
    """5 optimiser steps: 2 gloo processes on 4 clips each end where 1 process on all 8
    ends, to 1e-4 of the distance the weights moved. BatchNorm normalises with its running
    statistics here: with batch statistics each rank normalises its own half, which is
    the one thing DDP does not share (2 ranks then end 55% of a step apart; CPU has no
    SyncBatchNorm)."""
    import torch.multiprocessing as mp

    mp.spawn(_half_batch_rank, args=(2, str(tmp_path / "init"), str(tmp_path)), nprocs=2)
    graph = _tiny_graph()
    start = {k: v.detach().clone() for k, v in graph.named_parameters()}
    _half_batch_steps(graph, *_half_batch_data())
    whole = dict(graph.named_parameters())
    halves = torch.load(tmp_path / "half0.pt", weights_only=True)

    def norm(tensors: dict) -> float:
        return float(sum(t.square().sum() for t in tensors.values()).sqrt())

    moved = norm({k: whole[k].detach() - start[k] for k in start})
    apart = norm({k: whole[k].detach() - halves[k] for k in start})
    assert moved > 0.1  # the steps did something
    assert apart <= 1e-4 * moved
