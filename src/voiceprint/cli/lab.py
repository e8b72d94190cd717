"""Lab stages: ``prepare``, ``train`` (ending with the back-end fit), ``evaluate`` and
``run`` (all three)."""

from __future__ import annotations

import argparse
import json
import logging
import os
from pathlib import Path

from voiceprint.config import ExperimentConfig, load_config

log = logging.getLogger(__name__)


def _config(args: argparse.Namespace) -> ExperimentConfig:
    overrides = list(args.overrides)
    if getattr(args, "root", None):
        overrides.append(f"data.root={args.root}")
    return load_config(args.config, overrides)


def _add_config_args(parser: argparse.ArgumentParser, root: bool = True) -> None:
    parser.add_argument("--config", "-c", help="recipe YAML (default: built-in defaults)")
    if root:
        parser.add_argument(
            "--root",
            help="corpus root in AISHELL-1 layout (overrides data.root); "
            "without one, a synthetic corpus is made",
        )
    parser.add_argument(
        "overrides",
        nargs="*",
        metavar="KEY=VALUE",
        help="dotted config overrides, e.g. train.epochs=5 model.pooling=stats",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def cmd_prepare(args: argparse.Namespace) -> int:
    from voiceprint.data.protocol import prepare

    config = _config(args)
    prepared = prepare(config, progress=not args.quiet)
    print(f"train: {prepared.train_dir}\ntest:  {prepared.test_dir}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from voiceprint.data.protocol import prepare, prepared_lists
    from voiceprint.training.trainer import train

    config = _config(args)
    prepared, reason = (None, "--reprepare") if args.reprepare else prepared_lists(config)
    if prepared is None:
        log.info("%s: preparing the data", reason)
        prepared = prepare(config, progress=not args.quiet)
    path = train(config, prepared, resume=args.resume, progress=not args.quiet)
    release_backend(path, config, not args.quiet)
    print(f"checkpoint: {path}")
    return 0


def release_backend(checkpoint: Path, config: ExperimentConfig, progress: bool) -> None:
    """Fit the scorer's back-end into the trained checkpoint (on the main process only)."""
    if int(os.environ.get("RANK", "0")) != 0:
        return
    from voiceprint.calibration import release

    release(checkpoint, config, progress=progress)


def cmd_evaluate(args: argparse.Namespace) -> int:
    from voiceprint.cli.use import model_path
    from voiceprint.evaluation import evaluate

    results = evaluate(
        model_path(args.model),
        root=args.root,
        data_dir=args.data,
        trials=args.trials,
        out_dir=args.out,
        overrides=args.overrides,
        progress=not args.quiet,
    )
    print(
        json.dumps(
            {
                k: results[k]
                for k in (
                    "eer",
                    "eer_ci95",
                    "min_dcf",
                    "min_dcf_ci95",
                    "act_dcf",
                    "n_target",
                    "n_nontarget",
                )
                if k in results
            },
            indent=2,
        )
    )
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from voiceprint.data.protocol import prepare
    from voiceprint.evaluation import evaluate
    from voiceprint.training.trainer import train

    config = _config(args)
    prepared = prepare(config, progress=not args.quiet)
    checkpoint = train(config, prepared, resume=args.resume, progress=not args.quiet)
    release_backend(checkpoint, config, not args.quiet)
    results = evaluate(checkpoint, progress=not args.quiet)
    actual = f", actual DCF {results['act_dcf']:.3f}" if "act_dcf" in results else ""
    print(
        f"{config.name}: EER {100 * results['eer']:.2f}% "
        f"(95% CI {100 * results['eer_ci95'][0]:.2f}-{100 * results['eer_ci95'][1]:.2f}), "
        f"minDCF {results['min_dcf']:.3f}{actual}; outputs in {config.out_dir}"
    )
    return 0


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("prepare", help="apply the protocol; write Kaldi lists and trials")
    _add_config_args(p)
    p.set_defaults(func=cmd_prepare)

    p = sub.add_parser("train", help="train a recipe (prepares the data if needed)")
    _add_config_args(p)
    p.add_argument("--resume", action="store_true", help="continue from the last checkpoint")
    p.add_argument("--reprepare", action="store_true", help="re-run prepare first")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser(
        "evaluate", help="EER, minDCF, actual DCF, ROC and DET of a model, as deployed"
    )
    p.add_argument(
        "--model",
        "--exp",
        dest="model",
        help="experiment folder exp/<name>, checkpoint (.pth) or ONNX file (default: the "
        "packaged default model)",
    )
    p.add_argument("--root", help="score on this corpus' test speakers instead")
    p.add_argument("--data", help="score on this Kaldi data folder instead")
    p.add_argument("--out", help="output folder (default: beside the model)")
    p.add_argument("--trials", choices=("pairs", "enroll"), help="trial list (default: config)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument(
        "overrides",
        nargs="*",
        metavar="eval.KEY=VALUE",
        help="back-end settings, e.g. eval.asnorm_top=100 eval.mean_subtract=true",
    )
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("run", help="prepare + train + evaluate in one go")
    _add_config_args(p)
    p.add_argument("--resume", action="store_true", help="continue from the last checkpoint")
    p.set_defaults(func=cmd_run)
