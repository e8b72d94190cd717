"""Using a trained model: enroll, verify, identify, compare, speakers, calibrate, embed,
export, serve.

Every decision is taken by the model's scorer on its calibrated LLR (``Decision``): the
printed line gives the score, the LLR (for a calibrated model) and the threshold.
Exit codes: ``verify`` and ``compare`` exit 0 when the LLR reaches the threshold
(ACCEPT), 1 when it does not (REJECT); ``identify`` exits 0 when its best match is named
and 1 when the voice is unknown; every command exits 2 on an error (one line on stderr),
and a decision without any threshold (none stored with the model, none given) is an error.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
from pathlib import Path

from voiceprint.embedder import Embedder
from voiceprint.scoring import ACCEPT, NOT_ENOUGH_SPEECH, Decision, Match, verification

DEFAULT_DB = "~/.voiceprint/speakers.db"


def default_model() -> Path | None:
    """The model shipped inside the package (``voiceprint/assets/default.onnx``), if any."""
    path = Path(__file__).resolve().parents[1] / "assets" / "default.onnx"
    return path if path.is_file() else None


def model_path(arg: str | None) -> Path:
    """``--model``, else $VOICEPRINT_MODEL, else the packaged default model."""
    chosen = arg or os.environ.get("VOICEPRINT_MODEL")
    if chosen:
        return Path(chosen).expanduser()
    packaged = default_model()
    if packaged is None:
        raise ValueError(
            "no model given and no default model is installed: pass --model "
            "(a .pth checkpoint, an experiment folder or an .onnx file) or set VOICEPRINT_MODEL"
        )
    return packaged


def needs_extra(extra: str, what: str, *modules: str) -> None:
    """ValueError saying that ``what`` needs the ``extra`` when one of ``modules`` (import
    names) is not installed; checked before any work is done."""
    missing = []
    for module in modules:
        try:
            found = importlib.util.find_spec(module) is not None
        except ImportError:  # its parent package is missing
            found = False
        if not found:
            missing.append(module)
    if missing:
        raise ValueError(f"{what} needs {', '.join(missing)}: pip install 'voiceprint[{extra}]'")


def db_path(arg: str | None) -> Path | str:
    """``--db``, else $VOICEPRINT_DB, else ~/.voiceprint/speakers.db: a SQLite path, or a
    ``postgresql://`` URL as given."""
    chosen = arg or os.environ.get("VOICEPRINT_DB") or DEFAULT_DB
    if chosen.startswith(("postgresql://", "postgres://")):
        return chosen
    return Path(chosen).expanduser()


def db_label(arg: str | None) -> str:
    """The store of ``--db`` fit to print (a URL's password hidden)."""
    from voiceprint.store.sql import display_location

    return display_location(db_path(arg))


def load_model(arg: str | None) -> Embedder:
    """The embedder for ``--model`` (onnxruntime for .onnx files, torch otherwise)."""
    from voiceprint.embedder import load_embedder

    try:
        return load_embedder(model_path(arg))
    except ImportError as err:
        raise ValueError(str(err)) from err


def choose_decision(
    embedder: Embedder,
    threshold: float | None,
    far: float | None,
    p_target: float | None = None,
) -> Decision | None:
    """``--threshold`` (on the LLR) wins; then ``--far`` (a threshold measured at that
    false-accept rate where the model was calibrated); then ``--p-target`` (the Bayes
    decision at that prior); else the model's stored decision."""
    if threshold is not None:
        return Decision(float(threshold), "manual")
    stored = embedder.decision
    if far is not None:
        if stored is None:
            raise ValueError("--far needs a calibrated model (no thresholds stored)")
        if not stored.far_points:
            print(
                f"note: the model has no false-accept calibration; using its stored "
                f"{stored.rule.upper()} threshold {stored.threshold:.3f}",
                file=sys.stderr,
            )
            return stored
        return stored.at_far(far)
    if p_target is not None:
        if not embedder.scorer.calibrated:
            raise ValueError("--p-target needs a calibrated model (its scores are not LLRs)")
        return (stored or Decision(0.0)).at_prior(p_target)
    return stored


