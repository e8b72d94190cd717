"""How much speech a decision needs: false accepts at ``--far`` by the trial's net speech.

    python benchmarks/speech_floor.py --model exp/shipped/<checkpoint>.pth [--far 0.01]
        [--set NAME=ROOT ...] [--out benchmarks/results/speech_floor.json]

Run from the repository root. Every trial of each dev set (the accuracy benchmark's five
by default) is scored through the model's own scorer, its LLR from its calibration with
the net speech (VAD) of both sides. The threshold that ``--far`` sets is then applied
within bins of the shorter side's net speech, without any speech floor, and the measured
false-accept and false-reject rates of each bin are reported per set. The suggested floor
(``eval.min_speech_seconds``) is the least net speech above which every set keeps its
false-accept rate at or below ``--limit`` times the promised rate: the decision answers
"not enough speech" below it. Writes JSON and Markdown (``--out`` and ``.md``).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks.accuracy import DEFAULT_SETS, is_kaldi_set, parse_sets  # noqa: E402
from voiceprint.config import DataConfig  # noqa: E402
from voiceprint.data.corpus import scan_split  # noqa: E402
from voiceprint.data.protocol import prepare_test  # noqa: E402
from voiceprint.data.trials import TrialSet  # noqa: E402
from voiceprint.embedder import load_embedder  # noqa: E402
from voiceprint.evaluation import score_test_set  # noqa: E402

log = logging.getLogger("speech_floor")

EDGES = (0.0, 0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 3.0, 5.0, np.inf)  # seconds of net speech


def bin_rates(
    llr: np.ndarray, labels: np.ndarray, shorter: np.ndarray, threshold: float
) -> list[dict[str, Any]]:
    """FAR / FRR of ``llr >= threshold`` within each bin of ``shorter`` (s)."""
    rows = []
    for low, high in zip(EDGES[:-1], EDGES[1:], strict=True):
        inside = (shorter >= low) & (shorter < high)
        tar, non = inside & labels, inside & ~labels
        rows.append(
            {
                "from": low,
                "to": None if np.isinf(high) else high,
                "n_target": int(tar.sum()),
                "n_nontarget": int(non.sum()),
                "far": float((llr[non] >= threshold).mean()) if non.any() else None,
                "frr": float((llr[tar] < threshold).mean()) if tar.any() else None,
            }
        )
    return rows


def rates_from(
    llr: np.ndarray, labels: np.ndarray, shorter: np.ndarray, threshold: float, floor: float
) -> dict[str, float]:
    """FAR and FRR when trials under ``floor`` s are refused (counted as rejected)."""
    accepted = (llr >= threshold) & (shorter >= floor)
    return {
        "far": float(accepted[~labels].mean()),
        "frr": float(1.0 - accepted[labels].mean()),
        "refused": float((shorter < floor).mean()),
    }


def suggest_floor(per_set: dict[str, dict[str, Any]], promised: float, limit: float) -> float:
    """The least bin edge from which every set's FAR stays within ``limit * promised``."""
    for edge in EDGES[:-1]:
        if all(s["from_edge"][f"{edge:g}"]["far"] <= limit * promised for s in per_set.values()):
            return float(edge)
    return float(EDGES[-2])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, required=True, help="model file (.pth/.onnx)")
    parser.add_argument("--set", action="append", default=[], help="NAME=ROOT; repeatable")
    parser.add_argument("--far", type=float, default=0.01, help="the promised false-accept rate")
    parser.add_argument("--limit", type=float, default=1.5, help="tolerated FAR / promised")
    parser.add_argument("--work", type=Path, default=Path("exp") / "bench_speech_floor")
    parser.add_argument(
        "--out", type=Path, default=REPO / "benchmarks" / "results" / "speech_floor.json"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    sets = parse_sets(args.set) if args.set else dict(DEFAULT_SETS)
    # score every trial, as evaluate does
    embedder = load_embedder(args.model).with_policy(refuse=False)
    if embedder.decision is None:
        raise SystemExit(f"{args.model} carries no decision: calibrate it first")
    threshold = embedder.decision.at_far(args.far).threshold
    per_set: dict[str, dict[str, Any]] = {}
    for name, root in sets.items():
        folder = root if is_kaldi_set(root) else args.work / "data" / name
        if not is_kaldi_set(root):
            prepare_test(scan_split(root, "test"), DataConfig(test_speakers=0, test_utts=0), folder)
        test = TrialSet.read(folder, "pairs")
        scored = score_test_set(embedder, embedder.scorer, test, progress=False)
        labels = test.labels
        llr = embedder.scorer.llr(scored.scores, scored.enroll_seconds, scored.test_seconds)
        shorter = np.minimum(scored.enroll_seconds, scored.test_seconds)
        per_set[name] = {
            "bins": bin_rates(llr, labels, shorter, threshold),
            "from_edge": {
                f"{edge:g}": rates_from(llr, labels, shorter, threshold, edge)
                for edge in EDGES[:-1]
            },
            "median_speech_seconds": float(np.median(np.r_[scored.enroll_seconds])),
        }
        log.info("%s: %s", name, per_set[name]["from_edge"]["0"])
    floor = suggest_floor(per_set, args.far, args.limit)
    report = {
        "model": str(args.model),
        "model_id": embedder.model_id,
        "far": args.far,
        "threshold": threshold,
        "limit": args.limit,
        "suggested_floor_seconds": floor,
        "sets": per_set,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2), encoding="utf-8")
    md = [
        f"# False accepts at --far {args.far:g} by net speech ({args.model.name})",
        "",
        f"Threshold {threshold:.3f} (the model's --far {args.far:g}), no speech floor. "
        "FAR / FRR % of the trials whose shorter side holds this much net speech (VAD); "
        "n: non-target trials.",
        "",
        "| set | " + " | ".join(f"{b['from']:g}-{b['to'] or '∞'} s" for b in per_set[name]["bins"]),
        "| --- |" + " --- |" * len(EDGES[:-1]),
    ]
    for set_name, info in per_set.items():
        cells = [
            "–"
            if b["far"] is None
            else f"{100 * b['far']:.1f} / {100 * (b['frr'] or 0):.0f} (n {b['n_nontarget']})"
            for b in info["bins"]
        ]
        md.append(f"| {set_name} | " + " | ".join(cells) + " |")
    md += [
        "",
        f"With trials under each floor refused (counted as rejected): FAR / FRR % on each "
        f"set. Suggested floor: **{floor:g} s** (every set within {args.limit:g} x the "
        f"promised rate from there on).",
        "",
        "| floor (s) | " + " | ".join(per_set) + " |",
        "| --- |" + " --- |" * len(per_set),
    ]
    for edge in EDGES[:-1]:
        cells = [
            f"{100 * info['from_edge'][f'{edge:g}']['far']:.2f} / "
            f"{100 * info['from_edge'][f'{edge:g}']['frr']:.1f}"
            for info in per_set.values()
        ]
        md.append(f"| {edge:g} | " + " | ".join(cells) + " |")
    md += ["", "Written by `python benchmarks/speech_floor.py`.", ""]
    args.out.with_suffix(".md").write_text("\n".join(md), encoding="utf-8")
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
