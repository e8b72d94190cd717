"""Open-set identification on the dev set through a model's deployed scorer.

    python benchmarks/identification.py [--model src/voiceprint/assets/default.onnx]
        [--data exp/shipped/data/test] [--enroll 3] [--repeats 20]

Every dev speaker is enrolled from its first ``--enroll`` clips (a speaker model, as
``voiceprint enroll`` makes it); every other clip is a probe. For galleries of 10, 20,
... speakers up to all of them (``--repeats`` random galleries each), a probe of a
gallery speaker is a mated search, a probe of any other speaker a non-mated one (with
the whole dev set enrolled, each probe searches the gallery without its own speaker:
leave one out). Reported per gallery size:

* rank-1: the share of mated searches whose best match is the right speaker;
* FNIR at FPIR 1%: with the threshold at which 1% of non-mated searches name someone,
  the share of mated searches that do not name the right speaker;
* the deployed decision (``Decision.for_gallery``, as ``voiceprint identify`` takes
  it): the FPIR and FNIR it gives.

Writes ``benchmarks/results/identification.md`` (and .json).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(ROOT / "src/voiceprint/assets/default.onnx"))
    parser.add_argument("--data", default="exp/shipped/data/test")
    parser.add_argument("--enroll", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--fpir", type=float, default=0.01)
    parser.add_argument("--out", default=str(ROOT / "benchmarks/results/identification"))
    args = parser.parse_args()
    # as evaluation: every clip, refusals listed
    embedder = load_embedder(args.model).with_policy(refuse=False)
    scorer = embedder.scorer
    groups = by_speaker(read_kaldi_dir(args.data))
    speakers = sorted(groups)
    utts = [u for s in speakers for u in groups[s]]
    emb, _, no_speech = embedder.embed_files_measured([u.path for u in utts])
    index = {u.utt: i for i, u in enumerate(utts)}
    models = np.stack(
        [
            scorer.speaker_model(emb[[index[u.utt] for u in groups[s][: args.enroll]]])
            for s in speakers
        ]
    )
    probes = [u for s in speakers for u in groups[s][args.enroll :]]
    probe_spk = np.array([speakers.index(u.speaker) for u in probes])
    units = scorer.units(emb[[index[u.utt] for u in probes]])
    llr = scorer.llr(scorer.score(models, units).T)  # (P, S)
    rng = np.random.default_rng(0)
    rows = []
    sizes = [g for g in range(10, len(speakers), 10)] + [len(speakers)]
    for size in sizes:
        repeats = 1 if size == len(speakers) else args.repeats
        rank1, fnir, dep_fpir, dep_fnir = [], [], [], []
        for _ in range(repeats):
            gallery = np.sort(rng.choice(len(speakers), size, replace=False))
            right, mated, non = searches(llr, probe_spk, gallery)
            threshold = np.quantile(non, 1 - args.fpir, method="higher")
            rank1.append(right.mean())
            fnir.append(1 - np.mean(right & (mated > threshold)))
            deployed = embedder.decision.for_gallery(size).threshold  # type: ignore[union-attr]
            dep_fpir.append(np.mean(non >= deployed))
            dep_fnir.append(1 - np.mean(right & (mated >= deployed)))
        rows.append(
            {
                "gallery": size,
                "rank1": float(np.mean(rank1)),
                "fnir_at_fpir": float(np.mean(fnir)),
                "deployed_threshold": float(embedder.decision.for_gallery(size).threshold),
                "deployed_fpir": float(np.mean(dep_fpir)),
                "deployed_fnir": float(np.mean(dep_fnir)),
                "galleries": repeats,
            }
        )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps({"model": args.model, "rows": rows}, indent=2))
    lines = [
        f"# Open-set identification on {args.data} ({len(speakers)} speakers, "
        f"{args.enroll} enrollment clips each, {len(probes)} probes)",
        "",
        f"Model {embedder.model_id} ({Path(args.model).name}), through its deployed scorer."
        f" Clips the speech check would refuse, embedded whole: {len(set(no_speech))}.",
        "",
        f"| gallery | rank-1 % | FNIR % at FPIR {100 * args.fpir:g}% | deployed threshold (LLR)"
        " | deployed FPIR % | deployed FNIR % |",
        "|---|---|---|---|---|---|",
        *[
            f"| {r['gallery']} | {100 * r['rank1']:.1f} | {100 * r['fnir_at_fpir']:.1f} | "
            f"{r['deployed_threshold']:.2f} | {100 * r['deployed_fpir']:.2f} | "
            f"{100 * r['deployed_fnir']:.1f} |"
            for r in rows
        ],
        "",
    ]
    out.with_suffix(".md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