def _verdict(
    match: Match, decision: Decision | None, calibrated: bool, *speech_seconds: float | None
) -> tuple[str, bool | None]:
    """The line a user reads and whether it accepts (None: no threshold). A side with less
    net speech than the decision needs reads "NOT ENOUGH SPEECH" with the seconds found and
    needed, never an accept."""
    text = f"score {match.score:.3f}  " + (f"llr {match.llr:.2f}  " if calibrated else "")
    if decision is None:
        return text + "threshold none", None
    verdict = decision.judge(match.llr, *speech_seconds)
    text += f"threshold {decision.threshold:.3f}  "
    if verdict == NOT_ENOUGH_SPEECH:
        found = min(s for s in speech_seconds if s is not None)
        return text + (
            f"NOT ENOUGH SPEECH ({found:.2f} s of speech, "
            f"{decision.min_speech_seconds:.2f} s needed)"
        ), False
    return text + verdict.upper(), verdict == ACCEPT


def _no_threshold() -> int:
    print(
        "voiceprint: error: the model has no stored threshold (calibrate it with "
        "'voiceprint calibrate') and none was given: pass --threshold",
        file=sys.stderr,
    )
    return 2


def _progress() -> bool:
    return sys.stderr.isatty()


def open_store(embedder: Embedder, arg: str | None):  # noqa: ANN201 - SpeakerDB, lazily
    """The speaker store for ``--db`` bound to this model and its scorer."""
    from voiceprint.store import SpeakerDB

    return SpeakerDB(db_path(arg), embedder.model_id, embedder.scorer)


def cmd_enroll(args: argparse.Namespace) -> int:
    embedder = load_model(args.model)
    embeddings, seconds = embedder.embed_files_measured(
        args.files, progress=_progress() and len(args.files) > 1
    )
    with open_store(embedder, args.db) as db:
        total = db.enroll(
            args.name, embeddings, sources=[str(f) for f in args.files], speech_seconds=seconds
        )
    print(
        f"enrolled {args.name}: {len(args.files)} file(s), {total} embedding(s) in total "
        f"(model {embedder.model_id}, {db_label(args.db)})"
    )
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    embedder = load_model(args.model)
    decision = choose_decision(embedder, args.threshold, args.far, args.p_target)
    probes, seconds = embedder.embed_files_measured([args.file], progress=False)
    with open_store(embedder, args.db) as db:
        match = db.verify(args.name, probes[0], float(seconds[0]))
        enrolled = db.speech_seconds([args.name])[0]
    text, accepted = _verdict(
        match, decision, embedder.scorer.calibrated, enrolled, float(seconds[0])
    )
    print(f"{args.name}  {text}")
    if accepted is None:
        return _no_threshold()
    return 0 if accepted else 1


def cmd_identify(args: argparse.Namespace) -> int:
    embedder = load_model(args.model)
    decision = choose_decision(embedder, args.threshold, args.far, args.p_target)
    probes, seconds = embedder.embed_files_measured([args.file], progress=False)
    probe_seconds = float(seconds[0])
    with open_store(embedder, args.db) as db:
        ranked = db.identify(probes[0], top=args.top, speech_seconds=probe_seconds)
        gallery = db.gallery_size
        enrolled = db.speech_seconds([m.name for m in ranked])
    if decision is None:
        return _no_threshold()
    # Open set: the best match is named only when it clears the gallery-size threshold.
    open_set = decision.for_gallery(gallery)
    width = max(len(m.name) for m in ranked)
    verdicts = []
    for rank, (match, seconds) in enumerate(zip(ranked, enrolled, strict=True), 1):
        text, accepted = _verdict(
            match, open_set, embedder.scorer.calibrated, seconds, probe_seconds
        )
        verdicts.append(accepted)
        print(f"{rank:>2}  {match.name:<{width}}  {text}")
    best, named = ranked[0], bool(verdicts[0])
    if not open_set.enough_speech(probe_seconds):
        answer = (
            f"identified: not enough speech ({probe_seconds:.2f} s found, "
            f"{open_set.min_speech_seconds:.2f} s needed)"
        )
    else:
        answer = f"identified: {best.name}" if named else "identified: unknown"
    print(answer, f"(among {gallery} enrolled speaker(s))")
    return 0 if named else 1


