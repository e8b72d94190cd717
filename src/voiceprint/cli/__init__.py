"""The ``voiceprint`` command: one entry point, one subcommand per stage.

Lab stages (``cli.lab``): prepare, shard, train, evaluate, run; download, lists.
Speakers (``cli.store_cmds``): enroll, verify, identify, compare, speakers.
The model (``cli.model_cmds``): calibrate, embed, export, serve.
Who spoke when (``cli.diarize``): diarize, evaluate-diarization.
Options, defaults and helpers these share: ``cli.common``.
"""

from __future__ import annotations

import argparse
import logging
import sys

from voiceprint.cli import diarize, lab, model_cmds, store_cmds
from voiceprint.errors import VoiceprintError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="voiceprint", description="Speaker verification and identification (声纹识别)."
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    lab.add_parsers(sub)
    store_cmds.add_parsers(sub)
    model_cmds.add_parsers(sub)
    diarize.add_parsers(sub)
    return parser


# What a user can cause and fix: printed as one line, exit code 2. Plain ValueErrors stay
# here because the CLI and the library raise them for bad arguments and values (a
# threshold outside the calibrated range, an empty speaker name); OSError covers missing
# or unreadable files; voiceprint's ImportErrors name the extra to install. Anything else
# (a TypeError, a KeyError of the code's own) is a bug and shows its traceback.
USER_ERRORS = (VoiceprintError, ValueError, OSError, ImportError)


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` and run the chosen subcommand; a user's error (:data:`USER_ERRORS`)
    prints one clear line and exits 2 (``-v``: its traceback), a bug raises."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(message)s",
        datefmt="%H:%M:%S",
    )
    try:
        return int(args.func(args) or 0)
    except USER_ERRORS as err:
        if args.verbose:
            raise
        print(f"voiceprint {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
