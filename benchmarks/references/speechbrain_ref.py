"""Trained reference: SpeechBrain 1.1.2's ECAPA-TDNN recipe, trained here from scratch.

Only SpeechBrain's plain-torch modules are used: ``lobes.features.Fbank``,
``processing.features.InputNormalization``, ``lobes.models.ECAPA_TDNN`` (ECAPA_TDNN,
Classifier), ``nnet.losses`` (LogSoftmaxWrapper, AdditiveAngularMargin) and
``augment.time_domain`` (AddNoise, DropFreq, DropChunk). The training loop is ours (no
Brain, no hyperpyyaml). SpeechBrain's package import wants torchaudio, which does not
load beside this torch; :func:`import_speechbrain` puts an empty stand-in module in
``sys.modules`` first (none of the modules above calls it).

The recipe (:class:`SBRecipe`): 80 log-Mel filterbanks with sentence mean normalisation;
ECAPA_TDNN with channels [256, 256, 256, 256, 768] (2.05M parameters), 192-dim
embedding; AAM softmax (m 0.2, s 30) on SpeechBrain's cosine Classifier; white noise at
5-20 dB SNR, DropFreq and DropChunk, each applied to an utterance with probability 0.5;
random 2 s crops, batch 32; Adam 1e-3 (weight decay 2e-6 as in SpeechBrain's VoxCeleb
recipe), the first epoch a linear warm-up, then a linear decay to 1e-5 that ends when
the time budget does. The budget is ``minutes`` on ``threads`` cores, counted as the
process' CPU time (``minutes * 60 * threads`` CPU seconds, all threads together): a
machine shared with other work slows the wall clock but does not cut the reference's
training short. ``budget_clock="wall"`` counts wall-clock time instead.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import json
import logging
import math
import os
import sys
import time
import types
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from voiceprint.data.dataset import CropBatches

log = logging.getLogger(__name__)

SPEECHBRAIN_VERSION = "1.1.2"


def _torchaudio_loads() -> bool:
    """Whether a real torchaudio is installed and imports cleanly beside this torch."""
    if importlib.util.find_spec("torchaudio") is None:
        return False
    try:
        importlib.import_module("torchaudio")
    except Exception:  # noqa: BLE001 - a broken binary raises OSError, ImportError, ...
        for name in [n for n in sys.modules if n == "torchaudio" or n.startswith("torchaudio.")]:
            del sys.modules[name]
        return False
    return True


class _StandInWarning(logging.Filter):
    """Drops SpeechBrain's "cannot detect the torchaudio version" warning."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "torchaudio major version" not in record.getMessage()


def import_speechbrain() -> types.SimpleNamespace:
    """SpeechBrain's classes used here, importing with a torchaudio stand-in if needed.

    Returns a namespace with Fbank, InputNormalization, ECAPA_TDNN, Classifier,
    LogSoftmaxWrapper, AdditiveAngularMargin, AddNoise, DropFreq, DropChunk and version.
    Raises ImportError with the install command when speechbrain is missing.
    """
    if "torchaudio" not in sys.modules and not _torchaudio_loads():
        stand_in = types.ModuleType("torchaudio")
        stand_in.__doc__ = "empty stand-in: the benchmark's SpeechBrain modules never call it"
        sys.modules["torchaudio"] = stand_in
    # Its torchaudio version check would warn about the stand-in on every import.
    logging.getLogger("speechbrain.utils.torch_audio_backend").addFilter(_StandInWarning())
    # Its import-time "quirks" flip process-wide torch settings (TF32 matmuls, TorchScript
    # profiling) that would also change the other systems run in this process.
    os.environ.setdefault("SB_DISABLE_QUIRKS", "disable_jit_profiling,allow_tf32")
    try:
        import speechbrain
        from speechbrain.augment.time_domain import AddNoise, DropChunk, DropFreq
        from speechbrain.lobes.features import Fbank
        from speechbrain.lobes.models.ECAPA_TDNN import ECAPA_TDNN, Classifier
        from speechbrain.nnet.losses import AdditiveAngularMargin, LogSoftmaxWrapper
        from speechbrain.processing.features import InputNormalization
    except ImportError as err:
        raise ImportError(
            f"the SpeechBrain reference needs speechbrain=={SPEECHBRAIN_VERSION}: "
            f"pip install --no-deps speechbrain=={SPEECHBRAIN_VERSION} hyperpyyaml "
            f"(see benchmarks/README.md); import failed: {err}"
        ) from err
    version = getattr(speechbrain, "__version__", "unknown")
    if version != SPEECHBRAIN_VERSION:
        log.warning(
            "speechbrain %s installed; the reference recipe is %s", version, SPEECHBRAIN_VERSION
        )
    return types.SimpleNamespace(
        Fbank=Fbank,
        InputNormalization=InputNormalization,
        ECAPA_TDNN=ECAPA_TDNN,
        Classifier=Classifier,
        LogSoftmaxWrapper=LogSoftmaxWrapper,
        AdditiveAngularMargin=AdditiveAngularMargin,
        AddNoise=AddNoise,
        DropFreq=DropFreq,
        DropChunk=DropChunk,
        version=version,
    )


