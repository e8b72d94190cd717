"""Open-set identification on dev sets through a model's deployed scorer.

    python benchmarks/identification.py [--model src/voiceprint/assets/default.onnx]
        [--data KALDI_DIR ...] [--enroll 3] [--repeats 20]

Default sets: so762 dev and the accuracy benchmark's cv-zh, dsp20 and ar-cmd test
folders (run ``benchmarks/accuracy.py`` first). In each, every speaker is enrolled from
its first ``--enroll`` clips (a speaker model, as ``voiceprint enroll`` makes it); every
other clip is a probe. For galleries of 10, 20,
... speakers up to all of them (``--repeats`` random galleries each), a probe of a
gallery speaker is a mated search, a probe of any other speaker a non-mated one (with
the whole dev set enrolled, each probe searches the gallery without its own speaker:
leave one out). Reported per gallery size:

* rank-1: the share of mated searches whose best match is the right speaker;
* FNIR at FPIR 1%: with the threshold at which 1% of non-mated searches name someone,
  the share of mated searches that do not name the right speaker;
* the deployed decision (``Decision.for_gallery``, as ``voiceprint identify`` takes
  it) at each open-set prior of ``PRIORS``: the FPIR and FNIR it gives; the default
  prior (``scoring.OPEN_SET_PRIOR``) is chosen from these (:func:`choose`).

Writes ``benchmarks/results/identification.md`` (and .json).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from voiceprint.data.corpus import by_speaker, read_kaldi_dir  # noqa: E402
from voiceprint.embedder import load_embedder  # noqa: E402


def searches(
    llr: np.ndarray, probe_spk: np.ndarray, gallery: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mated (best is right, best LLR) and non-mated (best LLR) searches of one gallery.

    ``llr`` (P, S): every probe against every speaker model; ``gallery``: column indices.
    """
    in_gallery = np.isin(probe_spk, gallery)
    sub = llr[:, gallery]
    best = sub.argmax(1)
    mated_right = gallery[best[in_gallery]] == probe_spk[in_gallery]
    mated_llr = sub[in_gallery].max(1)
    if (~in_gallery).any():
        non_llr = sub[~in_gallery].max(1)
    else:  # the whole set enrolled: leave each probe's own speaker out
        masked = np.where(gallery[None, :] == probe_spk[:, None], -np.inf, sub)
        non_llr = masked.max(1)
    return mated_right, mated_llr, non_llr


# Open-set priors compared (label -> prior; None: the model's own decision prior).
PRIORS: dict[str, float | None] = {
    "model's": None,
    "0.02": 0.02,
    "0.03": 0.03,
    "0.05": 0.05,
    "0.1": 0.1,
    "0.2": 0.2,
    "0.5": 0.5,
}
# The default dev sets: so762 dev (the identification dev set, galleries up to 60) and
# the accuracy benchmark's prepared cv-zh, dsp20 and ar-cmd test folders.
DEFAULT_DATA = (
    "exp/shipped/data/test",
    "exp/bench_accuracy/data/cv-zh-test",
    "exp/bench_accuracy/data/dsp20-test",
    "exp/bench_accuracy/data/ar-cmd-test",
)
SET_LIMIT = 2.0  # a prior may give at most this many times --fpir on any one set


def measure_set(embedder: Any, data: str, enroll: int, repeats: int, fpir: float) -> dict[str, Any]:
    """Rank-1, FNIR at ``fpir`` and each open-set prior's FPIR / FNIR per gallery size."""
    scorer = embedder.scorer
    groups = by_speaker(read_kaldi_dir(data))
    speakers = sorted(groups)
    utts = [u for s in speakers for u in groups[s]]
    emb, speech, no_speech = embedder.embed_files_measured([u.path for u in utts])
    index = {u.utt: i for i, u in enumerate(utts)}
    enrolled = [[index[u.utt] for u in groups[s][:enroll]] for s in speakers]
    models = np.stack([scorer.speaker_model(emb[rows]) for rows in enrolled])
    enrolled_seconds = np.array([speech[rows].sum() for rows in enrolled])  # (S,) as the store
    probes = [u for s in speakers for u in groups[s][enroll:]]
    probe_spk = np.array([speakers.index(u.speaker) for u in probes])
    probe_rows = [index[u.utt] for u in probes]
    units = scorer.units(emb[probe_rows])
    scores = scorer.score(models, units).T  # (P, S)
    # as the store scores them: the trial's quality from both sides' net speech
    llr = scorer.llr(scores, enrolled_seconds[None, :], speech[probe_rows][:, None])
    decision = embedder.decision
    # a probe with too little speech is answered "not enough speech": it names nobody
    answered = speech[probe_rows] >= decision.min_speech_seconds
    if decision.min_speech_seconds:
        answered &= (enrolled_seconds >= decision.min_speech_seconds)[probe_spk]
    rng = np.random.default_rng(0)
    rows = []
    sizes = [g for g in range(10, len(speakers), 10)] + [len(speakers)]
    for size in sizes:
        n_repeats = 1 if size == len(speakers) else repeats
        rank1, fnir = [], []
        deployed: dict[str, list[tuple[float, float]]] = {p: [] for p in PRIORS}
        for _ in range(n_repeats):
            gallery = np.sort(rng.choice(len(speakers), size, replace=False))
            right, mated, non = searches(llr, probe_spk, gallery)
            in_gallery = np.isin(probe_spk, gallery)
            non_answered = answered[~in_gallery] if (~in_gallery).any() else answered
            threshold = np.quantile(non, 1 - fpir, method="higher")
            rank1.append(right.mean())
            fnir.append(1 - np.mean(right & (mated > threshold)))
            for label, prior in PRIORS.items():
                at = decision.for_gallery(size, prior).threshold
                named = right & (mated >= at) & answered[in_gallery]
                deployed[label].append(
                    (float(np.mean((non >= at) & non_answered)), float(1 - named.mean()))
                )
        rows.append(
            {
                "gallery": size,
                "rank1": float(np.mean(rank1)),
                "fnir_at_fpir": float(np.mean(fnir)),
                "galleries": n_repeats,
                "priors": {
                    label: {
                        "threshold": float(decision.for_gallery(size, prior).threshold),
                        "fpir": float(np.mean([f for f, _ in deployed[label]])),
                        "fnir": float(np.mean([n for _, n in deployed[label]])),
                    }
                    for label, prior in PRIORS.items()
                },
            }
        )
    return {
        "data": data,
        "speakers": len(speakers),
        "probes": len(probes),
        "refused_whole": len(set(no_speech)),
        "rows": rows,
    }


