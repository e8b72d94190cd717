"""Turn audio into speaker embeddings with a trained model.

    emb = Embedder.from_checkpoint("exp/lab/xvector_gap_softmax_checkpoint.pth")
    vector = emb.embed(wave, sr)          # (D,) float32
    matrix = emb.embed_files(paths)       # (N, D) float32, batched, with a progress bar

    emb = load_embedder("model.onnx")     # checkpoint, experiment folder or ONNX file

Features are rebuilt from the checkpoint's own settings, so training, evaluation and
serving compute them the same way. The model's scorer (``embedder.scorer``: back-end,
calibration, decision) comes from the same file. An ONNX file (``voiceprint export``)
holds front-end and encoder in one graph and runs on onnxruntime (:class:`OnnxEmbedder`)
without importing torch: this module, the scorer, the VAD and audio loading need only
numpy, soundfile, soxr and onnxruntime; torch is imported when a checkpoint is loaded.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from tqdm import tqdm

from voiceprint import audio
from voiceprint.artifact import backend_of, load_checkpoint, parse_onnx_metadata
from voiceprint.config import ExperimentConfig, from_dict
from voiceprint.experiment import find_checkpoint
from voiceprint.scoring import Backend, Decision, Scorer

if TYPE_CHECKING:
    from voiceprint.encoder import SpeakerEncoder

log = logging.getLogger(__name__)

# Speech probability above which silero-vad counts a frame as speech, for the check and
# for trimming. Its own default (0.5) finds no speech in some real dev clips (children,
# quiet voices: so762 SO0044_000440032 peaks below 0.35); 0.15 still finds none in
# silence or in white noise up to -26 dBFS.
VAD_THRESHOLD = 0.15

# Less net speech than this draws a ShortSpeechWarning: embeddings of shorter speech are
# much less reliable (the models train on 2-3 s crops).
MIN_SPEECH_SECONDS = 1.0

# Waves longer than this are embedded as windows of this length whose embeddings are
# averaged (weighted by duration), so memory stays bounded for hour-long recordings.
WINDOW_SECONDS = 30.0


class Embedder:
    """Waveforms in, embeddings out, for one trained model (torch backend)."""

    backend = "torch"

    def __init__(
        self,
        encoder: SpeakerEncoder,
        *,
        sample_rate: int,
        model_id: str,
        backend: Backend | None = None,
        config: ExperimentConfig | None = None,
        max_seconds: float = 0.0,
        device: str = "cpu",
        evaluation: dict[str, Any] | None = None,
        vad: bool = False,
    ) -> None:
        from voiceprint.encoder import min_samples_of

        self.encoder = encoder.to(device).eval()
        self.sample_rate = sample_rate
        self.model_id = model_id
        self.scorer = Scorer(backend)
        self.config = config
        self.max_seconds = max_seconds
        self.device = device
        self.min_samples = min_samples_of(encoder)
        self.evaluation = evaluation
        self.vad = vad
        self.no_speech: list[str] = []

    @property
    def decision(self) -> Decision | None:
        """The model's default decision (on the scorer's LLR), or None."""
        return self.scorer.decision

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str = "cpu") -> Embedder:
        """Rebuild front-end and encoder from a checkpoint alone."""
        from voiceprint.encoder import SpeakerEncoder
        from voiceprint.features import build_frontend
        from voiceprint.models import build_model

        payload = load_checkpoint(path)
        config = from_dict(payload["config"])
        frontend = build_frontend(config.features)
        model = build_model(config.model, frontend.dim)
        model.load_state_dict(payload["model"])
        backend = backend_of(payload)
        if backend.decision is None and payload.get("decision"):  # models before the scorer
            backend.decision = Decision.from_dict(payload["decision"])
        return cls(
            SpeakerEncoder(frontend, model),
            sample_rate=config.features.sample_rate,
            model_id=payload["model_id"],
            backend=backend,
            config=config,
            max_seconds=config.eval.max_seconds,
            device=device,
            evaluation=payload.get("evaluation"),
            vad=config.eval.vad,
        )

    @classmethod
    def from_onnx(cls, path: str | Path, threads: int = 2) -> OnnxEmbedder:
        """An onnxruntime embedder for a file written by ``voiceprint export``."""
        return OnnxEmbedder(path, threads=threads)

    @property
    def embedding_dim(self) -> int:
        return int(self.encoder.model.embedding_dim)

    def _crop(self, wave: np.ndarray) -> np.ndarray:
        if self.max_seconds > 0:
            return wave[: int(self.max_seconds * self.sample_rate)]
        return wave

    def speech(self, wave: np.ndarray, name: str = "waveform") -> np.ndarray:
        """The part of a 16 kHz wave (N,) that the model embeds (see :meth:`measured`)."""
        return self.measured(wave, name)[0]

    def measured(self, wave: np.ndarray, name: str = "waveform") -> tuple[np.ndarray, float]:
        """The part of a 16 kHz wave (N,) that the model embeds, and its net speech (s).

        Speech activity detection (:mod:`voiceprint.vad`) always checks the input: no
        speech raises :class:`vad.NoSpeechError` naming ``name`` (or, where clips without
        speech are not refused, embeds the wave whole with 0 s of speech), less net speech
        than ``MIN_SPEECH_SECONDS`` (or the model's minimum) warns. When the model was
        evaluated with trimming (``vad``), the non-speech parts are cut out; otherwise the
        wave is embedded whole. Then the ``max_seconds`` crop applies. Without the speech
        check the net speech is the wave's duration.
        """
        from voiceprint import vad

        wave = np.asarray(wave, dtype=np.float32)
        seconds = len(wave) / self.sample_rate
        if self.speech_check or self.vad:
            minimum = max(self.min_samples / self.sample_rate, MIN_SPEECH_SECONDS)
            try:
                found = vad.checked_speech(
                    wave,
                    self.sample_rate,
                    name=name,
                    min_speech_seconds=minimum,
                    threshold=VAD_THRESHOLD,
                )
            except vad.NoSpeechError as err:
                if self.refuse_no_speech:
                    raise
                log.warning("%s: embedded whole", err)
                self.no_speech.append(name)
                return self._crop(wave), 0.0
            seconds = found.speech_seconds
            if self.vad:
                wave = vad.join_regions(wave, found)
        return self._crop(wave), seconds

    # Every inference path checks for speech (tests on synthetic tones may switch it off)
    # and refuses input without any. Evaluation embeds such clips whole instead, so that
    # it scores every trial of a protocol, and lists them in ``no_speech``.
    speech_check = True
    refuse_no_speech = True

    def _run(self, batch: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        """Zero-padded waves (B, N) float32 + valid samples (B,) int64 -> (B, D) float32."""
        import torch

        with torch.inference_mode():
            wave = torch.from_numpy(batch).to(self.device)
            out = self.encoder(wave, torch.from_numpy(lengths).to(self.device))
            return out.float().cpu().numpy()

    def _run_padded(self, waves: Sequence[np.ndarray]) -> np.ndarray:
        lengths = np.array([len(w) for w in waves], dtype=np.int64)
        batch = np.zeros((len(waves), int(lengths.max())), dtype=np.float32)
        for i, w in enumerate(waves):
            batch[i, : len(w)] = w
        return self._run(batch, lengths)

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

    def embed(self, wave: np.ndarray, sr: int, name: str = "waveform") -> np.ndarray:
        """One waveform (N,) or (N, C) at rate ``sr`` -> embedding (D,)."""
        return self.embed_measured(wave, sr, name)[0]

    def embed_measured(
        self, wave: np.ndarray, sr: int, name: str = "waveform"
    ) -> tuple[np.ndarray, float]:
        """One waveform (N,) or (N, C) at rate ``sr`` -> (embedding (D,), net speech s)."""
        wave = audio.prepare(wave, sr, self.sample_rate)
        kept, seconds = self.measured(wave, name)
        return self.embed_batch([kept], [name])[0], seconds

    def embed_file(self, path: str | Path) -> np.ndarray:
        """One audio file -> embedding (D,); AudioError names the file on bad input."""
        return self.embed_files([path], progress=False)[0]

    def embed_files(
        self,
        paths: Sequence[str | Path],
        *,
        batch_seconds: float = 120.0,
        progress: bool = True,
        loader: Any = None,
    ) -> np.ndarray:
        """Many files -> (N, D), batched by total duration, in input order.

        ``loader(path) -> wave`` replaces :func:`audio.load` (e.g. a decoded-audio cache).
        """
        return self.embed_files_measured(
            paths, batch_seconds=batch_seconds, progress=progress, loader=loader
        )[0]

    def embed_files_measured(
        self,
        paths: Sequence[str | Path],
        *,
        batch_seconds: float = 120.0,
        progress: bool = True,
        loader: Any = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`embed_files` and each file's net speech: ((N, D), (N,) seconds)."""
        load = loader or (lambda p: audio.load(p, self.sample_rate))
        out = np.zeros((len(paths), self.embedding_dim), dtype=np.float32)
        speech_seconds = np.zeros(len(paths))
        batch: list[np.ndarray] = []
        index: list[int] = []
        budget = batch_seconds * self.sample_rate
        window = WINDOW_SECONDS * self.sample_rate
        for i, path in enumerate(tqdm(paths, desc="embedding", unit="utt", disable=not progress)):
            wave, speech_seconds[i] = self.measured(load(path), str(path))
            longest = max(min(len(wave), window), *(min(len(b), window) for b in batch), 0)
            if batch and (len(batch) + 1) * longest > budget:
                out[index] = self.embed_batch(batch, [str(paths[j]) for j in index], batch_seconds)
                batch, index = [], []
            batch.append(wave)
            index.append(i)
        if batch:
            out[index] = self.embed_batch(batch, [str(paths[j]) for j in index], batch_seconds)
        return out, speech_seconds


class OnnxEmbedder(Embedder):
    """The same API on onnxruntime, for a file written by :func:`onnx_export.export_onnx`.

    The graph takes ``wave`` (B, N) float32 and ``lengths`` (B,) int64 and returns
    ``embedding`` (B, D); model id, sample rate, scorer (back-end, calibration, decision)
    and limits come from the file's validated metadata (all of it in ``metadata``;
    ``evaluation`` holds the dev-set summary recorded with the model, or None).
    ``threads`` sets onnxruntime's intra-op threads.
    """

    backend = "onnxruntime"

    def __init__(self, path: str | Path, threads: int = 2) -> None:
        try:
            import onnxruntime as ort
        except ImportError as err:  # pragma: no cover - depends on the install
            raise ImportError(
                "running an .onnx model needs onnxruntime, a core dependency of voiceprint: "
                "pip install onnxruntime"
            ) from err
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"ONNX model {path} does not exist")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        try:
            self.session = ort.InferenceSession(
                str(path), options, providers=["CPUExecutionProvider"]
            )
        except Exception as err:  # noqa: BLE001 - onnxruntime raises its own types
            raise ValueError(f"{path} is not a usable ONNX model: {err}") from err
        info = parse_onnx_metadata(self.session.get_modelmeta().custom_metadata_map, path)
        self.path = path
        self.metadata = dict(self.session.get_modelmeta().custom_metadata_map)
        self.precision = self.metadata.get("voiceprint.precision", "fp32")
        self.evaluation = info["evaluation"]
        self.encoder = None  # type: ignore[assignment]
        self.sample_rate = info["sample_rate"]
        self.model_id = info["model_id"]
        self.scorer = Scorer(info["backend"])
        self.config = from_dict(info["config"]) if info["config"] else None
        self.max_seconds = info["max_seconds"]
        self.device = "cpu"
        self.min_samples = info["min_samples"]
        self.vad = info["vad"]
        self.no_speech = []
        self._embedding_dim = info["embedding_dim"]

    @property
    def embedding_dim(self) -> int:
        return self._embedding_dim

    def _run(self, batch: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        out = self.session.run(["embedding"], {"wave": batch, "lengths": lengths})[0]
        return np.asarray(out, dtype=np.float32)


def load_embedder(
    path: str | Path, *, threads: int = 2, device: str = "cpu", precision: str = "auto"
) -> Embedder:
    """An embedder for a checkpoint (.pth), an experiment folder or an ONNX file (.onnx).

    For an ONNX file, ``precision`` picks the file that runs
    (:func:`voiceprint.quantize.choose_precision`): ``"fp32"`` the file itself, ``"int8"``
    its ``.int8.onnx`` copy, ``"auto"`` the copy where this CPU runs it faster and it
    carries the same model id and back-end (a foreign copy is passed over with a warning).
    """
    path = Path(path).expanduser()
    if path.is_dir():
        return Embedder.from_checkpoint(find_checkpoint(path), device=device)
    if path.suffix.lower() == ".onnx":
        from voiceprint.quantize import choose_precision

        return OnnxEmbedder(choose_precision(path, precision), threads=threads)
    return Embedder.from_checkpoint(path, device=device)


def __getattr__(name: str) -> Any:
    """``SpeakerEncoder`` and ``min_samples_of`` live in :mod:`voiceprint.encoder` (torch)."""
    if name in ("SpeakerEncoder", "min_samples_of"):
        from voiceprint import encoder

        return getattr(encoder, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