@dataclass
class SBRecipe:
    """The SpeechBrain ECAPA recipe of issue 3; every field enters the cache key."""

    n_mels: int = 80
    channels: list[int] = field(default_factory=lambda: [256, 256, 256, 256, 768])
    embedding_dim: int = 192
    margin: float = 0.2
    scale: float = 30.0
    snr_db: tuple[float, float] = (5.0, 20.0)
    p_noise: float = 0.5
    p_drop_freq: float = 0.5
    p_drop_chunk: float = 0.5
    drop_chunk_samples: tuple[int, int] = (1000, 2000)  # SpeechBrain VoxCeleb recipe values
    drop_chunk_count: tuple[int, int] = (1, 5)
    drop_freq_count: tuple[int, int] = (1, 3)
    drop_freq_width: float = 0.05
    crop_seconds: float = 2.0
    batch_size: int = 32
    lr: float = 1e-3
    lr_final: float = 1e-5
    weight_decay: float = 2e-6
    warmup_epochs: int = 1
    minutes: float = 60.0
    budget_clock: str = "cpu"  # "cpu": process CPU seconds / threads; "wall": wall clock
    threads: int = 2
    seed: int = 42
    sample_rate: int = 16000

    def key(self, speakers: list[str], utt_ids: list[str]) -> str:
        """Short hash of the recipe (time budget included), the speakers and the training list."""
        recipe = asdict(self)
        minutes = float(self.minutes)  # 60 and 60.0 are the same budget: one key
        recipe["minutes"] = int(minutes) if minutes.is_integer() else minutes
        blob = json.dumps({"recipe": recipe, "speakers": speakers, "utts": utt_ids}, sort_keys=True)
        return hashlib.sha1(blob.encode()).hexdigest()[:12]


class SpeechBrainECAPA(nn.Module):
    """SpeechBrain's Fbank + sentence mean norm + ECAPA_TDNN: waves (B, N) -> (B, D)."""

    def __init__(self, recipe: SBRecipe, sb: types.SimpleNamespace | None = None) -> None:
        super().__init__()
        sb = sb or import_speechbrain()
        self.recipe = recipe
        self.fbank = sb.Fbank(n_mels=recipe.n_mels, sample_rate=recipe.sample_rate)
        self.norm = sb.InputNormalization(norm_type="sentence", std_norm=False)
        self.ecapa = sb.ECAPA_TDNN(
            input_size=recipe.n_mels,
            channels=list(recipe.channels),
            lin_neurons=recipe.embedding_dim,
        )

    def forward(self, waves: torch.Tensor) -> torch.Tensor:
        """waves (B, N) float32 at 16 kHz, all of full length -> embeddings (B, D)."""
        feats = self.fbank(waves)
        feats = self.norm(feats, torch.ones(feats.shape[0], device=feats.device))
        return self.ecapa(feats).squeeze(1)

    @torch.inference_mode()
    def embed(self, wave: np.ndarray) -> np.ndarray:
        """One float32 (N,) wave -> (D,) float32 (call ``eval()`` first)."""
        return self(torch.as_tensor(np.asarray(wave, dtype=np.float32))[None])[0].numpy()


