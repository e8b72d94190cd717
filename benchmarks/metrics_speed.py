"""Speed of the speaker-bootstrap EER interval, against one plain EER, on the same trials.

    python benchmarks/metrics_speed.py [--speakers 20 --utts 10] [--n-boot 1000]

Builds all pairs of ``speakers x utts`` synthetic trials (20 x 10: the lab protocol's
19,900; 60 x 20: the so762 dev set's 719,400), then times ``metrics.eer`` once (the
baseline, one sort of the scores) and ``metrics.bootstrap_eer`` with ``--n-boot``
resamples, and prints both times and the ratio: the cost of the interval in EERs.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from voiceprint import metrics


def trials(n_spk: int, n_utt: int, seed: int = 0) -> tuple[np.ndarray, ...]:
    """All utterance pairs, scores with speaker-dependent offsets; (scores, labels, a, b)."""
    rng = np.random.default_rng(seed)
    spk = np.repeat(np.arange(n_spk), n_utt)
    i, j = np.triu_indices(spk.size, 1)
    a, b = spk[i], spk[j]
    labels = a == b
    offset = rng.normal(size=n_spk)
    scores = rng.normal(size=a.size) + 2.0 * labels + 0.6 * (offset[a] + offset[b])
    return scores, labels, a, b


def timed(fn, repeats: int = 3) -> float:
    """The best of ``repeats`` wall-clock seconds of ``fn()``."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--speakers", type=int, default=20)
    parser.add_argument("--utts", type=int, default=10)
    parser.add_argument("--n-boot", type=int, default=1000)
    args = parser.parse_args()
    scores, labels, a, b = trials(args.speakers, args.utts)
    one = timed(lambda: metrics.eer(scores[labels], scores[~labels]))
    boot = timed(lambda: metrics.bootstrap_eer(scores, labels, a, b, n_boot=args.n_boot), 1)
    print(f"{scores.size:,} trials ({args.speakers} speakers x {args.utts} clips)")
    print(f"EER once (baseline):            {1000 * one:9.1f} ms")
    print(f"bootstrap EER, {args.n_boot} resamples: {1000 * boot:9.1f} ms")
    print(f"ratio: {boot / one:.0f} EERs' time for {args.n_boot} resamples")


if __name__ == "__main__":
    main()
