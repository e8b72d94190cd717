"""Component ablation: one recipe, one change at a time, on the same trials.

    python benchmarks/ablation.py [--config configs/cpu_best.yaml] [--root ../shared/data/cv-zh]
        [--base "<overrides shared by every row>"]
        [--only name,...] [--out benchmarks/results/ablation.md]

Each row trains ``--config`` with the ``--base`` overrides plus the row's own overrides
(``voiceprint run``, experiment ``exp/ablation_<row>``, reused when already finished) and
scores it on the protocol's test trials (all pairs). The base (``DEFAULT_BASE``) shortens
the recipe so that a row trains in minutes on 2 cores, and pins the augmentation and
precision the table was measured with, so that later changes to the recipe file do not
change the rows: ablation rows compare with each other, not with the full recipe.
Back-end rows (AS-norm, calibration, mean subtraction) re-score the base model without
training. The table gives EER with its 95% bootstrap interval over test
speakers, minDCF(0.01), the raw-cosine figures, and the training time (sum of epoch wall
seconds, and the training process's CPU seconds).
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch

# Shared by every row: a short schedule without speed perturbation, and the augmentation
# (noise + babble + reverberation + SpecAugment) and float32 the table was measured with.
DEFAULT_BASE = (
    "augment.speed_perturb=false train.epochs=10 train.finetune_epochs=0 "
    "augment.noise_prob=0.3 augment.babble_prob=0.15 augment.reverb_prob=0.2 "
    "augment.specaugment=true train.precision=fp32"
)

# name -> (what changes, training overrides); an empty list is the base itself.
TRAINING_ROWS: dict[str, tuple[str, list[str]]] = {
    "base": ("base: fbank 80, ECAPA C=256, ASP, AAM, noise+babble+reverb, SpecAugment", []),
    "mfcc": (
        "MFCC 30 (40 mels) instead of fbank 80",
        ["features.kind=mfcc", "features.n_mels=40", "features.n_mfcc=30"],
    ),
    "stats": ("statistics pooling instead of ASP", ["model.pooling=stats"]),
    "gap": ("global average pooling instead of ASP", ["model.pooling=gap"]),
    "amsoftmax": (
        "AM-softmax (m 0.2) instead of AAM",
        ["loss.name=amsoftmax", "train.finetune_epochs=0"],
    ),
    "no_noise": ("no additive noise or babble", ["augment.noise_prob=0", "augment.babble_prob=0"]),
    "no_reverb": ("no reverberation", ["augment.reverb_prob=0"]),
    "no_specaugment": ("no SpecAugment", ["augment.specaugment=false"]),
    "no_augment": (
        "no augmentation at all",
        [
            "augment.noise_prob=0",
            "augment.babble_prob=0",
            "augment.reverb_prob=0",
            "augment.specaugment=false",
        ],
    ),
    "speed": ("+ speed perturbation 0.9/1.1 as new speakers", ["augment.speed_perturb=true"]),
    "bf16": ("bfloat16 autocast of the encoder trunk", ["train.precision=bf16"]),
}

# name -> (what changes, eval overrides on the base model)
BACKEND_ROWS: dict[str, tuple[str, list[str]]] = {
    "cosine": (
        "back-end: raw cosine",
        ["eval.mean_subtract=false", "eval.lda_dim=0", "eval.asnorm_top=0", "eval.calibrate=false"],
    ),
    "mean_sub": (
        "back-end: mean subtraction",
        ["eval.mean_subtract=true", "eval.lda_dim=0", "eval.asnorm_top=0", "eval.calibrate=false"],
    ),
    "asnorm": (
        "back-end: mean subtraction + AS-norm top 100",
        ["eval.mean_subtract=true", "eval.asnorm_top=100", "eval.calibrate=false"],
    ),
    "calibrated": (
        "back-end: mean subtraction + AS-norm + calibration (actual DCF)",
        ["eval.mean_subtract=true", "eval.asnorm_top=100", "eval.calibrate=true"],
    ),
}


def run_row(args: argparse.Namespace, name: str, overrides: list[str]) -> Path:
    """Train and evaluate one row with ``voiceprint run``; returns its experiment folder."""
    exp = Path("exp") / f"ablation_{name}"
    command = [sys.executable, "-m", "voiceprint", "run", "--config", str(args.config)]
    command += ["--root", str(args.root), f"name=ablation_{name}", "train.threads=2"]
    command += shlex.split(args.base) + overrides
    if args.quiet:
        command.append("--quiet")
    if not (exp / "results.json").is_file():
        print("$", shlex.join(command), flush=True)
        subprocess.run(command, check=True)
    return exp


def evaluate_backend(base: Path, overrides: list[str]) -> dict[str, Any]:
    """Re-score the base model with ``eval.*`` overrides (results in ``<base>/eval/<tag>/``)."""
    from voiceprint.evaluation import evaluate

    return evaluate(base, overrides=overrides, progress=False)


def training_time(exp: Path) -> tuple[float, float]:
    """(wall minutes, CPU minutes) summed over the training state's epoch history."""
    state = exp / "train_state.pth"
    if not state.is_file():  # an experiment of format 1
        state = next(exp.glob("*_checkpoint.pth"))
    history = torch.load(state, map_location="cpu", weights_only=True)["history"]
    wall = sum(e["seconds"] for e in history) / 60
    cpu = sum(e.get("cpu_seconds", 0.0) for e in history) / 60
    return wall, cpu


