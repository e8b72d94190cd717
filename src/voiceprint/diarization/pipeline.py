"""The whole pipeline: audio -> speech -> windows -> embeddings -> clusters -> turns -> names.

    diarizer = Diarizer(load_embedder("model.onnx"), db=SpeakerDB(...))
    result = diarizer(wave_or_path, num_speakers=None)      # Diarization
    result.write("out/")                                     # RTTM, JSON, timeline PNG

Memory: the source is read in blocks, once per pass (speech detection, embedding, overlap
detection), and what is kept between passes is small per second of audio (speech regions,
one embedding per 0.75 s, one label and one overlap probability per 10 ms frame), so a
one-hour file runs in bounded memory.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from voiceprint.diarization import clustering, overlap, refine, windows
from voiceprint.diarization.embed import embed_windows
from voiceprint.diarization.naming import ClusterName, name_clusters, naming_decision
from voiceprint.diarization.segments import (
    Segment,
    segments_to_json,
    write_json,
    write_rttm,
)
from voiceprint.diarization.source import Source, open_source
from voiceprint.diarization.speech import SAD_THRESHOLD, detect_speech
from voiceprint.scoring import Decision


@dataclass
class Diarization:
    """Who spoke when in one recording.

    ``segments`` are turns in time order (two speakers' turns overlap where the overlap
    stage gives a frame a second speaker); ``speakers`` holds one
    :class:`ClusterName` per speaker found; ``duration`` is in seconds; ``timings`` the
    seconds each stage took.
    """

    file_id: str
    duration: float
    segments: list[Segment]
    speakers: list[ClusterName]
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def num_speakers(self) -> int:
        return len(self.speakers)

    def speech_seconds(self, speaker: str) -> float:
        return float(sum(s.duration for s in self.segments if s.speaker == speaker))

    def to_json(self) -> dict[str, Any]:
        """The JSON document ``write`` saves: recording, speakers, segments, timings."""
        return {
            "file": self.file_id,
            "duration": round(self.duration, 3),
            "num_speakers": self.num_speakers,
            "speakers": [
                {
                    "speaker": s.speaker,
                    "name": s.name,
                    "score": s.score,
                    "llr": s.llr,
                    "best_match": s.match,
                    "seconds": round(self.speech_seconds(s.speaker), 3),
                }
                for s in self.speakers
            ],
            "segments": segments_to_json(self.segments),
            "timings": {k: round(v, 4) for k, v in self.timings.items()},
        }

    def write(self, out_dir: str | Path, picture: bool = True) -> dict[str, Path]:
        """Write ``<file_id>.rttm``, ``<file_id>.json`` and ``<file_id>.png`` into ``out_dir``."""
        out = Path(out_dir)
        paths = {
            "rttm": write_rttm(out / f"{self.file_id}.rttm", self.segments, self.file_id),
            "json": write_json(out / f"{self.file_id}.json", self.to_json()),
        }
        from voiceprint.plots import can_draw, plot_timeline

        if picture and can_draw(str(out / f"{self.file_id}.png")):
            paths["png"] = plot_timeline(
                [(s.start, s.end, s.speaker) for s in self.segments],
                out / f"{self.file_id}.png",
                duration=self.duration,
                title=f"{self.file_id}: {self.num_speakers} speaker(s)",
            )
        return paths


@dataclass
class WindowEmbeddings:
    """What stages 1-3 found in one recording: speech ``regions`` (R, 2) and ``windows``
    (W, 2) in samples at ``sample_rate``, window ``embeddings`` (W, D), the recording's
    length ``num_samples``, the seconds each stage took and, with an overlap detector,
    ``overlap``: P(two voices at once) (T,) per 10 ms frame."""

    file_id: str
    sample_rate: int
    num_samples: int
    regions: np.ndarray
    windows: np.ndarray
    embeddings: np.ndarray
    timings: dict[str, float]
    overlap: np.ndarray | None = None


class Diarizer:
    """Speaker diarization with one model (and optionally a speaker store to name voices).

    ``embedder`` is anything with the embedder's public API (``embed_batch``,
    ``sample_rate``, ``min_samples``, ``scorer``, ``decision``). ``decision`` overrides
    the one naming uses (the model's at ``naming.NAMING_PRIOR``). Window and clustering
    settings default to the module constants (tuned on simulated so762 dev conversations).
    ``overlap_model`` is the overlap detector's weights (the packaged
    ``overlap.OVERLAP_MODEL`` by default; None: no overlap detection); overlapped frames
    (P >= ``overlap_threshold`` in runs of ``overlap_min`` s) get the nearest other
    speaker within ``overlap.NEAREST_MAX_SECONDS`` as a second speaker.
    """

    def __init__(
        self,
        embedder: Any,
        db: Any | None = None,
        *,
        decision: Decision | None = None,
        method: str = "ahc",
        stop_llr: float = clustering.STOP_LLR,
        window: float = windows.WINDOW_SECONDS,
        step: float = windows.STEP_SECONDS,
        sad_threshold: float = SAD_THRESHOLD,
        min_cluster_share: float = clustering.MIN_CLUSTER_SHARE,
        min_cluster_windows: int = clustering.MIN_CLUSTER_WINDOWS,
        min_turn: float = refine.MIN_TURN_SECONDS,
        overlap_margin: float = overlap.CHANGE_OVERLAP_SECONDS,
        overlap_model: str | Path | None = overlap.OVERLAP_MODEL,
        overlap_threshold: float = overlap.OVERLAP_THRESHOLD,
        overlap_min: float = overlap.OVERLAP_MIN_SECONDS,
    ) -> None:
        self.embedder = embedder
        self.db = db
        self.decision = decision or naming_decision(
            embedder.decision, bool(embedder.scorer.calibrated)
        )
        self.method = method
        self.stop_llr = stop_llr
        self.window = window
        self.step = step
        self.sad_threshold = sad_threshold
        self.min_cluster_share = min_cluster_share
        self.min_cluster_windows = min_cluster_windows
        self.min_turn = min_turn
        self.overlap_margin = overlap_margin
        self.overlap_model = overlap_model
        self.overlap_threshold = overlap_threshold
        self.overlap_min = overlap_min

    def __call__(
        self,
        audio: str | Path | np.ndarray | Source,
        *,
        file_id: str | None = None,
        num_speakers: int | None = None,
        min_speakers: int = 1,
        max_speakers: int | None = None,
        progress: bool = False,
    ) -> Diarization:
        """Diarize a file path, a 16 kHz float32 wave (N,) or a source."""
        found = self.embed(audio, file_id=file_id, progress=progress)
        return self.label(
            found, num_speakers=num_speakers, min_speakers=min_speakers, max_speakers=max_speakers
        )

    def embed(
        self,
        audio: str | Path | np.ndarray | Source,
        *,
        file_id: str | None = None,
        progress: bool = False,
    ) -> WindowEmbeddings:
        """Stages 1-3: speech regions, windows and their embeddings."""
        rate = int(self.embedder.sample_rate)
        source = audio if hasattr(audio, "blocks") else open_source(audio, rate)  # type: ignore[arg-type]
        if file_id is None:
            file_id = Path(source.name).stem if isinstance(audio, (str, Path)) else "recording"
        clock = time.perf_counter()
        regions = detect_speech(source, threshold=self.sad_threshold)
        speech_time = time.perf_counter() - clock
        shortest = max(windows.MIN_WINDOW_SECONDS, self.embedder.min_samples / rate)
        spans = windows.make_windows(
            regions, rate, length=self.window, step=self.step, min_length=shortest
        )
        clock = time.perf_counter()
        emb = embed_windows(self.embedder, source, spans, progress=progress)
        timings = {"speech": speech_time, "embedding": time.perf_counter() - clock}
        probs = None
        if self.overlap_model is not None and len(spans):
            clock = time.perf_counter()
            frames = int(np.ceil(source.num_samples / (refine.FRAME_SECONDS * rate)))
            probs = overlap.load_detector(str(self.overlap_model))(source, frames)
            timings["overlap"] = time.perf_counter() - clock
        return WindowEmbeddings(
            file_id, rate, source.num_samples, regions, spans, emb, timings, probs
        )

    def label(
        self,
        found: WindowEmbeddings,
        *,
        num_speakers: int | None = None,
        min_speakers: int = 1,
        max_speakers: int | None = None,
    ) -> Diarization:
        """Stages 4-6: clusters, frame-level turns and names, from :meth:`embed`'s output."""
        timings = dict(found.timings)
        rate, num_samples = found.sample_rate, found.num_samples
        duration = num_samples / rate
        if len(found.windows) == 0:
            timings["clustering"] = timings["naming"] = 0.0
            return Diarization(found.file_id, duration, [], [], timings)
        clock = time.perf_counter()
        labels = clustering.cluster(
            found.embeddings,
            self.embedder.scorer,
            method=self.method,
            num_speakers=num_speakers,
            min_speakers=min_speakers,
            max_speakers=max_speakers,
            stop_llr=self.stop_llr,
            min_cluster_share=self.min_cluster_share,
            min_cluster_windows=self.min_cluster_windows,
            window_seconds=self.window,
        )
        timings["clustering"] = time.perf_counter() - clock
        clock = time.perf_counter()
        labels, names = name_clusters(found.embeddings, labels, self.db, self.decision)
        frames = refine.frame_labels(found.windows, labels, found.regions, num_samples, rate)
        frames = refine.smooth_turns(frames, int(round(self.min_turn / refine.FRAME_SECONDS)))
        second = overlap.second_speaker(
            frames, int(round(self.overlap_margin / refine.FRAME_SECONDS))
        )
        if found.overlap is not None:
            step = refine.FRAME_SECONDS
            mask = overlap.runs_at_least(
                found.overlap[: len(frames)] >= self.overlap_threshold,
                int(round(self.overlap_min / step)),
            )
            near = overlap.nearest_other(
                frames, mask, int(round(overlap.NEAREST_MAX_SECONDS / step))
            )
            second = np.where(second >= 0, second, near)
        turns = refine.to_turns(frames) + refine.to_turns(second)
        segments = [
            Segment(
                a, min(b, duration), names[k].speaker, names[k].name, names[k].score, names[k].llr
            )
            for a, b, k in refine.merge_turns(turns)
        ]
        present = {s.speaker for s in segments}
        speakers = [n for n in names if n.speaker in present]
        timings["naming"] = time.perf_counter() - clock
        return Diarization(found.file_id, duration, segments, speakers, timings)
