"""Using a trained model: enroll, verify, identify, compare, speakers, export, serve.

Exit codes: ``verify`` and ``compare`` exit 0 when the score reaches the threshold
(ACCEPT), 1 when it does not (REJECT); ``identify`` exits 0 when its best match is
accepted and 1 otherwise; every command exits 2 on an error (one line on stderr), and
a decision without any threshold (none stored with the model, none given) is an error.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from voiceprint.embedder import Decision, Embedder

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


def db_path(arg: str | None) -> Path:
    """``--db``, else $VOICEPRINT_DB, else ~/.voiceprint/speakers.db."""
    return Path(arg or os.environ.get("VOICEPRINT_DB") or DEFAULT_DB).expanduser()


def load_model(arg: str | None) -> Embedder:
    """The embedder for ``--model`` (onnxruntime for .onnx files, torch otherwise)."""
    from voiceprint.embedder import load_embedder

    try:
        return load_embedder(model_path(arg))
    except ImportError as err:
        raise ValueError(str(err)) from err


def choose_decision(
    embedder: Embedder, threshold: float | None, far: float | None
) -> Decision | None:
    """``--threshold`` wins; ``--far`` uses the model's FAR calibration when it has one
    (else its stored EER threshold, with a note on stderr); else the stored decision."""
    if threshold is not None:
        return Decision(float(threshold), "manual")
    if far is not None:
        stored = embedder.decision
        if stored is None:
            raise ValueError("--far needs a model evaluated by voiceprint (no threshold stored)")
        if not stored.far_points:
            print(
                f"note: the model has no false-accept calibration; using its stored "
                f"{stored.rule.upper()} threshold {stored.threshold:.3f}",
                file=sys.stderr,
            )
            return stored
        return stored.at_far(far)
    return embedder.decision


def _verdict(score: float, decision: Decision | None) -> tuple[str, bool | None]:
    if decision is None:
        return f"score {score:.3f}  threshold none", None
    accepted = score >= decision.threshold
    text = f"score {score:.3f}  threshold {decision.threshold:.3f}  "
    return text + ("ACCEPT" if accepted else "REJECT"), accepted


def _no_threshold() -> int:
    print(
        "voiceprint: error: the model has no stored threshold (evaluate it with "
        "'voiceprint evaluate') and none was given: pass --threshold",
        file=sys.stderr,
    )
    return 2


def _progress() -> bool:
    return sys.stderr.isatty()


def cmd_enroll(args: argparse.Namespace) -> int:
    from voiceprint.store import SpeakerDB

    embedder = load_model(args.model)
    embeddings = embedder.embed_files(args.files, progress=_progress() and len(args.files) > 1)
    with SpeakerDB(db_path(args.db), embedder.model_id) as db:
        total = db.enroll(args.name, embeddings, sources=[str(f) for f in args.files])
    print(
        f"enrolled {args.name}: {len(args.files)} file(s), {total} embedding(s) in total "
        f"(model {embedder.model_id}, {db_path(args.db)})"
    )
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    from voiceprint.store import SpeakerDB

    embedder = load_model(args.model)
    decision = choose_decision(embedder, args.threshold, args.far)
    probe = embedder.embed_file(args.file)
    with SpeakerDB(db_path(args.db), embedder.model_id) as db:
        score = db.verify(args.name, probe)
    text, accepted = _verdict(score, decision)
    print(f"{args.name}  {text}")
    if accepted is None:
        return _no_threshold()
    return 0 if accepted else 1


def cmd_identify(args: argparse.Namespace) -> int:
    from voiceprint.store import SpeakerDB

    embedder = load_model(args.model)
    decision = choose_decision(embedder, args.threshold, args.far)
    probe = embedder.embed_file(args.file)
    with SpeakerDB(db_path(args.db), embedder.model_id) as db:
        ranked = db.identify(probe, top=args.top)
    width = max(len(name) for name, _ in ranked)
    best = None
    for rank, (name, score) in enumerate(ranked, 1):
        text, accepted = _verdict(score, decision)
        best = accepted if rank == 1 else best
        print(f"{rank:>2}  {name:<{width}}  {text}")
    if best is None:
        return _no_threshold()
    return 0 if best else 1


def cmd_compare(args: argparse.Namespace) -> int:
    from voiceprint.scoring import cosine_scores

    embedder = load_model(args.model)
    decision = choose_decision(embedder, args.threshold, args.far)
    first, second = embedder.embed_files([args.first, args.second], progress=False)
    score = float(cosine_scores(first[None], second[None])[0, 0])
    text, accepted = _verdict(score, decision)
    print(f"{args.first}  {args.second}  {text}")
    if accepted is None:
        return _no_threshold()
    return 0 if accepted else 1


def cmd_speakers(args: argparse.Namespace) -> int:
    from voiceprint.store import SpeakerDB

    current = None
    if args.model or os.environ.get("VOICEPRINT_MODEL") or default_model():
        current = load_model(args.model).model_id
    path = db_path(args.db)
    with SpeakerDB(path, current or "(listing)") as db:
        if args.remove:
            count = db.remove(args.remove)
            print(f"removed {args.remove} ({count} embedding(s)) from {path}")
            return 0
        speakers = db.speakers()
    if not speakers:
        print(f"no speakers enrolled in {path}")
        return 0
    width = max(4, *(len(s.name) for s in speakers))
    print(f"{'name':<{width}}  embeddings  model")
    for s in speakers:
        other = "" if current is None or s.model_id == current else "  (another model)"
        print(f"{s.name:<{width}}  {s.count:>10}  {s.model_id}{other}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
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
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    try:
        import uvicorn

        from voiceprint.service import create_app
    except ImportError as err:
        extra = "pip install 'voiceprint[serve]'"
        raise ValueError(f"serving needs the [serve] extra: {extra} ({err})") from err
    embedder = load_model(args.model)
    api_key = args.api_key or os.environ.get("VOICEPRINT_API_KEY")
    app = create_app(
        embedder,
        db_path(args.db),
        api_key=api_key,
        max_upload_mb=args.max_upload_mb,
        decision=choose_decision(embedder, args.threshold, args.far),
    )
    print(
        f"serving model {embedder.model_id} ({embedder.backend}) on http://{args.host}:{args.port}/"
        f"  store {db_path(args.db)}  api key {'required' if api_key else 'off'}",
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
            "--db", help=f"speaker store (SQLite); default: $VOICEPRINT_DB or {DEFAULT_DB}"
        )
    if decide:
        parser.add_argument(
            "--threshold", type=float, help="accept when score >= this (overrides the model's)"
        )
        parser.add_argument(
            "--far",
            type=float,
            help="choose the threshold at this false-accept rate (from the model's evaluation)",
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
    _common(p, decide=False)
    p.set_defaults(func=cmd_speakers)

    p = sub.add_parser("export", help="write a checkpoint as one ONNX file")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--exp", help="experiment folder holding one *_checkpoint.pth")
    source.add_argument("--checkpoint", help="checkpoint file (.pth)")
    p.add_argument("--out", required=True, help="output path, e.g. model.onnx")
    p.add_argument("--opset", type=int, default=18, help="ONNX opset (default 18)")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("serve", help="HTTP API and browser page (needs the [serve] extra)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    p.add_argument(
        "--api-key",
        help="require this X-API-Key for enroll/delete (default: $VOICEPRINT_API_KEY; none = open)",
    )
    p.add_argument("--max-upload-mb", type=float, default=10.0, help="upload limit (default 10)")
    _common(p)
    p.set_defaults(func=cmd_serve)
