"""Shared fixtures: a tiny synthetic corpus (made by the package) and the shared cv-zh data."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

CVZH = Path(__file__).resolve().parents[2] / "shared" / "data" / "cv-zh"


@pytest.fixture(autouse=True, scope="session")
def _few_threads() -> None:
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small AISHELL-layout corpus: 8 train and 4 test speakers x 6 utterances, 1.5-2.5 s."""
    from voiceprint.synth import synthesize_corpus

    root = tmp_path_factory.mktemp("synthetic") / "data_aishell"
    return synthesize_corpus(
        root,
        train_speakers=8,
        test_speakers=4,
        utts_per_speaker=6,
        seconds=(1.5, 2.5),
        seed=3,
        progress=False,
    )


@pytest.fixture(scope="session")
def cvzh_root() -> Path:
    """../shared/data/cv-zh; a test that needs it FAILS (never skips) when it is missing."""
    if not (CVZH / "wav" / "train").is_dir():
        pytest.fail(
            f"this test uses the shared Common Voice corpus, expected at {CVZH} "
            "(../shared/data/cv-zh from the project root); it is missing",
            pytrace=False,
        )
    return CVZH


@pytest.fixture(params=["sqlite", "postgres"])
def location(request: pytest.FixtureRequest, tmp_path: Path) -> object:
    """A speaker store's location: a SQLite file, then a fresh PostgreSQL schema (the
    store's tests run on both; see tests/postgres.py for when PostgreSQL is skipped)."""
    if request.param == "sqlite":
        yield str(tmp_path / "s.db")
    else:
        from tests.postgres import fresh_schema

        with fresh_schema() as url:
            yield url
