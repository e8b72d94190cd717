"""The trainer: random-crop batches -> augmentation -> features -> encoder -> loss head.

Runs as one CPU process or under ``torchrun`` with DistributedDataParallel (gloo on CPU,
nccl on GPU). Rank 0 shows a progress bar, logs one line per epoch, draws the training
curves and writes its training state (``train_state.pth``, resumable) after every epoch.
"""

from __future__ import annotations

import logging
import math
import shutil
import time
from collections import deque
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from voiceprint.allocator import keep_freed_memory
from voiceprint.artifact import load_train_state, save_train_state
from voiceprint.config import ExperimentConfig, TrainConfig, save_config
from voiceprint.data.corpus import corpus_of
from voiceprint.data.dataset import (
    CropBatches,
    add_speed_perturbed_speakers,
    corpus_weights,
    load_waves,
    speaker_labels,
)
from voiceprint.data.shards import ShardBatches
from voiceprint.experiment import Experiment, Prepared
from voiceprint.training.distributed import (
    DistInfo,
    all_reduce_mean,
    barrier,
    cleanup,
    init_distributed,
)
from voiceprint.training.graph import TrainingGraph

log = logging.getLogger(__name__)


def cpu_has_native_bf16(cpuinfo: str | Path = "/proc/cpuinfo") -> bool | None:
    """True when the CPU flags list AVX512-BF16 or AMX-BF16; None when unknown (no file)."""
    try:
        text = Path(cpuinfo).read_text()
    except OSError:
        return None
    flags = set(text.split())
    return bool(flags & {"avx512_bf16", "amx_bf16"})


def compile_encoder(model: nn.Module) -> bool:
    """Compile ``model`` in place with torch.compile (inductor), one static graph per crop
    length; its state_dict keys do not change. The front-end (FFT) and the loss (a margin
    that changes by epoch) stay eager. Returns False, with a warning, where no C++
    compiler is found: inductor's CPU kernels need one."""
    if not any(shutil.which(cc) for cc in ("c++", "g++", "clang++")):
        log.warning("train.compile: no C++ compiler (c++, g++, clang++) found; training eagerly")
        return False
    model.compile(dynamic=False)
    log.info("train.compile: the encoder compiles on its first step of each crop length")
    return True


