"""An earlier commit of this repository checked out beside it, for side-by-side benchmarks."""

from __future__ import annotations

import contextlib
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


@contextlib.contextmanager
def baseline_checkout(rev: str) -> Iterator[Path | None]:
    """A detached git worktree of ``rev`` (removed afterwards), or None for ``""``."""
    if not rev:
        yield None
        return
    folder = Path(tempfile.mkdtemp(prefix="voiceprint-baseline-"))
    git = ["git", "-C", str(REPO)]
    subprocess.run(
        [*git, "worktree", "add", "--detach", str(folder), rev], check=True, capture_output=True
    )
    try:
        yield folder
    finally:
        subprocess.run([*git, "worktree", "remove", "--force", str(folder)], capture_output=True)