def cmd_compare(args: argparse.Namespace) -> int:
    embedder = load_model(args.model)
    decision = choose_decision(embedder, args.threshold, args.far, args.p_target)
    (first, second), seconds = embedder.embed_files_measured(
        [args.first, args.second], progress=False
    )
    scorer = embedder.scorer
    sides = (float(seconds[0]), float(seconds[1]))
    match = scorer.match(str(args.second), scorer.compare(first, second), *sides)
    text, accepted = _verdict(match, decision, scorer.calibrated, *sides)
    print(f"{args.first}  {args.second}  {text}")
    if accepted is None:
        return _no_threshold()
    return 0 if accepted else 1


def cmd_speakers(args: argparse.Namespace) -> int:
    from voiceprint.store import SpeakerDB

    current = None
    if args.model or os.environ.get("VOICEPRINT_MODEL") or default_model():
        current = load_model(args.model).model_id
    path, label = db_path(args.db), db_label(args.db)
    if (args.export or args.import_file) and current is None:
        raise ValueError("--export/--import need the model (--model or $VOICEPRINT_MODEL)")
    with SpeakerDB(path, current or "(listing)") as db:  # no scoring here
        if args.remove:
            count = db.remove(args.remove)
            print(f"removed {args.remove} ({count} embedding(s)) from {label}")
            return 0
        if args.export:
            done = db.export_to(args.export)
            print(
                f"exported {done['speakers']} speaker(s), {done['embeddings']} embedding(s) "
                f"of model {current} from {label} to {args.export}"
            )
            return 0
        if args.import_file:
            done = db.import_from(args.import_file)
            print(
                f"imported {done['speakers']} speaker(s), {done['embeddings']} embedding(s) "
                f"of model {current} from {args.import_file} into {label}"
            )
            return 0
        speakers = db.speakers()
    if not speakers:
        print(f"no speakers enrolled in {label}")
        return 0
    width = max(4, *(len(s.name) for s in speakers))
    print(f"{'name':<{width}}  embeddings  model")
    for s in speakers:
        other = "" if current is None or s.model_id == current else "  (another model)"
        print(f"{s.name:<{width}}  {s.count:>10}  {s.model_id}{other}")
    return 0


def labelled_recordings(data: str | None, root: str | None, splits: list[str]) -> list:
    """Utterances of a Kaldi folder (``--data``) or of an AISHELL-layout tree (``--root``:
    every split folder present, or those named by ``--split``)."""
    from voiceprint.data.corpus import CorpusError, find_wav_root, read_kaldi_dir, scan_split

    if bool(data) == bool(root):
        raise ValueError("give one of --data (a Kaldi folder) or --root (AISHELL layout)")
    if data:
        return read_kaldi_dir(data)
    present = [s for s in ("train", "dev", "test") if (find_wav_root(root) / s).is_dir()]
    chosen = splits or present
    missing = sorted(set(chosen) - set(present))
    if missing:
        raise CorpusError(f"{root} has no wav/{missing[0]}/ folder")
    return [u for split in chosen for u in scan_split(root, split)]


