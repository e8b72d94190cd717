"""Identification speed of SpeakerDB over many enrolled speakers.

    python benchmarks/store_identify.py [--speakers 100000] [--dim 192] [--probes 20]

Enrolls random speakers in a temporary SQLite store, then times ``identify`` (cold: the
first call builds the in-memory matrix of speaker means; warm: later calls) against the
reference, a Python loop scoring one speaker at a time through the scorer.
Prints the per-probe times and the speed-up ratio.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from voiceprint.scoring import Scorer
from voiceprint.store import SpeakerDB


def loop_identify(
    pairs: list[tuple[str, np.ndarray]], probe: np.ndarray, top: int = 5
) -> list[tuple[str, float]]:
    """The baseline: a Python loop over (name, mean (D,)) pairs, one score each."""
    scorer = Scorer()
    query = scorer.units(probe[None])
    scored = [
        (name, float(scorer.score(scorer.units(mean[None]), query)[0, 0])) for name, mean in pairs
    ]
    scored.sort(key=lambda item: -item[1])
    return scored[:top]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--speakers", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=192)
    parser.add_argument("--probes", type=int, default=20)
    parser.add_argument("--baseline-probes", type=int, default=3)
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    emb = rng.standard_normal((args.speakers, args.dim), dtype=np.float32)
    names = [f"speaker{i:07d}" for i in range(args.speakers)]
    targets = rng.integers(0, args.speakers, size=args.probes)
    probes = emb[targets] + 0.3 * rng.standard_normal((args.probes, args.dim), dtype=np.float32)

    with tempfile.TemporaryDirectory() as tmp, SpeakerDB(Path(tmp) / "bench.db", "bench") as db:
        start = time.perf_counter()
        db.enroll_many(names, emb)
        enroll_s = time.perf_counter() - start

        start = time.perf_counter()
        db.identify(probes[0], top=5)
        cold_s = time.perf_counter() - start

        warm = []
        correct = 0
        for probe, target in zip(probes, targets, strict=True):
            start = time.perf_counter()
            best = db.identify(probe, top=5)
            warm.append(time.perf_counter() - start)
            correct += best[0].name == names[target]
        warm_s = statistics.median(warm)

    pairs = list(zip(names, emb, strict=True))
    base = []
    for probe in probes[: args.baseline_probes]:
        start = time.perf_counter()
        loop_identify(pairs, probe, top=5)
        base.append(time.perf_counter() - start)
    base_s = statistics.median(base)

    print(f"speakers {args.speakers}  dim {args.dim}")
    print(f"enroll_many            {enroll_s:8.2f} s")
    print(f"identify, cold cache   {cold_s * 1e3:8.1f} ms  (reads the means from SQLite)")
    print(f"identify, warm cache   {warm_s * 1e3:8.1f} ms  (median of {args.probes})")
    print(f"python loop baseline   {base_s * 1e3:8.1f} ms  (median of {len(base)})")
    print(f"speed-up warm vs loop  {base_s / warm_s:8.1f}x   top-1 correct {correct}/{args.probes}")


if __name__ == "__main__":
    main()
