"""Lab stages: ``prepare``, ``train`` (ending with the release of ``model.pth``: back-end
fit and dev-set evaluation), ``evaluate`` and ``run`` (all three); corpora as
distributed: ``download`` and ``lists``."""

from __future__ import annotations

import argparse
import json
import logging
import os
from pathlib import Path
from typing import Any

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
            help="corpus root (overrides data.root): AISHELL-1 layout, the folder holding "
            "data_aishell.tgz + resource_aishell.tgz (unpacked first), VoxCeleb1 or CN-Celeb; "
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
    from voiceprint.experiment import Experiment

    prepared = Experiment(_config(args)).prepare(progress=not args.quiet)
    print(f"train: {prepared.train_dir}\ntest:  {prepared.test_dir}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from voiceprint.experiment import Experiment
    from voiceprint.training.trainer import train

    config = _config(args)
    experiment = Experiment(config)
    prepared, reason = (None, "--reprepare") if args.reprepare else experiment.prepared()
    if prepared is None:
        log.info("%s: preparing the data", reason)
        prepared = experiment.prepare(progress=not args.quiet)
    train(config, prepared, resume=args.resume, progress=not args.quiet)
    released = release_model(config, not args.quiet)
    if released is not None:
        print(f"model: {released[0]}")
    return 0


def cmd_shard(args: argparse.Namespace) -> int:
    from voiceprint.data.corpus import read_kaldi_dir
    from voiceprint.data.shards import write_shards
    from voiceprint.experiment import Experiment

    config = _config(args)
    experiment = Experiment(config)
    if args.data:
        utts, source = read_kaldi_dir(args.data), str(args.data)
    else:
        prepared, reason = experiment.prepared()
        if prepared is None:
            log.info("%s: preparing the data", reason)
            prepared = experiment.prepare(progress=not args.quiet)
        utts, source = prepared.train, str(prepared.train_dir)
    out = Path(args.out) if args.out else experiment.shards_dir
    index = write_shards(
        utts,
        out,
        sample_rate=config.features.sample_rate,
        shard_size=args.shard_size,
        seed=config.seed,
        source=source,
        progress=not args.quiet,
    )
    print(
        f"{out}: {index.utterances} utterances of {len(index.speakers)} speakers "
        f"({index.seconds / 3600:.2f} h) in {len(index.shards)} shards; train from them "
        f"with data.shards={out} [train.workers=N]"
    )
    return 0


def release_model(
    config: ExperimentConfig, progress: bool
) -> tuple[Path, dict[str, Any] | None] | None:
    """Release the trained experiment as ``model.pth`` (on the main process only)."""
    if int(os.environ.get("RANK", "0")) != 0:
        return None
    from voiceprint.release import release

    return release(config, progress=progress)


def cmd_evaluate(args: argparse.Namespace) -> int:
    from voiceprint.cli.common import model_path
    from voiceprint.evaluation import evaluate

    results = evaluate(
        model_path(args.model),
        root=args.root,
        data_dir=args.data,
        trials=args.trials,
        out_dir=args.out,
        overrides=args.overrides,
        progress=not args.quiet,
        trial_list=args.trial_list,
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


def cmd_download(args: argparse.Namespace) -> int:
    from voiceprint.data import aishell

    checksums: dict[str, str | None] = {}
    for text in args.checksum:
        name, sep, digest = text.partition("=")
        if not sep or name not in aishell.CHECKSUMS:
            raise ValueError(
                f"--checksum takes NAME=DIGEST with NAME one of {', '.join(aishell.CHECKSUMS)}"
            )
        checksums[name] = digest
    if args.no_checksum:
        checksums = dict.fromkeys(aishell.CHECKSUMS)
    data = aishell.download(
        Path(args.dir),
        args.url or aishell.OPENSLR_URL,
        checksums=checksums,
        keep_archives=args.keep_archives,
        progress=not args.quiet,
    )
    print(f"AISHELL-1: {data} (use --root {data})")
    return 0


def cmd_lists(args: argparse.Namespace) -> int:
    from voiceprint.data.corpus import write_kaldi_dir
    from voiceprint.data.layouts import open_corpus

    corpus = open_corpus(args.root, layout=args.layout, progress=not args.quiet)
    layout = corpus.layout
    out = Path(args.out)
    if args.part == "test":
        if layout == "aishell":
            raise ValueError("AISHELL-1 has no official trial list: 'voiceprint prepare' makes one")
        folder = corpus.write_official_test(out, args.trial_list)
        print(f"test lists + trials: {folder} (voiceprint evaluate --data {folder})")
        return 0
    utts = corpus.train()
    folder = write_kaldi_dir(out, utts)
    speakers = len({u.speaker for u in utts})
    print(
        f"{layout} training lists: {folder}, {len(utts)} utterances of {speakers} speakers "
        f"(train on them with data.kaldi_dir={folder})"
    )
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from voiceprint.experiment import Experiment
    from voiceprint.training.trainer import train

    config = _config(args)
    experiment = Experiment(config)
    prepared = experiment.prepare(progress=not args.quiet)
    train(config, prepared, resume=args.resume, progress=not args.quiet)
    released = release_model(config, not args.quiet)
    if released is None or released[1] is None:
        return 0
    results = released[1]
    actual = f", actual DCF {results['act_dcf']:.3f}" if "act_dcf" in results else ""
    print(
        f"{config.name}: EER {100 * results['eer']:.2f}% "
        f"(95% CI {100 * results['eer_ci95'][0]:.2f}-{100 * results['eer_ci95'][1]:.2f}), "
        f"minDCF {results['min_dcf']:.3f}{actual}; outputs in {experiment.folder}"
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
        "shard",
        help="write the training list as tar shards (webdataset) to stream from",
        description="Decodes the recipe's training list (prepared first if needed), or a Kaldi "
        "folder given with --data, into tar shards of 16-bit FLAC at the front-end's rate. "
        "Train from them with data.shards=DIR: DataLoader workers (train.workers) then "
        "decode, crop and augment, and memory stays flat whatever the corpus size.",
    )
    _add_config_args(p)
    p.add_argument("--data", help="shard this Kaldi data folder instead of the recipe's list")
    p.add_argument("--out", help="shard folder (default: exp/<name>/shards)")
    p.add_argument("--shard-size", type=int, default=1000, help="utterances per shard")
    p.set_defaults(func=cmd_shard)

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
    p.add_argument(
        "--root",
        help="score on this corpus' test speakers instead (VoxCeleb1, CN-Celeb: on its "
        "official trial list)",
    )
    p.add_argument(
        "--trial-list",
        help="official trial list for --root, a path or a name looked up in the root "
        "(default: veri_test2.txt for VoxCeleb1, eval/lists/trials.lst for CN-Celeb)",
    )
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

    p = sub.add_parser(
        "download",
        help="fetch (resumable, MD5-checked) and unpack AISHELL-1 as openslr ships it",
        description="Downloads data_aishell.tgz and resource_aishell.tgz into DIR (resuming "
        "partial files, verifying openslr's MD5s) and unpacks them and every per-speaker "
        "archive, as Kaldi's download_and_untar.sh does.",
    )
    p.add_argument("corpus", choices=("aishell",), help="the corpus")
    p.add_argument("dir", help="folder for the archives and the unpacked corpus")
    p.add_argument(
        "--url",
        help="base URL holding both archives (http(s):// or file://; default: openslr's "
        "SLR33); archives already in DIR are verified and kept",
    )
    p.add_argument(
        "--checksum",
        action="append",
        default=[],
        metavar="NAME=DIGEST",
        help="expected md5:<hex> or sha256:<hex> of an archive (default: openslr's MD5s)",
    )
    p.add_argument("--no-checksum", action="store_true", help="do not verify the downloads")
    p.add_argument("--keep-archives", action="store_true", help="keep the per-speaker archives")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_download)

    p = sub.add_parser(
        "lists",
        help="Kaldi lists of a corpus as distributed (VoxCeleb1/2, CN-Celeb, AISHELL-1)",
        description="Writes wav.scp, utt2spk and spk2utt of a corpus' training part (for "
        "data.kaldi_dir), or of its official test part with its trial list as 'trials' "
        "(for 'voiceprint evaluate --data').",
    )
    p.add_argument("root", help="the corpus folder")
    p.add_argument("--out", required=True, help="output Kaldi data folder")
    p.add_argument("--layout", choices=("aishell", "voxceleb1", "voxceleb2", "cnceleb"))
    p.add_argument("--part", choices=("train", "test"), default="train")
    p.add_argument("--trial-list", help="official trial list for --part test")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_lists)

    p = sub.add_parser("run", help="prepare + train + evaluate in one go")
    _add_config_args(p)
    p.add_argument("--resume", action="store_true", help="continue from the last checkpoint")
    p.set_defaults(func=cmd_run)
