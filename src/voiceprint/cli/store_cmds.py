"""The speaker commands: enroll, verify, identify, compare, speakers.

Exit codes: ``verify`` and ``compare`` exit 0 when the LLR reaches the threshold
(ACCEPT), 1 when it does not (REJECT); ``identify`` exits 0 when its best match is named
and 1 when the voice is unknown; every command exits 2 on an error (one line on stderr),
and a decision without any threshold (none stored with the model, none given) is an error.
"""

from __future__ import annotations

import argparse
import os

from voiceprint.cli.common import (
    add_common_options,
    choose_decision,
    db_label,
    db_path,
    default_model,
    format_verdict,
    load_model,
    no_threshold,
    open_store,
    show_progress,
)
from voiceprint.scoring import NOT_ENOUGH_SPEECH, OPEN_SET_PRIOR


def cmd_enroll(args: argparse.Namespace) -> int:
    embedder = load_model(args.model)
    embeddings, seconds, _ = embedder.embed_files_measured(
        args.files, progress=show_progress() and len(args.files) > 1
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
    probes, seconds, _ = embedder.embed_files_measured([args.file], progress=False)
    with open_store(embedder, args.db) as db:
        match = db.verify(args.name, probes[0], float(seconds[0]))
        enrolled = db.speech_seconds([args.name])[0]
    text, accepted = format_verdict(
        match, decision, embedder.scorer.calibrated, enrolled, float(seconds[0])
    )
    print(f"{args.name}  {text}")
    if accepted is None:
        return no_threshold()
    return 0 if accepted else 1


def cmd_identify(args: argparse.Namespace) -> int:
    embedder = load_model(args.model)
    decision = choose_decision(embedder, args.threshold, args.far, args.p_target)
    probes, seconds, _ = embedder.embed_files_measured([args.file], progress=False)
    probe_seconds = float(seconds[0])
    with open_store(embedder, args.db) as db:
        ranked = db.identify(probes[0], top=args.top, speech_seconds=probe_seconds)
        gallery = db.gallery_size
        enrolled = db.speech_seconds([m.name for m in ranked])
    if decision is None:
        return no_threshold()
    # Open set: the best match is named only when it clears the gallery-size threshold;
    # the model's own decision at the open-set prior, a chosen one (--far ...) as it is.
    open_set = decision.for_gallery(
        gallery, OPEN_SET_PRIOR if decision is embedder.decision else None
    )
    width = max(len(m.name) for m in ranked)
    verdicts = []
    for rank, (match, seconds) in enumerate(zip(ranked, enrolled, strict=True), 1):
        text, accepted = format_verdict(
            match, open_set, embedder.scorer.calibrated, seconds, probe_seconds
        )
        verdicts.append(accepted)
        print(f"{rank:>2}  {match.name:<{width}}  {text}")
    best, named = ranked[0], bool(verdicts[0])
    answer = open_set.name(best.name, best.llr, enrolled[0], probe_seconds)
    if answer == NOT_ENOUGH_SPEECH and not named:
        found = min(s for s in (enrolled[0], probe_seconds) if s is not None)
        answer += f" ({found:.2f} s found, {open_set.min_speech_seconds:.2f} s needed)"
    print(f"identified: {answer}", f"(among {gallery} enrolled speaker(s))")
    return 0 if named else 1


def cmd_compare(args: argparse.Namespace) -> int:
    embedder = load_model(args.model)
    decision = choose_decision(embedder, args.threshold, args.far, args.p_target)
    (first, second), seconds, _ = embedder.embed_files_measured(
        [args.first, args.second], progress=False
    )
    scorer = embedder.scorer
    sides = (float(seconds[0]), float(seconds[1]))
    match = scorer.match(str(args.second), scorer.compare(first, second), *sides)
    text, accepted = format_verdict(match, decision, scorer.calibrated, *sides)
    print(f"{args.first}  {args.second}  {text}")
    if accepted is None:
        return no_threshold()
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


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """Add the speaker commands (enroll, verify, identify, compare, speakers) to the
    ``voiceprint`` parser."""
    p = sub.add_parser("enroll", help="add recordings of a speaker to the store")
    p.add_argument("name")
    p.add_argument("files", nargs="+", metavar="FILE")
    add_common_options(p, decide=False)
    p.set_defaults(func=cmd_enroll)

    p = sub.add_parser("verify", help="is FILE spoken by NAME? (exit 0 accept, 1 reject)")
    p.add_argument("name")
    p.add_argument("file", metavar="FILE")
    add_common_options(p)
    p.set_defaults(func=cmd_verify)

    p = sub.add_parser("identify", help="who among the enrolled speakers is speaking in FILE?")
    p.add_argument("file", metavar="FILE")
    p.add_argument("--top", type=int, default=5, help="how many candidates to list (default 5)")
    add_common_options(p)
    p.set_defaults(func=cmd_identify)

    p = sub.add_parser("compare", help="are two recordings of the same speaker?")
    p.add_argument("first", metavar="FILE")
    p.add_argument("second", metavar="FILE")
    add_common_options(p, db=False)
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
    add_common_options(p, decide=False)
    p.set_defaults(func=cmd_speakers)