class SBAugment(nn.Module):
    """Noise, DropFreq and DropChunk, each on a random subset of the batch's rows.

    forward(waves (B, N)) -> (B, N); a row is picked for each augmentation independently
    with its probability (torch's global generator).
    """

    def __init__(self, recipe: SBRecipe, sb: types.SimpleNamespace) -> None:
        super().__init__()
        self.stages: list[tuple[float, nn.Module, bool]] = [
            (
                recipe.p_noise,
                sb.AddNoise(snr_low=recipe.snr_db[0], snr_high=recipe.snr_db[1]),
                True,
            ),
            (
                recipe.p_drop_freq,
                sb.DropFreq(
                    drop_freq_low=0,
                    drop_freq_high=1,
                    drop_freq_count_low=recipe.drop_freq_count[0],
                    drop_freq_count_high=recipe.drop_freq_count[1],
                    drop_freq_width=recipe.drop_freq_width,
                ),
                False,
            ),
            (
                recipe.p_drop_chunk,
                sb.DropChunk(
                    drop_length_low=recipe.drop_chunk_samples[0],
                    drop_length_high=recipe.drop_chunk_samples[1],
                    drop_count_low=recipe.drop_chunk_count[0],
                    drop_count_high=recipe.drop_chunk_count[1],
                ),
                True,
            ),
        ]
        for i, (_, module, _) in enumerate(self.stages):
            self.add_module(f"stage{i}", module)

    @torch.no_grad()
    def forward(self, waves: torch.Tensor) -> torch.Tensor:
        out = waves.clone()
        for prob, module, takes_lengths in self.stages:
            rows = torch.rand(out.shape[0]) < prob
            if not bool(rows.any()):
                continue
            picked = out[rows]
            if takes_lengths:
                picked = module(picked, torch.ones(picked.shape[0]))
            else:
                picked = module(picked)
            out[rows] = picked
        return out


def learning_rate(recipe: SBRecipe, epoch: int, step: int, steps: int, progress: float) -> float:
    """Linear warm-up over the first ``warmup_epochs``, then linear decay in ``progress``.

    ``progress`` in [0, 1] is the fraction of the post-warm-up time budget used so far.
    """
    if epoch < recipe.warmup_epochs:
        return recipe.lr * (epoch * steps + step + 1) / (recipe.warmup_epochs * steps)
    progress = min(max(progress, 0.0), 1.0)
    return recipe.lr_final + (recipe.lr - recipe.lr_final) * (1.0 - progress)


