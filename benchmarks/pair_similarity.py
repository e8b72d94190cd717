"""Which test speakers do the systems find alike? Speaker-pair similarity from trial scores.

    python benchmarks/pair_similarity.py [--scores exp/bench_accuracy/scores/*.txt]
        [--utt2spk exp/bench_accuracy/data/test/utt2spk] [--top 3]
        [--out benchmarks/results/pair_similarity.md]

Reads the per-system score files that ``benchmarks/accuracy.py`` writes
(``<work>/scores/<system>.txt``: ``enroll test score target|nontarget``). Scores of
different systems live on different scales, so each system's scores are standardised by
its own non-target mean and deviation (z = (s - mean_non) / std_non). Then, per speaker
pair, the mean z over the pair's trials:

- the ``--top`` most similar *different-speaker* pairs;
- each speaker's *own* mean z (over its target trials), the lowest of them and the median.

A different-speaker pair that scores like, or above, its speakers' own target trials in
several independent systems is more likely one person under two ids (or one device and
room) than two voices the systems confuse; minDCF(0.01) counts each of its trials at
99 times the weight of a miss (see the "What sets minDCF" table of accuracy.md).
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DEFAULT_WORK = REPO / "exp" / "bench_accuracy"


def read_utt2spk(path: Path) -> dict[str, str]:
    """Kaldi ``utt2spk``: utterance id -> speaker id."""
    out = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            utt, spk = line.split()[:2]
            out[utt] = spk
    return out


def pair_means(path: Path, utt2spk: dict[str, str]) -> tuple[dict[str, float], dict[str, float]]:
    """Mean non-target-standardised score per speaker pair: (different pairs, own speakers).

    Different-speaker pairs are keyed ``"A–B"`` (sorted), own-speaker means by ``"A"``.
    """
    pairs: list[tuple[str, str]] = []
    scores: list[float] = []
    for line in path.read_text(encoding="utf-8").splitlines():
        fields = line.split()
        if len(fields) != 4:
            raise ValueError(f"{path}: expected 'enroll test score label', got {line!r}")
        a, b, score, _ = fields
        if a not in utt2spk or b not in utt2spk:
            raise ValueError(f"{path}: {a} or {b} is not in utt2spk")
        pairs.append(tuple(sorted((utt2spk[a], utt2spk[b]))))  # type: ignore[arg-type]
        scores.append(float(score))
    s = np.asarray(scores)
    same = np.array([x == y for x, y in pairs])
    if same.all() or not same.any():
        raise ValueError(f"{path}: needs both same- and different-speaker trials")
    z = (s - s[~same].mean()) / s[~same].std()
    sums: dict[tuple[str, str], list[float]] = defaultdict(list)
    for pair, value in zip(pairs, z, strict=True):
        sums[pair].append(float(value))
    different = {f"{x}–{y}": float(np.mean(v)) for (x, y), v in sums.items() if x != y}
    own = {x: float(np.mean(v)) for (x, y), v in sums.items() if x == y}
    return different, own


def table(files: list[Path], utt2spk: dict[str, str], top: int) -> str:
    """Markdown: per system the most similar different-speaker pairs beside own-speaker z."""
    lines = [
        "| System | most similar different-speaker pairs (mean z) | those speakers' own "
        "mean z | own mean z: lowest / median of all speakers |",
        "| --- | --- | --- | --- |",
    ]
    for path in files:
        different, own = pair_means(path, utt2spk)
        best = sorted(different.items(), key=lambda kv: -kv[1])[:top]
        first = best[0][0].split("–")
        lines.append(
            f"| {path.stem} | {', '.join(f'{p} {v:.2f}' for p, v in best)} "
            f"| {', '.join(f'{s} {own[s]:.2f}' for s in first)} "
            f"| {min(own.values()):.2f} / {float(np.median(list(own.values()))):.2f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scores", type=Path, nargs="*", help="score files (default: all)")
    parser.add_argument("--utt2spk", type=Path, default=DEFAULT_WORK / "data/test/utt2spk")
    parser.add_argument("--top", type=int, default=3)
    parser.add_argument("--out", type=Path, help="also write the table to this Markdown file")
    args = parser.parse_args(argv)
    files = args.scores or sorted((DEFAULT_WORK / "scores").glob("*.txt"))
    if not files:
        print(
            "pair_similarity: no score files; run benchmarks/accuracy.py first "
            f"(it writes {DEFAULT_WORK / 'scores'})",
            file=sys.stderr,
        )
        return 2
    if not args.utt2spk.is_file():
        print(f"pair_similarity: {args.utt2spk} does not exist", file=sys.stderr)
        return 2
    text = table(files, read_utt2spk(args.utt2spk), args.top)
    print(text)
    if args.out:
        args.out.write_text(
            "# Speaker-pair similarity on the cv-zh test trials\n\n"
            "Written by `python benchmarks/pair_similarity.py` from the score files of "
            "`benchmarks/accuracy.py`; z = score standardised by the system's non-target "
            "scores.\n\n" + text + "\n",
            encoding="utf-8",
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
