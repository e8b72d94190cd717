"""The model commands: calibrate (a copy calibrated on your own recordings), embed (a
whole corpus), export (one ONNX file, optionally its int8 copy) and serve (the HTTP API).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from voiceprint.cli.common import (
    add_common_options,
    choose_decision,
    db_label,
    db_path,
    load_model,
    model_path,
    needs_extra,
    show_progress,
)
from voiceprint.embedder import Embedder
from voiceprint.scoring import verification


def labelled_recordings(data: str | None, root: str | None, splits: list[str]) -> list:
    """Utterances of a Kaldi folder (``--data``) or of a corpus root (``--root``, opened in
    its layout: of an AISHELL-layout tree every split folder present, or those named by
    ``--split``)."""
    from voiceprint.data.layouts import open_corpus

    if bool(data) == bool(root):
        raise ValueError("give one of --data (a Kaldi folder) or --root (AISHELL layout)")
    if data:
        return open_corpus(data, layout="kaldi").recordings()
    return open_corpus(root).recordings(splits)


def cmd_calibrate(args: argparse.Namespace) -> int:
    import warnings

    from voiceprint.recalibration import recalibrate

    utts = labelled_recordings(args.data, args.root, args.split or [])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        report = recalibrate(
            model_path(args.model),
            utts,
            args.out,
            enroll_utts=args.enroll_utts,
            p_target=args.p_target,
            far=args.far,
            report_dir=args.report,
            progress=show_progress(),
            source=str(args.data or args.root),
        )
    for warning in caught:
        print(f"warning: {warning.message}", file=sys.stderr)
    for name, point in report["before"].items():
        print(
            f"before: the model's {name} threshold {point['threshold']:.3f} gives "
            f"{100 * point['far']:.2f}% false accepts, {100 * point['frr']:.1f}% false "
            f"rejects on this data"
        )
    lo, hi = report["eer_ci95"]
    dlo, dhi = report["min_dcf_ci95"]
    actual = "actual DCF not measured (too few speakers to cross-fit)"
    if report["act_dcf"] is not None:
        alo, ahi = report["act_dcf_ci95"]
        actual = f"actual DCF {report['act_dcf']:.3f} [{alo:.3f}, {ahi:.3f}] (cross-fitted)"
    print(
        f"calibrated on {report['n_speakers']} speakers, {report['n_target']} target and "
        f"{report['n_nontarget']} non-target trials\n"
        f"EER {100 * report['eer']:.2f}% [{100 * lo:.2f}, {100 * hi:.2f}]  "
        f"minDCF({report['p_target']:g}) {report['min_dcf']:.3f} [{dlo:.3f}, {dhi:.3f}]  "
        f"{actual}\n"
        f"decision: {report['decision']['rule']} threshold {report['decision']['threshold']:.3f}"
        f"\nwrote {report['out']}; report and calibration plot in {report['report']}"
    )
    return 0


def cmd_embed(args: argparse.Namespace) -> int:
    from voiceprint.extract import Shard, embed_corpus

    utts = labelled_recordings(args.data, args.root, args.split or [])
    shard = Shard.from_env()
    try:
        info = embed_corpus(
            model_path(args.model),
            utts,
            args.out,
            shard=shard,
            batch_seconds=args.batch_seconds,
            chunk_size=args.chunk_size,
            threads=args.threads,
            progress=show_progress(),
            merge_timeout=args.merge_timeout,
        )
    except (ImportError, TimeoutError) as err:
        raise ValueError(str(err)) from err
    if info is None:
        print(f"rank {shard.rank}: chunks written under {Path(args.out) / 'parts'}")
        return 0
    print(
        f"wrote {info['count']} embedding(s) of dimension {info['dim']} (model "
        f"{info['model_id']}) to {Path(args.out) / 'embeddings.npy'}, ids in utts.txt; "
        f"{len(info['no_speech'])} clip(s) without speech embedded whole (info.json)"
    )
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    needs_extra("onnx", "export", "onnx", "onnxscript")
    from voiceprint.onnx_export import export_onnx

    source = args.checkpoint or args.exp
    try:
        out = export_onnx(source, args.out, opset=args.opset)
    except ImportError as err:
        raise ValueError(str(err)) from err
    exported = Embedder.from_onnx(out)
    threshold = "none" if exported.decision is None else f"{exported.decision.threshold:.3f}"
    evaluated = exported.evaluation
    eer = "" if not evaluated or "eer" not in evaluated else f", EER {100 * evaluated['eer']:.2f}%"
    print(
        f"wrote {out} ({out.stat().st_size / 2**20:.1f} MB): model {exported.model_id}, "
        f"{exported.embedding_dim}-dim embeddings at {exported.sample_rate} Hz, "
        f"threshold {threshold}{eer}; onnxruntime matches torch"
    )
    if args.int8_data or args.int8_root:
        _export_int8(args, out, exported)
    return 0


def _export_int8(args: argparse.Namespace, out: Path, exported: Embedder) -> None:
    """Write ``<out>.int8.onnx`` calibrated on training clips and report its agreement."""
    import numpy as np

    from voiceprint import audio
    from voiceprint.quantize import int8_path, quantize_model

    utts = labelled_recordings(args.int8_data, args.int8_root, ["train"])
    rng = np.random.default_rng(0)
    chosen = rng.choice(len(utts), size=min(args.int8_clips, len(utts)), replace=False)
    waves = [audio.load(utts[i].path, exported.sample_rate) for i in sorted(chosen)]
    copy = quantize_model(out, int8_path(out), waves, sample_rate=exported.sample_rate)
    check = waves[: min(16, len(waves))]
    a = exported.embed_batch(check)
    b = Embedder.from_onnx(copy).embed_batch(check)
    cos = verification(a, b)
    print(
        f"wrote {copy} ({copy.stat().st_size / 2**20:.1f} MB): int8, calibrated on "
        f"{len(waves)} training clip(s); cosine to float32 >= {cos.min():.4f}"
    )


def cmd_serve(args: argparse.Namespace) -> int:
    try:
        import uvicorn

        from voiceprint.service import create_app
        from voiceprint.service.access import KeyRing, RateLimit, is_loopback
    except ImportError as err:
        extra = "pip install 'voiceprint[serve]'"
        raise ValueError(f"serving needs the [serve] extra: {extra} ({err})") from err
    if args.api_key is not None:
        raise ValueError(
            "--api-key is not accepted: a key on the command line shows in ps and shell "
            "history. Put keys in a file (--api-key-file FILE, lines '<id> <admin|client> "
            "<secret>') or in $VOICEPRINT_API_KEYS / $VOICEPRINT_API_KEY"
        )
    keys = KeyRing.from_file(args.api_key_file) if args.api_key_file else KeyRing.from_env()
    if not keys and not is_loopback(args.host) and not args.insecure:
        raise ValueError(
            f"refusing to serve voiceprints on {args.host} without API keys: anyone who can "
            "reach it could enroll, list and probe voices. Configure keys (--api-key-file "
            "or $VOICEPRINT_API_KEYS), listen on 127.0.0.1, or pass --insecure"
        )
    store = db_path(args.db)
    # A shared PostgreSQL store has no file beside which to log: each replica logs locally.
    default_audit = (
        "~/.voiceprint/audit.jsonl" if isinstance(store, str) else f"{store}.audit.jsonl"
    )
    audit = str(Path(args.audit_log or default_audit).expanduser())
    embedder = load_model(args.model)
    app = create_app(
        embedder,
        store,
        keys,
        max_upload_mb=args.max_upload_mb,
        max_audio_seconds=args.max_audio_seconds,
        decision=choose_decision(embedder, args.threshold, args.far, args.p_target),
        rate_limit=RateLimit.parse(args.rate_limit),
        audit_log=None if audit == "off" else audit,
        max_batch=args.max_batch,
    )
    access = f"{len(keys)} API key(s)" if keys else "no API keys (open)"
    print(
        f"serving model {embedder.model_id} ({embedder.runtime}) on http://{args.host}:{args.port}/"
        f"  store {db_label(args.db)}  {access}  rate limit {args.rate_limit}  audit log {audit}",
        file=sys.stderr,
    )
    uvicorn.run(app, host=args.host, port=args.port, log_level="info")
    return 0


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """Add the model commands (calibrate, embed, export, serve) to the ``voiceprint`` parser."""
    p = sub.add_parser(
        "calibrate", help="a copy of the model calibrated on your own labelled recordings"
    )
    p.add_argument(
        "--model", help="model to calibrate (default: $VOICEPRINT_MODEL or the packaged one)"
    )
    p.add_argument("--data", help="Kaldi data folder (wav.scp + utt2spk)")
    p.add_argument("--root", help="AISHELL-layout tree (<root>/wav/<split>/<speaker>/...)")
    p.add_argument("--split", action="append", help="with --root: only this split (repeatable)")
    p.add_argument("--out", required=True, help="the calibrated copy (.pth or .onnx)")
    p.add_argument("--report", help="report folder (default: <out>_calibration/)")
    p.add_argument(
        "--enroll-utts", type=int, default=1, help="clips per speaker model in the trials (1)"
    )
    p.add_argument("--p-target", type=float, default=0.01, help="target prior (default 0.01)")
    p.add_argument("--far", type=float, help="make the default decision the threshold at this FAR")
    p.set_defaults(func=cmd_calibrate)

    p = sub.add_parser(
        "embed", help="embed a whole corpus (resumable; one shard per rank under torchrun)"
    )
    p.add_argument("--model", help="checkpoint, experiment folder or ONNX file (default as above)")
    p.add_argument("--data", help="Kaldi data folder (wav.scp + utt2spk)")
    p.add_argument("--root", help="AISHELL-layout tree (<root>/wav/<split>/<speaker>/...)")
    p.add_argument(
        "--split",
        action="append",
        choices=["train", "dev", "test"],
        help="with --root: only this split (repeatable; default all present)",
    )
    p.add_argument(
        "--out", required=True, help="folder for embeddings.npy, utts.txt, info.json, parts/"
    )
    p.add_argument(
        "--batch-seconds", type=float, default=120.0, help="audio per batch (default 120)"
    )
    p.add_argument(
        "--chunk-size", type=int, default=200, help="utterances per resumable chunk (200)"
    )
    p.add_argument("--threads", type=int, default=2, help="onnxruntime threads per process (2)")
    p.add_argument(
        "--merge-timeout",
        type=float,
        default=3600.0,
        help="seconds rank 0 waits for the other ranks' chunks (default 3600)",
    )
    p.set_defaults(func=cmd_embed)

    p = sub.add_parser("export", help="write a model file (.pth) as one ONNX file")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--exp", help="experiment folder holding its released model.pth")
    source.add_argument("--checkpoint", help="model file (.pth)")
    p.add_argument("--out", required=True, help="output path, e.g. model.onnx")
    p.add_argument("--opset", type=int, default=18, help="ONNX opset (default 18)")
    int8 = p.add_mutually_exclusive_group()
    int8.add_argument(
        "--int8-root",
        help="also write OUT.int8.onnx, calibrated on training clips of this AISHELL-layout "
        "corpus (its train split; never the dev or test data)",
    )
    int8.add_argument("--int8-data", help="the same from a Kaldi folder of training clips")
    p.add_argument("--int8-clips", type=int, default=200, help="calibration clips (default 200)")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("serve", help="HTTP API and browser page (needs the [serve] extra)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    p.add_argument(
        "--api-key-file",
        help="API keys, one '<id> <admin|client> <secret>' per line (default: "
        "$VOICEPRINT_API_KEYS, $VOICEPRINT_API_KEY; none = open, loopback only)",
    )
    p.add_argument("--api-key", help=argparse.SUPPRESS)  # refused with an explanation
    p.add_argument(
        "--insecure",
        action="store_true",
        help="allow serving on a non-loopback address without API keys",
    )
    p.add_argument(
        "--rate-limit",
        default="60/min",
        help="verify + identify requests per key: N/s, N/min, N/hour or 0 (default 60/min)",
    )
    p.add_argument(
        "--max-batch",
        type=int,
        default=16,
        help="concurrent requests embedded together, at most (default 16; 1 = one by one)",
    )
    p.add_argument(
        "--audit-log",
        help="JSON-lines audit log of enroll/delete/verify/identify "
        "(default: <db>.audit.jsonl; 'off' for none)",
    )
    p.add_argument("--max-upload-mb", type=float, default=10.0, help="upload limit (default 10)")
    p.add_argument(
        "--max-audio-seconds",
        type=float,
        default=300.0,
        help="longest recording accepted, in seconds (default 300)",
    )
    add_common_options(p)
    p.set_defaults(func=cmd_serve)
