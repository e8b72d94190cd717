"""Turn audio into speaker embeddings with a trained model.

    emb = Embedder.from_checkpoint("exp/lab/model.pth")
    vector = emb.embed(wave, sr)          # (D,) float32
    matrix = emb.embed_files(paths)       # (N, D) float32, batched, with a progress bar

    emb = load_embedder("model.onnx")     # model.pth, experiment folder or ONNX file
    done = emb.embed_files_measured(paths, policy=SpeechPolicy(refuse=False))
    done.embeddings, done.seconds, done.no_speech

One :class:`Embedder` for every model, composed of a runner (:mod:`voiceprint.runners`:
``TorchRunner`` for a checkpoint, ``OnnxRunner`` for an ONNX file; ``embedder.runtime``
says which), the model's :class:`InferenceSpec` (sample rate, model id, crop, trimming,
config), its scorer (``embedder.scorer``: back-end, calibration, decision) and a default
:class:`~voiceprint.speech.SpeechPolicy` that any call may replace. Features are rebuilt
from the checkpoint's own settings, so training, evaluation and serving compute them the
same way. An ONNX file (``voiceprint export``) holds front-end and encoder in one graph
and runs on onnxruntime without importing torch: this module, the scorer, the VAD and
audio loading need only numpy, soundfile, soxr and onnxruntime; torch is imported when a
checkpoint is loaded.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from tqdm import tqdm

from voiceprint import audio
from voiceprint.artifact import backend_of, read_model, recipe_of
from voiceprint.config import ExperimentConfig, FeatureConfig, ModelConfig
from voiceprint.experiment import find_model
from voiceprint.runners import OnnxRunner, Runner, TorchRunner
from voiceprint.scoring import Decision, Scorer
from voiceprint.speech import Speech, SpeechPolicy, find_speech

# Waves longer than this are embedded as windows of this length whose embeddings are
# averaged (weighted by duration), so memory stays bounded for hour-long recordings.
WINDOW_SECONDS = 30.0


@dataclass(frozen=True)
class InferenceSpec:
    """What a model file says about running it, besides its weights and its scorer.

    ``max_seconds``: embed at most this much of a wave (0: all of it). ``vad``: the model
    was evaluated with VAD trimming, so its embedders trim by default. ``config``: the
    recipe it was trained with (None for a file without one); ``evaluation``: the dev-set
    summary recorded with the model, or None.
    """

    sample_rate: int
    model_id: str
    max_seconds: float = 0.0
    vad: bool = False
    config: ExperimentConfig | None = None
    evaluation: dict[str, Any] | None = None


class EmbeddedFiles(NamedTuple):
    """:meth:`Embedder.embed_files_measured`: (N, D) embeddings, each file's net speech
    (N,) in seconds, and the files (as given, in order) in which no speech was found and
    that were embedded whole because the policy refused none."""

    embeddings: np.ndarray
    seconds: np.ndarray
    no_speech: list[str]


class Embedder:
    """Waveforms in, embeddings out, for one trained model: a runner (torch or
    onnxruntime), the model's inference spec, its scorer and a default speech policy.

    ``policy`` defaults to checking for speech, refusing input without any, and trimming
    where the model was evaluated so (``spec.vad``). Pass another one to a call, or take
    :meth:`with_policy`: a copy that shares the runner. Nothing a call does changes the
    embedder, so one embedder serves callers with different policies.
    """

    def __init__(
        self,
        runner: Runner,
        spec: InferenceSpec,
        scorer: Scorer | None = None,
        policy: SpeechPolicy | None = None,
    ) -> None:
        self.runner = runner
        self.spec = spec
        self.scorer = scorer if scorer is not None else Scorer()
        self.policy = policy if policy is not None else SpeechPolicy(trim=spec.vad)

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str = "cpu") -> Embedder:
        """Rebuild front-end and encoder from a model file (``model.pth``, or a format-1
        checkpoint) alone, with torch; reads its inference spec, never its recipe."""
        payload = read_model(path)
        return cls.from_model(payload, device, recipe_of(payload["provenance"].get("recipe"), path))

    @classmethod
    def from_model(
        cls,
        payload: dict[str, Any],
        device: str = "cpu",
        config: ExperimentConfig | None = None,
    ) -> Embedder:
        """An embedder for a model payload (:func:`voiceprint.artifact.read_model`'s shape:
        inference spec, encoder weights, back-end, model id); ``config``: its recipe."""
        from voiceprint.encoder import SpeakerEncoder
        from voiceprint.features import build_frontend
        from voiceprint.models import build_model

        spec = payload["inference"]
        frontend = build_frontend(FeatureConfig(**spec["features"]))
        model = build_model(ModelConfig(**spec["model"]), frontend.dim)
        model.load_state_dict(payload["encoder"])
        inference = InferenceSpec(
            sample_rate=int(spec["sample_rate"]),
            model_id=payload["model_id"],
            max_seconds=float(spec["max_seconds"]),
            vad=bool(spec["vad"]),
            config=config,
            evaluation=payload.get("evaluation"),
        )
        runner = TorchRunner(SpeakerEncoder(frontend, model), device)
        return cls(runner, inference, Scorer(backend_of(payload)))

    @classmethod
    def from_onnx(cls, path: str | Path, threads: int = 2) -> Embedder:
        """An onnxruntime embedder for a file written by ``voiceprint export``: model id,
        sample rate, scorer and limits come from the file's validated metadata."""
        runner = OnnxRunner(path, threads=threads)
        info = runner.settings
        spec = InferenceSpec(
            sample_rate=info["sample_rate"],
            model_id=info["model_id"],
            max_seconds=info["max_seconds"],
            vad=info["vad"],
            config=recipe_of(info["config"], path),
            evaluation=info["evaluation"],
        )
        return cls(runner, spec, Scorer(info["backend"]))

    def with_policy(self, policy: SpeechPolicy | None = None, **changes: bool) -> Embedder:
        """A copy that shares runner, spec and scorer and holds ``policy`` (default: this
        embedder's) with ``changes`` (``check``, ``trim``, ``refuse``) applied."""
        twin = copy.copy(self)
        twin.policy = replace(self.policy if policy is None else policy, **changes)
        return twin

    @property
    def runtime(self) -> str:
        """What runs the model: "torch" or "onnxruntime" (the back-end is the scorer's)."""
        return self.runner.runtime

    @property
    def decision(self) -> Decision | None:
        """The model's default decision (on the scorer's LLR), or None."""
        return self.scorer.decision

    @property
    def sample_rate(self) -> int:
        return self.spec.sample_rate

    @property
    def model_id(self) -> str:
        return self.spec.model_id

    @property
    def max_seconds(self) -> float:
        return self.spec.max_seconds

    @property
    def config(self) -> ExperimentConfig | None:
        return self.spec.config

    @property
    def evaluation(self) -> dict[str, Any] | None:
        return self.spec.evaluation

    @property
    def embedding_dim(self) -> int:
        return self.runner.embedding_dim

    @property
    def min_samples(self) -> int:
        return self.runner.min_samples

    def _crop(self, wave: np.ndarray) -> np.ndarray:
        if self.max_seconds > 0:
            return wave[: int(self.max_seconds * self.sample_rate)]
        return wave

    def speech(
        self, wave: np.ndarray, name: str = "waveform", *, policy: SpeechPolicy | None = None
    ) -> np.ndarray:
        """The part of a 16 kHz wave (N,) that the model embeds (see :meth:`measured`)."""
        return self.measured(wave, name, policy=policy)[0]

    def measured(
        self, wave: np.ndarray, name: str = "waveform", *, policy: SpeechPolicy | None = None
    ) -> tuple[np.ndarray, float]:
        """The part of a 16 kHz wave (N,) that the model embeds, and its net speech (s).

        The speech policy (``policy``, default :attr:`policy`;
        :func:`voiceprint.speech.find_speech`) checks the input: no speech raises
        :class:`vad.NoSpeechError` naming ``name`` (or, where clips without speech are
        not refused, embeds the wave whole with 0 s of speech), less net speech than
        ``MIN_SPEECH_SECONDS`` (or the model's minimum) warns; with trimming, the
        non-speech parts are cut out. Then the ``max_seconds`` crop applies. Without the
        speech check the net speech is the wave's duration.
        """
        found = self._speech(wave, name, policy)
        return found.wave, found.seconds

    def _speech(self, wave: np.ndarray, name: str, policy: SpeechPolicy | None) -> Speech:
        found = find_speech(
            wave,
            self.sample_rate,
            self.policy if policy is None else policy,
            name=name,
            min_samples=self.min_samples,
        )
        return replace(found, wave=self._crop(found.wave))

    def _run_padded(self, waves: Sequence[np.ndarray]) -> np.ndarray:
        lengths = np.array([len(w) for w in waves], dtype=np.int64)
        batch = np.zeros((len(waves), int(lengths.max())), dtype=np.float32)
        for i, w in enumerate(waves):
            batch[i, : len(w)] = w
        return self.runner.run(batch, lengths)

    def embed_batch(
        self,
        waves: Sequence[np.ndarray],
        names: Sequence[str] | None = None,
        batch_seconds: float = 120.0,
    ) -> np.ndarray:
        """Embed 16 kHz mono waveforms of any lengths -> (N, D) float32, as they are
        (no speech detection: :meth:`speech` does that).

        A wave longer than ``WINDOW_SECONDS`` is cut into windows of that length (the
        last one joined to the one before when shorter than half of it); its embedding is
        the duration-weighted mean of theirs. Windows run in padded batches of at most
        ``batch_seconds`` of audio, so memory stays bounded. A wave shorter than the
        model's minimum (``min_samples``) raises AudioError, naming it by ``names[i]``.
        """
        window = int(WINDOW_SECONDS * self.sample_rate)
        pieces: list[np.ndarray] = []
        owner: list[int] = []
        for i, w in enumerate(waves):
            w = np.asarray(w, dtype=np.float32)
            if len(w) < self.min_samples:
                name = names[i] if names is not None else f"waveform {i}"
                raise audio.AudioError(
                    f"{name}: {len(w) / self.sample_rate:.3f} s is shorter than this "
                    f"model's minimum of {self.min_samples / self.sample_rate:.3f} s"
                )
            starts = list(range(0, len(w), window))
            if len(starts) > 1 and len(w) - starts[-1] < window // 2:
                starts.pop()  # a short tail joins the window before it
            ends = starts[1:] + [len(w)]
            pieces.extend(w[a:b] for a, b in zip(starts, ends, strict=True))
            owner.extend([i] * len(starts))
        order = np.argsort([len(p) for p in pieces], kind="stable")  # similar lengths together
        piece_emb = np.zeros((len(pieces), self.embedding_dim), dtype=np.float32)
        budget = batch_seconds * self.sample_rate
        group: list[int] = []
        for j in [*order.tolist(), None]:
            if group and (j is None or (len(group) + 1) * len(pieces[j]) > budget):
                piece_emb[group] = self._run_padded([pieces[k] for k in group])
                group = []
            if j is not None:
                group.append(j)
        weights = np.array([len(p) for p in pieces], dtype=np.float64)
        owners = np.asarray(owner)
        out = np.zeros((len(waves), self.embedding_dim), dtype=np.float64)
        np.add.at(out, owners, piece_emb * weights[:, None])
        out /= np.bincount(owners, weights=weights, minlength=len(waves))[:, None]
        return out.astype(np.float32)

    def embed(
        self,
        wave: np.ndarray,
        sr: int,
        name: str = "waveform",
        *,
        policy: SpeechPolicy | None = None,
    ) -> np.ndarray:
        """One waveform (N,) or (N, C) at rate ``sr`` -> embedding (D,)."""
        return self.embed_measured(wave, sr, name, policy=policy)[0]

    def embed_measured(
        self,
        wave: np.ndarray,
        sr: int,
        name: str = "waveform",
        *,
        policy: SpeechPolicy | None = None,
    ) -> tuple[np.ndarray, float]:
        """One waveform (N,) or (N, C) at rate ``sr`` -> (embedding (D,), net speech s)."""
        wave = audio.prepare(wave, sr, self.sample_rate)
        kept, seconds = self.measured(wave, name, policy=policy)
        return self.embed_batch([kept], [name])[0], seconds

    def embed_file(self, path: str | Path, *, policy: SpeechPolicy | None = None) -> np.ndarray:
        """One audio file -> embedding (D,); AudioError names the file on bad input."""
        return self.embed_files([path], progress=False, policy=policy)[0]

    def embed_files(
        self,
        paths: Sequence[str | Path],
        *,
        batch_seconds: float = 120.0,
        progress: bool = True,
        loader: Any = None,
        policy: SpeechPolicy | None = None,
    ) -> np.ndarray:
        """Many files -> (N, D), batched by total duration, in input order.

        ``loader(path) -> wave`` replaces :func:`audio.load` (e.g. a decoded-audio cache);
        ``policy`` replaces the embedder's speech policy for this call.
        """
        return self.embed_files_measured(
            paths, batch_seconds=batch_seconds, progress=progress, loader=loader, policy=policy
        ).embeddings

    def embed_files_measured(
        self,
        paths: Sequence[str | Path],
        *,
        batch_seconds: float = 120.0,
        progress: bool = True,
        loader: Any = None,
        policy: SpeechPolicy | None = None,
    ) -> EmbeddedFiles:
        """:meth:`embed_files`, each file's net speech, and the files without speech
        (embedded whole where ``policy`` refuses none): an :class:`EmbeddedFiles`."""
        load = loader or (lambda p: audio.load(p, self.sample_rate))
        out = np.zeros((len(paths), self.embedding_dim), dtype=np.float32)
        speech_seconds = np.zeros(len(paths))
        no_speech: list[str] = []
        batch: list[np.ndarray] = []
        index: list[int] = []
        budget = batch_seconds * self.sample_rate
        window = WINDOW_SECONDS * self.sample_rate
        for i, path in enumerate(tqdm(paths, desc="embedding", unit="utt", disable=not progress)):
            found = self._speech(load(path), str(path), policy)
            wave, speech_seconds[i] = found.wave, found.seconds
            if not found.speech:
                no_speech.append(str(path))
            longest = max(min(len(wave), window), *(min(len(b), window) for b in batch), 0)
            if batch and (len(batch) + 1) * longest > budget:
                out[index] = self.embed_batch(batch, [str(paths[j]) for j in index], batch_seconds)
                batch, index = [], []
            batch.append(wave)
            index.append(i)
        if batch:
            out[index] = self.embed_batch(batch, [str(paths[j]) for j in index], batch_seconds)
        return EmbeddedFiles(out, speech_seconds, no_speech)


