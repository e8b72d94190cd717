"""Back-end and VAD choices of a trained model, made on the dev set (never on test).

    python benchmarks/dev_choices.py --exp exp/shipped [--cvzh ../shared/data/cv-zh]
        [--resemblyzer]

Embeds once, with the model's encoder: the training speakers (mean and AS-norm cohort),
the held-out speakers (calibration, ``exp/<name>/data/calibration``), the dev set
(``exp/<name>/data/test``, so762 test for the shipped recipe) and, beside it for
reporting only, cv-zh test (the lab protocol's 20 x 10). Then scores every back-end
variant through :class:`voiceprint.scoring.Scorer`, calibrated on the held-out speakers
as ``release`` calibrates, and the dev set once more with VAD trimming. Writes
``benchmarks/results/dev_choices.md`` (and .json): EER [95% CI], minDCF and actual DCF
per variant, and which variant the dev set picks (lowest minDCF, then EER). The cv-zh
column is never used to choose. ``--resemblyzer`` adds the pretrained Resemblyzer
reference on the same trials, run side by side (bench extra: benchmarks/README.md).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT))  # benchmarks.references

from voiceprint import metrics  # noqa: E402
from voiceprint.calibration import (  # noqa: E402
    enroll_style_trials,
    fit_calibration,
    training_stats,
)
from voiceprint.config import EvalConfig  # noqa: E402
from voiceprint.data.corpus import read_kaldi_dir, scan_split  # noqa: E402
from voiceprint.data.protocol import select  # noqa: E402
from voiceprint.data.trials import TrialSet, pair_trials  # noqa: E402
from voiceprint.embedder import Embedder  # noqa: E402
from voiceprint.experiment import find_model  # noqa: E402
from voiceprint.scoring import Scorer  # noqa: E402
from voiceprint.speech import SpeechPolicy  # noqa: E402

VARIANTS = [  # (label, mean subtraction, AS-norm top)
    ("raw cosine", False, 0),
    ("mean subtraction", True, 0),
    ("mean + AS-norm top 50", True, 50),
    ("mean + AS-norm top 100", True, 100),
    ("mean + AS-norm top 300", True, 300),
]


def embed(
    embedder: Embedder, utts: list, cache: Path, progress: bool, policy: SpeechPolicy
) -> tuple[np.ndarray, list[str]]:
    """Embeddings of ``utts`` (cached in ``cache`` as .npy, keyed by the utterance list),
    and the clips embedded now in which ``policy`` found no speech (none from the cache)."""
    key = cache.with_suffix(".ids")
    ids = "\n".join(u.utt for u in utts)
    if cache.is_file() and key.is_file() and key.read_text() == ids:
        return np.load(cache), []
    emb, _, no_speech = embedder.embed_files_measured(
        [u.path for u in utts], progress=progress, policy=policy
    )
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.save(cache, emb)
    key.write_text(ids)
    return emb, no_speech


def score_pairs(scorer: Scorer, utts: list, emb: np.ndarray) -> dict:
    """All-pairs trials of ``utts`` through ``scorer``: EER [CI], minDCF, actual DCF."""
    trials = TrialSet(utts, pair_trials(utts))
    units = dict(zip([u.utt for u in utts], scorer.units(emb), strict=True))
    scores = scorer.score_trials(units, trials.pairs())
    spk_a, spk_b = trials.speakers()
    llr = scorer.llr(scores) if scorer.calibrated else None
    return metrics.report(
        scores, trials.labels, spk_a, spk_b, 0.01, llr, n_boot=200, seed=0, n_boot_dcf=0
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--exp", default="exp/shipped")
    parser.add_argument("--cvzh", default=str(ROOT.parent / "shared" / "data" / "cv-zh"))
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "dev_choices"))
    parser.add_argument("--quiet", action="store_true")
    parser.add_argument(
        "--resemblyzer",
        action="store_true",
        help="also score Resemblyzer (pretrained GE2E; bench extra) on the same trials",
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    progress = not args.quiet
    exp = Path(args.exp)
    embedder = Embedder.from_checkpoint(find_model(exp))
    config = embedder.config
    # as evaluation: every trial scored, refusals listed (untrimmed: trimming is a choice)
    policy = SpeechPolicy(check=True, trim=False, refuse=False)
    cache = exp / "bench_dev_choices"
    data = exp / "data"
    train, heldout = read_kaldi_dir(data / "train"), read_kaldi_dir(data / "calibration")
    dev = read_kaldi_dir(data / "test")
    cvzh = select(scan_split(args.cvzh, "test"), 20, 10, config.data.seed + 1, "cv-zh test")
    unchecked = replace(policy, check=False)  # as release embeds the training clips
    emb: dict[str, np.ndarray] = {}
    no_speech: list[str] = []
    for name, utts, chosen in (
        ("train", train, unchecked),
        ("heldout", heldout, policy),
        ("dev", dev, policy),
        ("cvzh", cvzh, policy),
    ):
        emb[name], found_none = embed(embedder, utts, cache / f"{name}.npy", progress, chosen)
        no_speech += found_none
    heldout_by_utt = dict(zip([u.utt for u in heldout], emb["heldout"], strict=True))
    trial_set = enroll_style_trials(heldout, 1, list(config.data.corpora))
    rows = []
    for label, mean, top in VARIANTS:
        ecfg = EvalConfig(mean_subtract=mean, asnorm_top=top)
        stats = training_stats(emb["train"], [u.speaker for u in train], ecfg, config.seed)
        backend = fit_calibration(Scorer(stats), trial_set, heldout_by_utt, 0.01, {})
        scorer = Scorer(backend)
        rows.append(
            {
                "variant": label,
                "mean_subtract": mean,
                "asnorm_top": top,
                "dev": score_pairs(scorer, dev, emb["dev"]),
                "cvzh": score_pairs(scorer, cvzh, emb["cvzh"]),
            }
        )
        logging.info("%s: dev EER %.2f%%", label, 100 * rows[-1]["dev"]["eer"])
    trimmed, _, missing = embedder.embed_files_measured(
        [u.path for u in dev], progress=progress, policy=replace(policy, trim=True)
    )
    no_speech += missing
    vad_rows = {
        "untrimmed": score_pairs(Scorer(), dev, emb["dev"]),
        "trimmed (silero-vad)": score_pairs(Scorer(), dev, trimmed),
    }
    best = min(rows, key=lambda r: (round(r["dev"]["min_dcf"], 3), r["dev"]["eer"]))
    references = []
    if args.resemblyzer:
        from benchmarks.references.resemblyzer_ref import ResemblyzerEmbedder
        from voiceprint import audio

        reference = ResemblyzerEmbedder()
        cells = {}
        for key, utts in (("dev", dev), ("cvzh", cvzh)):
            vectors = np.stack([reference.embed(audio.load(u.path)) for u in utts])
            cells[key] = score_pairs(Scorer(), utts, vectors)
        references.append({"variant": "Resemblyzer (pretrained GE2E), cosine", **cells})
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    result = {
        "model": str(find_model(exp)),
        "rows": rows,
        "vad": vad_rows,
        "chosen": best,
        "references": references,
        "no_speech": sorted(set(no_speech)),
    }
    out.with_suffix(".json").write_text(json.dumps(result, indent=2))

    def cell(m: dict) -> str:
        lo, hi = m["eer_ci95"]
        act = f" / {m['act_dcf']:.3f}" if "act_dcf" in m else ""
        return f"{100 * m['eer']:.2f} [{100 * lo:.2f}, {100 * hi:.2f}] / {m['min_dcf']:.3f}{act}"

    lines = [
        f"# Back-end and VAD choices on the dev set ({exp.name})",
        "",
        "Calibration on the held-out training speakers; each cell: EER % [95% CI] / minDCF"
        " / actual DCF (P_target 0.01). Chosen on so762 dev only; cv-zh test is reported.",
        "",
        "| back-end | so762 dev (chooses) | cv-zh test (reported only) |",
        "|---|---|---|",
        *[f"| {r['variant']} | {cell(r['dev'])} | {cell(r['cvzh'])} |" for r in rows],
        *[f"| *{r['variant']}* | {cell(r['dev'])} | {cell(r['cvzh'])} |" for r in references],
        "",
        f"Chosen on dev: **{best['variant']}**.",
        "",
        f"Clips the speech check would refuse (embedded whole here): "
        f"{', '.join(sorted(set(no_speech))) or 'none'}.",
        "",
        "| VAD on the dev set (raw cosine) | EER % [95% CI] / minDCF |",
        "|---|---|",
        *[f"| {k} | {cell(v)} |" for k, v in vad_rows.items()],
        "",
    ]
    out.with_suffix(".md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
