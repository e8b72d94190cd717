"""What every command that uses a model shares: its options, their defaults, the model
and the store they open, the decision they take and the line that reports it.

    add_common_options(parser)                       # --model, --db, --threshold/--far/--p-target
    embedder = load_model(args.model)                # --model, $VOICEPRINT_MODEL, the packaged one
    decision = choose_decision(embedder, args.threshold, args.far, args.p_target)
    with open_store(embedder, args.db) as db: ...    # --db, $VOICEPRINT_DB, ~/.voiceprint
    text, accepted = format_verdict(match, decision, embedder.scorer.calibrated, seconds)

Every decision is taken by the model's scorer on its calibrated LLR (``Decision``): the
printed line gives the score, the LLR (for a calibrated model) and the threshold.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
from pathlib import Path

from voiceprint.embedder import Embedder
from voiceprint.scoring import ACCEPT, NOT_ENOUGH_SPEECH, Decision, Match

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


def format_verdict(
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


def no_threshold() -> int:
    print(
        "voiceprint: error: the model has no stored threshold (calibrate it with "
        "'voiceprint calibrate') and none was given: pass --threshold",
        file=sys.stderr,
    )
    return 2


def show_progress() -> bool:
    """Whether to draw progress bars: only when stderr is a terminal."""
    return sys.stderr.isatty()


def open_store(embedder: Embedder, arg: str | None):  # noqa: ANN201 - SpeakerDB, lazily
    """The speaker store for ``--db`` bound to this model and its scorer."""
    from voiceprint.store import SpeakerDB

    return SpeakerDB(db_path(arg), embedder.model_id, embedder.scorer)


def add_common_options(
    parser: argparse.ArgumentParser, decide: bool = True, db: bool = True
) -> None:
    """Add ``--model`` to ``parser``; ``--db`` when the command opens the store
    (``db``); ``--threshold``, ``--far`` and ``--p-target`` when it decides (``decide``)."""
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