def row(label: str, res: dict[str, Any], minutes: tuple[float, float] | None) -> str:
    low, high = res["eer_ci95"]
    raw = res["raw_cosine"]
    time = f"{minutes[0]:.1f} min ({minutes[1]:.1f} CPU-min)" if minutes else "–"
    dcf = f"{res['min_dcf']:.3f}"
    if "act_dcf" in res:
        dcf += f" (actual {res['act_dcf']:.3f})"
    return (
        f"| {label} | {100 * res['eer']:.2f} [{100 * low:.2f}, {100 * high:.2f}] | {dcf} "
        f"| {100 * raw['eer']:.2f} / {raw['min_dcf']:.3f} | {time} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", type=Path, default=Path("configs/cpu_best.yaml"))
    parser.add_argument("--root", type=Path, default=Path("../shared/data/cv-zh"))
    parser.add_argument(
        "--base",
        default=DEFAULT_BASE,
        help="overrides that every row shares (default: %(default)s)",
    )
    parser.add_argument("--only", default="", help="comma-separated row names (default: all)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/ablation.md"))
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    args = parser.parse_args()
    if not args.root.is_dir():
        parser.error(f"--root {args.root} is not a folder (the cv-zh corpus from ../shared)")
    names = [n for n in args.only.split(",") if n] or [*TRAINING_ROWS, *BACKEND_ROWS]
    unknown = sorted(set(names) - set(TRAINING_ROWS) - set(BACKEND_ROWS))
    if unknown:
        parser.error(f"--only: unknown rows {unknown}; valid: {[*TRAINING_ROWS, *BACKEND_ROWS]}")
    lines = [
        f"Ablation of `{args.config}` with `{args.base}` (each row changes one thing).",
        "",
        "| change | EER % [95% CI] | minDCF(0.01) | raw cosine EER % / minDCF | training |",
        "|---|---|---|---|---|",
    ]
    base = Path("exp") / "ablation_base"
    for name in names:
        if name in TRAINING_ROWS:
            label, overrides = TRAINING_ROWS[name]
            exp = run_row(args, name, overrides)
            res = json.loads((exp / "results.json").read_text("utf-8"))
            lines.append(row(label, res, training_time(exp)))
        else:
            label, overrides = BACKEND_ROWS[name]
            if not (base / "results.json").is_file():
                run_row(args, "base", [])
            lines.append(row(label, evaluate_backend(base, overrides), None))
        print(lines[-1], flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