def OnnxEmbedder(path: str | Path, threads: int = 2) -> Embedder:
    """An :class:`Embedder` on onnxruntime for a file written by ``voiceprint export``
    (the name of the former subclass; :meth:`Embedder.from_onnx` is the same)."""
    return Embedder.from_onnx(path, threads=threads)


def load_embedder(
    path: str | Path, *, threads: int = 2, device: str = "cpu", precision: str = "auto"
) -> Embedder:
    """An embedder for a model file (.pth), an experiment folder or an ONNX file (.onnx).

    For an ONNX file, ``precision`` picks the file that runs
    (:func:`voiceprint.quantize.choose_precision`): ``"fp32"`` the file itself, ``"int8"``
    its ``.int8.onnx`` copy, ``"auto"`` the copy where this CPU runs it faster and it
    carries the same model id and back-end (a foreign copy is passed over with a warning).
    """
    path = Path(path).expanduser()
    if path.is_dir():
        return Embedder.from_checkpoint(find_model(path), device=device)
    if path.suffix.lower() == ".onnx":
        from voiceprint.quantize import choose_precision

        return Embedder.from_onnx(choose_precision(path, precision), threads=threads)
    return Embedder.from_checkpoint(path, device=device)


def __getattr__(name: str) -> Any:
    """``SpeakerEncoder`` and ``min_samples_of`` live in :mod:`voiceprint.encoder` (torch)."""
    if name in ("SpeakerEncoder", "min_samples_of"):
        from voiceprint import encoder

        return getattr(encoder, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
