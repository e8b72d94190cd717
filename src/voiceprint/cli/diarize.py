"""Who spoke when: ``voiceprint diarize`` and ``voiceprint evaluate-diarization``.

``diarize`` writes, for each FILE, ``<stem>.rttm``, ``<stem>.json`` (segments with
start, end, speaker, name or unknown, score, LLR) and ``<stem>.png`` (the timeline) into
``--out``. With a speaker store (``--db``, $VOICEPRINT_DB, or the default store when it
exists), clusters whose voice the decision accepts carry the enrolled name, the others
are ``unknown-1``, ``unknown-2``... The naming decision is the model's at the prior
``diarization.naming.NAMING_PRIOR`` unless ``--threshold``, ``--far`` or ``--p-target``
choose another (as for ``identify``). ``evaluate-diarization`` scores RTTM against a
reference with pyannote.metrics (the ``diarization`` extra).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from voiceprint.cli.common import (
    add_common_options,
    choose_decision,
    db_path,
    load_model,
    needs_extra,
    open_store,
    show_progress,
)
from voiceprint.diarization.clustering import STOP_LLR


def _store(embedder, arg: str | None):  # noqa: ANN001, ANN202 - SpeakerDB or None, lazily
    """The speaker store (as every store command opens it: a SQLite file or a
    ``postgresql://`` URL) when one is given or the default file exists, else None."""
    location = db_path(arg)
    if isinstance(location, Path) and not location.exists():
        if arg or os.environ.get("VOICEPRINT_DB"):
            raise FileNotFoundError(f"speaker store {location} does not exist")
        return None
    return open_store(embedder, arg)


def cmd_diarize(args: argparse.Namespace) -> int:
    from voiceprint.diarization import Diarizer

    if args.num_speakers is not None and (args.min_speakers or args.max_speakers):
        raise ValueError("give --num-speakers, or --min-speakers/--max-speakers, not both")
    needs_extra("diarization", "diarization (clustering)", "scipy", "sklearn")
    embedder = load_model(args.model)
    chosen = None
    if args.threshold is not None or args.far is not None or args.p_target is not None:
        chosen = choose_decision(embedder, args.threshold, args.far, args.p_target)
    db = _store(embedder, args.db)
    try:
        diarizer = Diarizer(
            embedder, db, decision=chosen, method=args.method, stop_llr=args.stop_llr
        )
        for path in args.files:
            result = diarizer(
                Path(path),
                num_speakers=args.num_speakers,
                min_speakers=args.min_speakers or 1,
                max_speakers=args.max_speakers,
                progress=show_progress(),
            )
            written = result.write(args.out, picture=not args.no_picture)
            who = ", ".join(
                f"{s.speaker} {result.speech_seconds(s.speaker):.1f} s" for s in result.speakers
            )
            spent = sum(result.timings.values())
            print(
                f"{path}: {result.num_speakers} speaker(s) in {result.duration:.1f} s "
                f"({who or 'no speech'}); {len(result.segments)} segment(s), "
                f"RTF {spent / max(result.duration, 1e-9):.3f} -> "
                + ", ".join(str(p) for p in written.values())
            )
    finally:
        if db is not None:
            db.close()
    return 0


def cmd_evaluate_diarization(args: argparse.Namespace) -> int:
    needs_extra("diarization", "scoring diarization", "pyannote.metrics")
    from voiceprint.diarization.evaluate import score_sets
    from voiceprint.diarization.segments import read_rttm_tree

    reference, hypothesis = read_rttm_tree(args.ref), read_rttm_tree(args.hyp)
    unmatched = sorted(set(hypothesis) - set(reference))
    if unmatched:
        print(f"note: {len(unmatched)} hypothesis file(s) without a reference", file=sys.stderr)
    enrolled = [n for n in (args.enrolled or "").split(",") if n]
    report = score_sets(reference, hypothesis, enrolled)
    a, z = report["der_0.25"], report["der_0"]
    width = max(8, *(len(f["uri"]) for f in report["per_file"]))
    print(f"{'file':<{width}}  DER(0.25)  DER(0)   JER  speakers (ref -> hyp)")
    for f in report["per_file"]:
        d = f["der_0.25"]
        der = (d["missed detection"] + d["false alarm"] + d["confusion"]) / max(d["total"], 1e-9)
        d0 = f["der_0"]
        der0 = (d0["missed detection"] + d0["false alarm"] + d0["confusion"]) / max(
            d0["total"], 1e-9
        )
        print(
            f"{f['uri']:<{width}}  {100 * der:8.2f}%  {100 * der0:5.2f}%  {100 * f['jer']:4.1f}%"
            f"  {f['ref_speakers']} -> {f['hyp_speakers']}"
        )
    print(
        f"total ({report['files']} files): DER(0.25) {100 * a['der']:.2f}% (missed "
        f"{100 * a['missed']:.2f}, false alarm {100 * a['false_alarm']:.2f}, confusion "
        f"{100 * a['confusion']:.2f}); DER(0) {100 * z['der']:.2f}%; JER "
        f"{100 * report['jer']:.2f}%; speaker count right {100 * report['count_right']:.1f}%"
        f"; overlap {100 * report['overlap_share']:.1f}% of speech"
    )
    if "naming_all" in report:
        print(
            f"naming: {100 * report['naming_detected']:.2f}% of enrolled speakers' detected "
            f"speech ({100 * report['naming_all']:.2f}% of all of it); "
            f"{100 * report['misnamed']:.2f}% of other speakers' speech given an enrolled name"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return 0


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """Add ``diarize`` and ``evaluate-diarization`` to the ``voiceprint`` parser."""
    p = sub.add_parser("diarize", help="who spoke when in FILE(s), named from the store")
    p.add_argument("files", nargs="+", metavar="FILE")
    p.add_argument("--out", required=True, help="folder for <file>.rttm, .json and .png")
    p.add_argument("--num-speakers", type=int, help="the number of speakers, when known")
    p.add_argument("--min-speakers", type=int, help="at least this many speakers")
    p.add_argument("--max-speakers", type=int, help="at most this many speakers")
    p.add_argument(
        "--method", choices=("ahc", "spectral"), default="ahc", help="clustering (default ahc)"
    )
    p.add_argument(
        "--stop-llr",
        type=float,
        default=STOP_LLR,
        help=f"ahc: stop merging below this calibrated LLR (default {STOP_LLR:g})",
    )
    p.add_argument("--no-picture", action="store_true", help="skip the timeline PNG")
    add_common_options(p)
    p.set_defaults(func=cmd_diarize)

    p = sub.add_parser(
        "evaluate-diarization", help="DER, JER and speaker counts of RTTM against a reference"
    )
    p.add_argument("--ref", required=True, help="reference RTTM file or folder of .rttm files")
    p.add_argument("--hyp", required=True, help="hypothesis RTTM file or folder")
    p.add_argument(
        "--enrolled", help="comma-separated reference speakers that were enrolled (naming)"
    )
    p.add_argument("--json", help="also write the full report here")
    p.set_defaults(func=cmd_evaluate_diarization)
