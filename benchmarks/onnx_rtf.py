"""Real-time factor of one model on PyTorch and on onnxruntime, both on 2 threads.

    python benchmarks/onnx_rtf.py [--checkpoint PATH] [--seconds 4] [--repeats 10]

Without ``--checkpoint`` a randomly initialised ECAPA-TDNN of the recipe's size
(C=512, 80 log-Mel bands, 192-dim embeddings) is used: speed does not depend on the
weights. The model is exported to a temporary ONNX file; both back-ends then embed the
same utterances one at a time (as a service does). RTF = processing seconds / audio
seconds (lower is faster); the ratio torch / onnxruntime says how much faster ONNX is.
Both on one thread are printed too: on a busy machine, torch's OpenMP threads can lose
far more to contention than onnxruntime's pool, which the 2-thread figures then show.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from voiceprint.config import ExperimentConfig
from voiceprint.embedder import Embedder, InferenceSpec, OnnxEmbedder, SpeakerEncoder
from voiceprint.features import build_frontend
from voiceprint.models import build_model
from voiceprint.onnx_export import export_onnx
from voiceprint.runners import TorchRunner


def recipe_sized_ecapa() -> Embedder:
    cfg = ExperimentConfig(name="rtf")
    cfg.features.kind = "fbank"
    cfg.features.n_mels = 80
    cfg.model.name = "ecapa"
    cfg.model.pooling = "asp"
    cfg.model.embedding_dim = 192
    cfg.model.params = {"channels": 512}
    frontend = build_frontend(cfg.features)
    encoder = SpeakerEncoder(frontend, build_model(cfg.model, frontend.dim))
    return Embedder(TorchRunner(encoder), InferenceSpec(16000, "benchmark", config=cfg))


def rtf(embedder: Embedder, waves: list[np.ndarray], sample_rate: int) -> float:
    """Median over utterances of (seconds to embed it alone) / (its duration)."""
    embedder.embed_batch(waves[:1])  # warm-up
    ratios = []
    for wave in waves:
        start = time.perf_counter()
        embedder.embed_batch([wave])
        ratios.append((time.perf_counter() - start) / (len(wave) / sample_rate))
    return statistics.median(ratios)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", help="a .pth checkpoint or experiment folder")
    parser.add_argument("--seconds", type=float, default=4.0, help="utterance length")
    parser.add_argument("--repeats", type=int, default=10, help="utterances per back-end")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    if args.checkpoint:
        from voiceprint.embedder import load_embedder

        torch_embedder = load_embedder(args.checkpoint)
    else:
        torch_embedder = recipe_sized_ecapa()
    sr = torch_embedder.sample_rate
    rng = np.random.default_rng(0)
    waves = [
        (0.1 * rng.standard_normal(int(args.seconds * sr))).astype(np.float32)
        for _ in range(args.repeats)
    ]
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        path = export_onnx(torch_embedder, Path(tmp) / "model.onnx")
        export_s = time.perf_counter() - start
        onnx_embedder = OnnxEmbedder(path, threads=args.threads)
        size_mb = path.stat().st_size / 2**20
        torch.set_num_threads(1)
        torch_one_rtf = rtf(torch_embedder, waves, sr)
        torch.set_num_threads(args.threads)
        torch_rtf = rtf(torch_embedder, waves, sr)
        onnx_rtf = rtf(onnx_embedder, waves, sr)
        onnx_one_rtf = rtf(OnnxEmbedder(path, threads=1), waves, sr)
        diff = float(
            np.abs(
                torch_embedder.embed_batch(waves[:2]) - onnx_embedder.embed_batch(waves[:2])
            ).max()
        )

    name = args.checkpoint or "ECAPA-TDNN C=512 (random weights)"
    print(f"model {name}: {size_mb:.1f} MB ONNX, exported in {export_s:.1f} s")
    print(f"{args.repeats} utterances of {args.seconds:g} s, one at a time, {args.threads} threads")
    rows = [
        (f"torch, {args.threads} threads", torch_rtf),
        (f"onnxruntime, {args.threads} threads", onnx_rtf),
        ("torch, 1 thread", torch_one_rtf),
        ("onnxruntime, 1 thread", onnx_one_rtf),
    ]
    for label, value in rows:
        print(f"{label:<26} RTF {value:.4f}  ({1 / value:6.1f}x real time)")
    print(
        f"onnxruntime vs torch: {torch_rtf / onnx_rtf:.2f}x on {args.threads} threads, "
        f"{torch_one_rtf / onnx_one_rtf:.2f}x on 1 thread  (max abs diff {diff:.1e})"
    )


if __name__ == "__main__":
    main()