def train_speechbrain(
    waves: list[np.ndarray],
    labels: np.ndarray,
    n_classes: int,
    recipe: SBRecipe,
    sb: types.SimpleNamespace | None = None,
    progress: bool = True,
) -> tuple[SpeechBrainECAPA, dict[str, Any]]:
    """Train the recipe for its time budget (see the module docstring; ``progress``: a bar).

    Args:
        waves: training utterances, float32 (N_i,) at 16 kHz.
        labels: (len(waves),) int64 class index of each utterance.
        n_classes: number of training speakers.

    Returns:
        The trained model in eval mode and a dict with ``train_seconds``, ``epochs``
        (fractional), ``steps``, ``n_params``, ``history`` (one entry per epoch).
    """
    sb = sb or import_speechbrain()
    torch.manual_seed(recipe.seed)
    model = SpeechBrainECAPA(recipe, sb)
    classifier = sb.Classifier(input_size=recipe.embedding_dim, out_neurons=n_classes)
    criterion = sb.LogSoftmaxWrapper(sb.AdditiveAngularMargin(recipe.margin, recipe.scale))
    augment = SBAugment(recipe, sb)
    params = [p for m in (model, classifier) for p in m.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=recipe.lr, weight_decay=recipe.weight_decay)
    batches = CropBatches(
        waves,
        labels,
        recipe.batch_size,
        int(recipe.crop_seconds * recipe.sample_rate),
        seed=recipe.seed,
    )
    steps = len(batches)
    if recipe.budget_clock not in ("cpu", "wall"):
        raise ValueError(f"budget_clock must be 'cpu' or 'wall', not {recipe.budget_clock!r}")
    torch.set_num_threads(recipe.threads)
    budget = recipe.minutes * 60.0

    def clock() -> float:
        """Seconds of the budget used: wall time, or CPU time per thread."""
        if recipe.budget_clock == "wall":
            return time.perf_counter() - started
        return (time.process_time() - cpu_started) / recipe.threads

    n_params = sum(p.numel() for p in model.ecapa.parameters())
    log.info(
        "SpeechBrain ECAPA: %d utterances, %d speakers, %.2fM parameters, %d steps/epoch, "
        "%.1f minutes",
        len(waves),
        n_classes,
        n_params / 1e6,
        steps,
        recipe.minutes,
    )
    model.train()
    classifier.train()
    history: list[dict[str, Any]] = []
    started = time.perf_counter()
    cpu_started = time.process_time()
    warm_end = math.nan  # time at the end of the warm-up epochs
    total_steps, epoch, out_of_time = 0, 0, False
    while not out_of_time:
        loss_sum = acc_sum = 0.0
        done = 0
        lr = recipe.lr
        bar = tqdm(
            batches.epoch(epoch),
            total=steps,
            desc=f"SB epoch {epoch + 1}",
            unit="batch",
            leave=False,
            disable=not progress,
        )
        for step, (batch, target) in enumerate(bar):
            elapsed = clock()
            if elapsed >= budget:
                out_of_time = True
                break
            frac = (elapsed - warm_end) / max(budget - warm_end, 1e-9)
            lr = learning_rate(recipe, epoch, step, steps, 0.0 if math.isnan(frac) else frac)
            for group in optimizer.param_groups:
                group["lr"] = lr
            emb = model(augment(batch))
            cosine = classifier(emb[:, None, :])
            loss = criterion(cosine, target[:, None])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            loss_sum += float(loss.detach())
            acc_sum += float((cosine.detach().squeeze(1).argmax(1) == target).float().mean())
            done += 1
            total_steps += 1
            bar.set_postfix(loss=f"{loss_sum / done:.3f}", lr=f"{lr:.1e}")
        bar.close()
        if done:
            history.append(
                {
                    "epoch": epoch + 1,
                    "steps": done,
                    "loss": loss_sum / done,
                    "accuracy": acc_sum / done,
                    "lr": lr,
                    "elapsed": time.perf_counter() - started,
                    "budget_used": clock(),
                }
            )
            h = history[-1]
            log.info(
                "SB epoch %d (%d/%d steps): loss %.3f acc %.1f%% lr %.2e, %.1f min",
                h["epoch"],
                done,
                steps,
                h["loss"],
                100 * h["accuracy"],
                lr,
                h["elapsed"] / 60,
            )
        if not out_of_time:
            epoch += 1
            if epoch == recipe.warmup_epochs:
                warm_end = clock()
    model.eval()
    info = {
        "train_seconds": clock(),
        "wall_seconds": time.perf_counter() - started,
        "cpu_seconds": time.process_time() - cpu_started,
        "epochs": total_steps / steps,
        "steps": total_steps,
        "n_params": n_params,
        "history": history,
    }
    return model, info


def load_or_train(
    cache_dir: str | Path,
    get_waves: Callable[[], list[np.ndarray]],
    labels: np.ndarray,
    speakers: list[str],
    utt_ids: list[str],
    recipe: SBRecipe,
    *,
    retrain: bool = False,
    progress: bool = True,
) -> tuple[SpeechBrainECAPA, dict[str, Any]]:
    """The cached model for this recipe and training list, or a freshly trained one.

    The checkpoint is ``<cache_dir>/speechbrain_ecapa_<key>.pth`` (key: :meth:`SBRecipe.key`);
    ``retrain`` ignores and replaces it. ``get_waves()`` gives the training waves (called
    only when training). The info dict is as from :func:`train_speechbrain` plus
    ``checkpoint`` and ``cached``.
    """
    sb = import_speechbrain()
    path = Path(cache_dir) / f"speechbrain_ecapa_{recipe.key(speakers, utt_ids)}.pth"
    if path.is_file() and not retrain:
        payload = torch.load(path, map_location="cpu", weights_only=True)
        model = SpeechBrainECAPA(recipe, sb)
        model.ecapa.load_state_dict(payload["model"])
        model.eval()
        info = dict(payload["info"])
        info.update({"checkpoint": str(path), "cached": True})
        log.info("SpeechBrain ECAPA: using %s (pass --sb-retrain to train again)", path)
        return model, info
    model, info = train_speechbrain(get_waves(), labels, len(speakers), recipe, sb, progress)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(
        {
            "model": model.ecapa.state_dict(),
            "recipe": asdict(recipe),
            "speakers": speakers,
            "speechbrain": sb.version,
            "info": info,
        },
        path,
    )
    info = dict(info)
    info.update({"checkpoint": str(path), "cached": False})
    return model, info