def learning_rate(cfg: TrainConfig, epoch: float) -> float:
    """Learning rate at a fractional epoch: linear warm-up, then cosine/step/constant.

    Fine-tuning epochs (after ``cfg.epochs``) decay from ``finetune_lr`` to ``min_lr``.
    """
    if cfg.finetune_epochs and epoch >= cfg.epochs:
        progress = (epoch - cfg.epochs) / cfg.finetune_epochs
        return cfg.min_lr + 0.5 * (cfg.finetune_lr - cfg.min_lr) * (
            1 + math.cos(math.pi * progress)
        )
    if cfg.warmup_epochs and epoch < cfg.warmup_epochs:
        return cfg.lr * max(epoch / cfg.warmup_epochs, 0.01)
    if cfg.scheduler == "cosine":
        span = max(cfg.epochs - cfg.warmup_epochs, 1)
        progress = min((epoch - cfg.warmup_epochs) / span, 1.0)
        return cfg.min_lr + 0.5 * (cfg.lr - cfg.min_lr) * (1 + math.cos(math.pi * progress))
    if cfg.scheduler == "step":
        return max(cfg.lr * cfg.step_gamma ** int(epoch // cfg.step_every), cfg.min_lr)
    if cfg.scheduler == "constant":
        return cfg.lr
    raise ValueError(f"unknown scheduler {cfg.scheduler!r}; valid: cosine, step, constant")


def margin_at(config: ExperimentConfig, epoch: int) -> float:
    """Margin schedule: linear warm-up from 0, then the configured (or fine-tune) margin."""
    if epoch >= config.train.epochs:
        return config.train.finetune_margin
    warm = config.loss.margin_warmup_epochs
    return config.loss.margin * min(1.0, (epoch + 1) / warm) if warm else config.loss.margin


def _optimizer(graph: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """``train.optimizer``: adamw (decoupled weight decay), adam (L2 added to the
    gradient, as torch.optim.Adam does) or sgd (Nesterov momentum 0.9)."""
    params = [p for p in graph.parameters() if p.requires_grad]
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(
            params, lr=cfg.lr, momentum=0.9, weight_decay=cfg.weight_decay, nesterov=True
        )
    raise ValueError(f"unknown optimizer {cfg.optimizer!r}; valid: adamw, adam, sgd")


def average_states(states: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Element-wise mean of state dicts (integer buffers such as BN counters: the last)."""
    out = {}
    for name, last in states[-1].items():
        if last.is_floating_point():
            out[name] = torch.stack([s[name].float() for s in states]).mean(0).to(last.dtype)
        else:
            out[name] = last.clone()
    return out


class Trainer:
    """Trains one experiment; ``run()`` returns the path of its training state (the
    model that ships is written from it by :func:`voiceprint.release.release`)."""

    def __init__(
        self,
        config: ExperimentConfig,
        prepared: Prepared,
        resume: bool = False,
        progress: bool = True,
    ) -> None:
        self.config = config
        self.prepared = prepared
        self.resume = resume
        self.progress = progress
        self.dist: DistInfo = init_distributed()
        self.experiment = Experiment(config)
        self.state_path = self.experiment.train_state

    def _data(self) -> tuple[CropBatches | ShardBatches, list[str]]:
        """Training batches: streamed from ``data.shards`` by DataLoader workers, or from
        the training list decoded into memory (tiny corpora)."""
        cfg = self.config
        crop = int(cfg.train.crop_seconds * cfg.features.sample_rate)
        if cfg.data.shards:
            if cfg.data.corpus_sampling_power != 1.0 or cfg.train.short_crop_share > 0:
                raise ValueError(
                    "data.corpus_sampling_power and train.short_crop_share apply to training "
                    "from memory; with data.shards leave them at 1.0 and 0"
                )
            shards = ShardBatches(
                cfg.data.shards,
                cfg.train.batch_size,
                crop,
                seed=cfg.seed,
                rank=self.dist.rank,
                world_size=self.dist.world_size,
                workers=cfg.train.workers,
                speed_factors=cfg.augment.speed_factors if cfg.augment.speed_perturb else (),
                augment=cfg.augment,
            )
            if shards.sample_rate != cfg.features.sample_rate:
                raise ValueError(
                    f"{cfg.data.shards} holds {shards.sample_rate} Hz audio, the front-end "
                    f"expects {cfg.features.sample_rate} Hz: write the shards again"
                )
            return shards, shards.speakers
        utts = self.prepared.train
        show = self.progress and self.dist.is_main
        speakers, labels = speaker_labels(utts)
        waves = load_waves(utts, cfg.features.sample_rate, progress=show)
        if cfg.augment.speed_perturb:
            waves, labels, speakers = add_speed_perturbed_speakers(
                waves, labels, speakers, cfg.augment.speed_factors, progress=show
            )
        corpora = list(cfg.data.corpora)
        groups = [corpus_of(speakers[label], corpora) for label in labels]
        batches = CropBatches(
            waves,
            labels,
            cfg.train.batch_size,
            crop,
            seed=cfg.seed,
            rank=self.dist.rank,
            world_size=self.dist.world_size,
            weights=corpus_weights(groups, cfg.data.corpus_sampling_power),
            short_crop_samples=int(cfg.train.short_crop_seconds * cfg.features.sample_rate),
            short_crop_share=cfg.train.short_crop_share,
        )
        return batches, speakers

    def run(self) -> Path:
        cfg, tcfg, info = self.config, self.config.train, self.dist
        torch.manual_seed(cfg.seed)
        np.random.seed(cfg.seed)
        if tcfg.threads:
            torch.set_num_threads(tcfg.threads)
        keep_freed_memory()
        bf16_on_cpu = tcfg.precision == "bf16" and info.device.type == "cpu"
        if bf16_on_cpu and cpu_has_native_bf16() is False:
            log.warning(
                "train.precision=bf16 on a CPU without AVX512-BF16 or AMX: bfloat16 is "
                "emulated there and usually slower than train.precision=fp32"
            )
        total = tcfg.epochs + tcfg.finetune_epochs
        finished = self.experiment.resumable_state() if self.resume else None
        if finished is not None and int(load_train_state(finished)["epoch"]) >= total:
            log.info("%s already trained for %d epochs: nothing to resume", finished, total)
            cleanup(info)
            return finished
        batches, speakers = self._data()
        graph = TrainingGraph(cfg, len(speakers), augment_waves=not batches.augments)
        graph = graph.to(info.device)
        if tcfg.compile:
            compile_encoder(graph.model)
        optimizer = _optimizer(graph, tcfg)
        start_epoch, history = 0, []
        recent: deque[dict[str, torch.Tensor]] = deque(maxlen=max(tcfg.average_last, 1))
        resume_from = self.experiment.resumable_state() if self.resume else None
        if resume_from is not None:
            state = load_train_state(resume_from)
            if state["speakers"] != speakers:
                raise ValueError(f"cannot resume {resume_from}: training speakers differ")
            graph.model.load_state_dict(state["model"])
            graph.head.load_state_dict(state["head"])
            if state.get("optimizer"):
                optimizer.load_state_dict(state["optimizer"])
            start_epoch, history = state["epoch"], state["history"]
            recent.extend(state.get("recent", []))
            saved = state.get("rng", {})
            if saved.get("world_size", info.world_size) != info.world_size:
                log.warning(
                    "resuming a run of %d process(es) on %d: the data shards and augmentation "
                    "streams differ from those of an uninterrupted run",
                    saved["world_size"],
                    info.world_size,
                )
            log.info("resumed %s at epoch %d", resume_from, start_epoch)
        model_graph: nn.Module = graph
        if info.enabled:
            model_graph = nn.parallel.DistributedDataParallel(
                graph, device_ids=[info.device.index] if info.device.type == "cuda" else None
            )
        if info.is_main:
            self.experiment.folder.mkdir(parents=True, exist_ok=True)
            save_config(cfg, self.experiment.config_file)
            n_params = sum(p.numel() for p in graph.model.parameters())
            log.info(
                "training %s: %d speakers, %d crops/epoch, %.2fM encoder parameters, "
                "%d epochs, %d process(es)",
                cfg.name,
                len(speakers),
                len(batches) * tcfg.batch_size * info.world_size,
                n_params / 1e6,
                total,
                info.world_size,
            )
        for epoch in range(start_epoch, total):
            entry = self._epoch(model_graph, graph, optimizer, batches, epoch, total)
            history.append(entry)
            recent.append(
                {k: v.detach().cpu().clone() for k, v in graph.model.state_dict().items()}
            )
            if info.is_main:
                log.info(
                    "epoch %d/%d  loss %.4f  acc %.2f%%  lr %.2e  margin %.2f  %.1fs (cpu %.1fs)",
                    epoch + 1,
                    total,
                    entry["loss"],
                    100 * entry["accuracy"],
                    entry["lr"],
                    entry["margin"],
                    entry["seconds"],
                    entry["cpu_seconds"],
                )
                self._save(graph, optimizer, epoch + 1, speakers, history, recent)
            barrier(info)
        cleanup(info)
        return self.state_path

    def _epoch(
        self,
        model_graph: nn.Module,
        graph: TrainingGraph,
        optimizer: torch.optim.Optimizer,
        batches: CropBatches | ShardBatches,
        epoch: int,
        total: int,
    ) -> dict[str, Any]:
        cfg, tcfg, info = self.config, self.config.train, self.dist
        finetune = epoch >= tcfg.epochs
        batches.crop_samples = int(
            (tcfg.finetune_crop_seconds if finetune else tcfg.crop_seconds)
            * cfg.features.sample_rate
        )
        if isinstance(batches, CropBatches):  # fine-tuning is on long crops only
            batches.short_crop_share = 0.0 if finetune else tcfg.short_crop_share
        graph.reseed(cfg.seed, info.rank, epoch)
        margin = margin_at(cfg, epoch)
        if hasattr(graph.head, "set_margin"):
            graph.head.set_margin(margin)
        model_graph.train()
        started, cpu_started = time.time(), time.process_time()
        loss_sum = acc_sum = 0.0
        steps = len(batches)
        bar = tqdm(
            batches.epoch(epoch),
            total=steps,
            desc=f"epoch {epoch + 1}/{total}",
            unit="batch",
            leave=False,
            disable=not (self.progress and info.is_main),
        )
        lr = learning_rate(tcfg, epoch)
        for step, (waves, labels) in enumerate(bar):
            lr = learning_rate(tcfg, epoch + step / steps)
            for group in optimizer.param_groups:
                group["lr"] = lr
            loss, acc = model_graph(waves.to(info.device), labels.to(info.device))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if tcfg.grad_clip:
                nn.utils.clip_grad_norm_(graph.parameters(), tcfg.grad_clip)
            optimizer.step()
            loss_sum += float(loss.detach())
            acc_sum += float(acc)
            bar.set_postfix(loss=f"{loss_sum / (step + 1):.3f}", acc=f"{acc_sum / (step + 1):.3f}")
        return {
            "epoch": epoch + 1,
            "loss": all_reduce_mean(loss_sum / steps, info),
            "accuracy": all_reduce_mean(acc_sum / steps, info),
            "lr": lr,
            "margin": margin,
            "seconds": time.time() - started,
            "cpu_seconds": time.process_time() - cpu_started,
        }

    def _save(
        self,
        graph: TrainingGraph,
        optimizer: torch.optim.Optimizer,
        epoch: int,
        speakers: list[str],
        history: list[dict[str, Any]],
        recent: deque[dict[str, torch.Tensor]],
    ) -> None:
        from voiceprint.plots import can_draw, plot_training

        save_train_state(
            self.state_path,
            {
                "config": self.config.to_dict(),
                "feat_dim": graph.frontend.dim,
                "model": {k: v.detach().cpu() for k, v in graph.model.state_dict().items()},
                "head": graph.head.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": {"kind": self.config.train.scheduler, "epoch": epoch},
                "epoch": epoch,
                "epochs": self.config.train.epochs + self.config.train.finetune_epochs,
                "speakers": speakers,
                "history": history,
                "recent": list(recent) if self.config.train.average_last > 1 else [],
                # Random streams restart from stream_seed(seed, rank, epoch) each epoch, so
                # these settings and the epoch fix every generator of a resumed run.
                "rng": {
                    "seed": self.config.seed,
                    "world_size": self.dist.world_size,
                    "scheme": "stream_seed(seed, rank, epoch, stream) at each epoch start",
                    "rank0_state": graph.rng_state(),
                },
            },
        )
        picture = self.experiment.picture("training.png")
        if can_draw(str(picture)):
            plot_training(history, picture)


def train(
    config: ExperimentConfig, prepared: Prepared, resume: bool = False, progress: bool = True
) -> Path:
    """Train ``config`` on ``prepared`` data; returns the training state's path."""
    return Trainer(config, prepared, resume=resume, progress=progress).run()