def cmd_calibrate(args: argparse.Namespace) -> int:
    import warnings

    from voiceprint.calibration import recalibrate

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
            progress=_progress(),
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
    alo, ahi = report["act_dcf_ci95"]
    print(
        f"calibrated on {report['n_speakers']} speakers, {report['n_target']} target and "
        f"{report['n_nontarget']} non-target trials\n"
        f"EER {100 * report['eer']:.2f}% [{100 * lo:.2f}, {100 * hi:.2f}]  "
        f"minDCF({report['p_target']:g}) {report['min_dcf']:.3f} [{dlo:.3f}, {dhi:.3f}]  "
        f"actual DCF {report['act_dcf']:.3f} [{alo:.3f}, {ahi:.3f}] (cross-fitted)\n"
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
            progress=_progress(),
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
    from voiceprint.embedder import OnnxEmbedder

    exported = OnnxEmbedder(out)
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
    from voiceprint.embedder import OnnxEmbedder
    from voiceprint.quantize import int8_path, quantize_model

    utts = labelled_recordings(args.int8_data, args.int8_root, ["train"])
    rng = np.random.default_rng(0)
    chosen = rng.choice(len(utts), size=min(args.int8_clips, len(utts)), replace=False)
    waves = [audio.load(utts[i].path, exported.sample_rate) for i in sorted(chosen)]
    copy = quantize_model(out, int8_path(out), waves, sample_rate=exported.sample_rate)
    check = waves[: min(16, len(waves))]
    a = exported.embed_batch(check)
    b = OnnxEmbedder(copy).embed_batch(check)
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
        f"serving model {embedder.model_id} ({embedder.backend}) on http://{args.host}:{args.port}/"
        f"  store {db_label(args.db)}  {access}  rate limit {args.rate_limit}  audit log {audit}",
        file=sys.stderr,
    )
    uvicorn.run(app, host=args.host, port=args.port, log_level="info")
    return 0


def _common(parser: argparse.ArgumentParser, decide: bool = True, db: bool = True) -> None:
    parser.add_argument(
        "--model",
        help="checkpoint (.pth), experiment folder or ONNX file (.onnx); default: "
        "$VOICEPRINT_MODEL, else the packaged default model",
    )
    if db:
        parser.add_argument(
            "--db",
            help="speaker store: a SQLite file or a postgresql://user:password@host/db URL "
            f"(shared by several services; the [postgres] extra); default: $VOICEPRINT_DB or "
            f"{DEFAULT_DB}",
        )
    if decide:
        parser.add_argument(
            "--threshold",
            type=float,
            help="accept when the LLR (the score, for an uncalibrated model) >= this",
        )
        parser.add_argument(
            "--far",
            type=float,
            help="the threshold at this false-accept rate (measured where the model was "
            "calibrated)",
        )
        parser.add_argument(
            "--p-target",
            type=float,
            help="the Bayes decision at this prior of a target trial (calibrated models)",
        )


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """Add the 'use a model' subcommands to the ``voiceprint`` parser."""
    p = sub.add_parser("enroll", help="add recordings of a speaker to the store")
    p.add_argument("name")
    p.add_argument("files", nargs="+", metavar="FILE")
    _common(p, decide=False)
    p.set_defaults(func=cmd_enroll)

    p = sub.add_parser("verify", help="is FILE spoken by NAME? (exit 0 accept, 1 reject)")
    p.add_argument("name")
    p.add_argument("file", metavar="FILE")
    _common(p)
    p.set_defaults(func=cmd_verify)

    p = sub.add_parser("identify", help="who among the enrolled speakers is speaking in FILE?")
    p.add_argument("file", metavar="FILE")
    p.add_argument("--top", type=int, default=5, help="how many candidates to list (default 5)")
    _common(p)
    p.set_defaults(func=cmd_identify)

    p = sub.add_parser("compare", help="are two recordings of the same speaker?")
    p.add_argument("first", metavar="FILE")
    p.add_argument("second", metavar="FILE")
    _common(p, db=False)
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("speakers", help="list enrolled speakers (or remove one)")
    p.add_argument("--remove", metavar="NAME", help="forget this speaker")
    p.add_argument("--export", metavar="FILE", help="back up this model's speakers to FILE (.npz)")
    p.add_argument(
        "--import",
        dest="import_file",
        metavar="FILE",
        help="restore speakers from an --export FILE of the same model",
    )
    _common(p, decide=False)
    p.set_defaults(func=cmd_speakers)

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

    p = sub.add_parser("export", help="write a checkpoint as one ONNX file")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--exp", help="experiment folder holding one *_checkpoint.pth")
    source.add_argument("--checkpoint", help="checkpoint file (.pth)")
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
    _common(p)
    p.set_defaults(func=cmd_serve)