def choose(sets: list[dict[str, Any]], fpir: float) -> str:
    """The highest open-set prior whose FPIR (each set's worst gallery size) is at most
    ``fpir`` on the mean of the sets and at most ``SET_LIMIT * fpir`` on every set (the
    model's own decision when none is)."""

    def worst(label: str, rows: list[dict[str, Any]]) -> float:
        return max(r["priors"][label]["fpir"] for r in rows)

    safe = [
        label
        for label in PRIORS
        if np.mean([worst(label, s["rows"]) for s in sets]) <= fpir
        and all(worst(label, s["rows"]) <= SET_LIMIT * fpir for s in sets)
    ]
    return max(safe, key=lambda label: PRIORS[label] or 0.0, default="model's")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(ROOT / "src/voiceprint/assets/default.onnx"))
    parser.add_argument("--data", action="append", help="a Kaldi folder; repeatable")
    parser.add_argument("--enroll", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--fpir", type=float, default=0.01)
    parser.add_argument("--out", default=str(ROOT / "benchmarks/results/identification"))
    args = parser.parse_args()
    # as evaluation: every clip, refusals listed
    embedder = load_embedder(args.model).with_policy(refuse=False)
    if embedder.decision is None:
        raise SystemExit(f"{args.model} carries no decision to identify with")
    sets = [
        measure_set(embedder, data, args.enroll, args.repeats, args.fpir)
        for data in (args.data or DEFAULT_DATA)
    ]
    chosen = choose(sets, args.fpir)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    payload = {"model": args.model, "sets": sets, "chosen_prior": chosen}
    out.with_suffix(".json").write_text(json.dumps(payload, indent=2))
    lines = [
        f"# Open-set identification, {args.enroll} enrollment clips per speaker",
        "",
        f"Model {embedder.model_id} ({Path(args.model).name}), through its deployed scorer, "
        "scored as the store scores: speaker models of the enrollment clips, LLRs "
        "quality-aware from the enrolled and the probe's net speech; probes or speakers "
        "under the speech floor are answered 'not enough speech' (they name nobody). "
        "The decision to name the best match: the model's Bayes decision at an open-set "
        "prior (that the voice is one of the enrolled), spread over the gallery "
        "(`Decision.for_gallery`). Cells: threshold (LLR): FPIR % / FNIR %. With the "
        "whole set enrolled, a probe searches the gallery without its own speaker.",
    ]
    for found in sets:
        lines += [
            "",
            f"## {found['data']} ({found['speakers']} speakers, {found['probes']} probes; "
            f"clips the speech check would refuse, embedded whole: {found['refused_whole']})",
            "",
            f"| gallery | rank-1 % | FNIR % at FPIR {100 * args.fpir:g}% | "
            + " | ".join(f"prior {label}" for label in PRIORS)
            + " |",
            "|---|---|---|" + "---|" * len(PRIORS),
            *[
                f"| {r['gallery']} | {100 * r['rank1']:.1f} | {100 * r['fnir_at_fpir']:.1f} | "
                + " | ".join(
                    f"{r['priors'][p]['threshold']:.2f}: {100 * r['priors'][p]['fpir']:.2f} / "
                    f"{100 * r['priors'][p]['fnir']:.1f}"
                    for p in PRIORS
                )
                + " |"
                for r in found["rows"]
            ],
        ]
    lines += [
        "",
        f"Chosen (`scoring.OPEN_SET_PRIOR`): **{chosen}**, the highest prior whose FPIR "
        f"(the worst gallery size of each set) is at most {100 * args.fpir:g}% on the "
        f"mean of the sets and at most {SET_LIMIT * 100 * args.fpir:g}% on each.",
        "",
        "```bash",
        "OMP_NUM_THREADS=1 .venv/bin/python benchmarks/identification.py",
        "```",
        "",
    ]
    out.with_suffix(".md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
