"""Which test speakers do the systems find alike? Speaker-pair similarity from trial scores.

    python benchmarks/pair_similarity.py [--scores exp/bench_accuracy/scores/*.txt]
        [--test-dir exp/bench_accuracy/data/test] [--top 3]
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
if str(REPO) not in sys.path:  # run as a script: make `benchmarks` importable
    sys.path.insert(0, str(REPO))

from benchmarks.accuracy import read_scores  # noqa: E402
from benchmarks.references import TrialSet, load_trial_set  # noqa: E402

DEFAULT_WORK = REPO / "exp" / "bench_accuracy"


def pair_means(
    scores: np.ndarray, spk_a: np.ndarray, spk_b: np.ndarray
) -> tuple[dict[str, float], dict[str, float]]:
    """Mean non-target-standardised score per speaker pair: (different pairs, own speakers).

    ``scores``, ``spk_a``, ``spk_b``: (n_trials,) each. Different-speaker pairs are keyed
    ``"A–B"`` (sorted), own-speaker means by ``"A"``.
    """
    same = spk_a == spk_b
    if same.all() or not same.any():
        raise ValueError("needs both same- and different-speaker trials")
    z = (scores - scores[~same].mean()) / scores[~same].std()
    values: dict[tuple[str, str], list[float]] = defaultdict(list)
    for a, b, value in zip(spk_a.tolist(), spk_b.tolist(), z.tolist(), strict=True):
        values[(min(a, b), max(a, b))].append(value)
    different = {f"{a}–{b}": float(np.mean(v)) for (a, b), v in values.items() if a != b}
    own = {a: float(np.mean(v)) for (a, b), v in values.items() if a == b}
    return different, own


def table(files: list[Path], trial_set: TrialSet, top: int) -> str:
    """Markdown: per system the most similar different-speaker pairs beside own-speaker z.

    Each file is a ``scores.txt`` holding a score for every trial of ``trial_set``.
    """
    spk_a, spk_b = trial_set.speakers()
    lines = [
        "| System | most similar different-speaker pairs (mean z) | those speakers' own "
        "mean z | own mean z: lowest / median of all speakers |",
        "| --- | --- | --- | --- |",
    ]
    for path in files:
        different, own = pair_means(read_scores(path, trial_set), spk_a, spk_b)
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
    parser.add_argument(
        "--test-dir",
        type=Path,
        default=DEFAULT_WORK / "data" / "test",
        help="prepared test folder (wav.scp, utt2spk, trials_pairs) the scores belong to",
    )
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
    try:
        trial_set = load_trial_set(args.test_dir, "pairs")
    except (OSError, ValueError) as err:
        print(f"pair_similarity: {err}", file=sys.stderr)
        return 2
    text = table(files, trial_set, args.top)
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
